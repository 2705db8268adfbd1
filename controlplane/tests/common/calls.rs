//! A carrier and a gateway on UDP sockets around the real `sbc` on
//! loopback ([`super::loopback_sbc`]): calls set up, answered and ACKed as
//! plain SIP, with the SBC's media ports read from the SDPs.

use super::{answer, header, loopback_sbc, sbcctl, start_sbc, LoopbackSbc, Sbc};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

/// The SBC with a provisioned carrier (127.0.0.1/32) and gateway (a UDP
/// socket of the test's), and its config kept for a restart.
pub struct CallLab {
    pub sbc: Sbc,
    pub log: std::path::PathBuf,
    pub private: u16,
    pub api: String,
    pub config: std::path::PathBuf,
    pub carrier: UdpSocket,
    pub gateway: UdpSocket,
    pub dir: tempfile::TempDir,
}

/// A call as [`CallLab::call`] leaves it: answered and ACKed.
pub struct Call {
    /// Its Call-ID on the carrier's leg.
    pub call_id: String,
    /// The 200 the carrier got.
    pub ok: String,
    /// The INVITE the gateway got.
    pub invite: String,
    /// Our media address toward the carrier (its SDP) and toward the gateway.
    pub media: (SocketAddr, SocketAddr),
}

/// `c=` address and `m=` port of the first media line of the SDP in `msg`.
pub fn sdp_media(msg: &str) -> Option<SocketAddr> {
    let body = msg.split("\r\n\r\n").nth(1)?;
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim();
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?;
    format!("{ip}:{port}").parse().ok()
}

impl CallLab {
    /// Starts the SBC with relay ports `media` and `extra` config tables.
    pub fn start(media: (u16, u16), extra: &str) -> CallLab {
        let dir = tempfile::tempdir().unwrap();
        let LoopbackSbc {
            sbc,
            private,
            api,
            log,
            ..
        } = loopback_sbc(dir.path(), media, "", extra);
        let gateway = UdpSocket::bind("127.0.0.1:0").unwrap();
        let gw = gateway.local_addr().unwrap();
        let (code, _, err) = sbcctl(
            &api,
            &["add-gateway", "1", &format!("sip:{gw}"), "gw", "1", "1"],
        );
        assert_eq!(code, 0, "{err}");
        let (code, _, err) = sbcctl(&api, &["add-carrier", "127.0.0.1", "32", "carrier", "1"]);
        assert_eq!(code, 0, "{err}");
        let carrier = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&carrier, &gateway] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        CallLab {
            sbc,
            log,
            private,
            api,
            config: dir.path().join("sbc.toml"),
            carrier,
            gateway,
            dir,
        }
    }

    /// Sends `msg` from the carrier to the SBC's private SIP port.
    pub fn to_sbc(&self, msg: &str) {
        self.carrier
            .send_to(msg.as_bytes(), ("127.0.0.1", self.private))
            .unwrap();
    }

    /// The next message `s` receives that starts with `prefix` (the SBC's
    /// log in the panic when none comes within 5 s).
    pub fn expect(&self, s: &UdpSocket, prefix: &str) -> (String, SocketAddr) {
        let mut buf = [0u8; 65535];
        loop {
            let (n, from) = s.recv_from(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "waiting for {prefix:?}: {e}\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if text.starts_with(prefix) {
                return (text, from);
            }
        }
    }

    /// The carrier's INVITE for Call-ID `call` with its media at `rtp` (port).
    pub fn invite(&self, call: &str, rtp: u16) -> String {
        let me = self.carrier.local_addr().unwrap();
        let sdp = format!("v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp} RTP/AVP 0\r\n");
        format!(
            "INVITE sip:15551234567@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag={call}\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.private,
            sdp.len()
        )
    }

    /// A call answered by the gateway and ACKed, the carrier's media at
    /// port `rtp.0` and the gateway's at `rtp.1` (127.0.0.1).
    pub fn call(&self, call: &str, rtp: (u16, u16)) -> Call {
        self.to_sbc(&self.invite(call, rtp.0));
        let (inv, sbc) = self.expect(&self.gateway, "INVITE ");
        let sdp = format!("v=0\r\no=g 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0\r\n", rtp.1);
        let gw = self.gateway.local_addr().unwrap();
        let extra = format!("Contact: <sip:gw@{gw}>\r\nContent-Type: application/sdp\r\n");
        self.gateway
            .send_to(answer(&inv, 200, &extra, &sdp).as_bytes(), sbc)
            .unwrap();
        let (ok, _) = self.expect(&self.carrier, "SIP/2.0 200");
        let me = self.carrier.local_addr().unwrap();
        let to = header(&ok, "To").unwrap();
        let ack = format!(
            "ACK {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}a\r\nMax-Forwards: 70\r\n\
             From: <sip:100@{me}>;tag={call}\r\nTo: {to}\r\nCall-ID: {call}\r\nCSeq: 1 ACK\r\n\
             Content-Length: 0\r\n\r\n",
            header(&ok, "Contact").unwrap().trim_matches(['<', '>'])
        );
        self.to_sbc(&ack);
        self.expect(&self.gateway, "ACK ");
        Call {
            call_id: call.to_string(),
            media: (sdp_media(&ok).unwrap(), sdp_media(&inv).unwrap()),
            ok,
            invite: inv,
        }
    }

    /// The carrier's BYE for `call` (CSeq 2).
    pub fn bye(&self, call: &Call) -> String {
        let me = self.carrier.local_addr().unwrap();
        let to = header(&call.ok, "To").unwrap();
        format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{id}b\r\nMax-Forwards: 70\r\n\
             From: <sip:100@{me}>;tag={id}\r\nTo: {to}\r\nCall-ID: {id}\r\nCSeq: 2 BYE\r\n\
             Content-Length: 0\r\n\r\n",
            header(&call.ok, "Contact")
                .unwrap()
                .trim_matches(['<', '>']),
            id = call.call_id
        )
    }

    /// Sends signal `sig` (`TERM`, `KILL`) to the SBC.
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([&format!("-{sig}"), &self.sbc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits up to `limit` for the SBC to exit; its exit status.
    pub fn exited(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.sbc.0.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Starts the SBC again on the same config, database and journal (the
    /// old process must have exited).
    pub fn restart(&mut self) {
        self.sbc = start_sbc(&self.config, &self.log, &self.api);
    }
}
