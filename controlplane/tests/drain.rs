//! Drain on SIGTERM with the real `sbc` on loopback (a carrier and a
//! gateway on UDP): new INVITEs and OPTIONS get 503 with Retry-After, the
//! call in progress still ends with its BYE, and the SBC exits once it has;
//! a second SIGTERM exits at once.

mod common;
use common::{answer, header, loopback_sbc, sbcctl, LoopbackSbc, Sbc};
use std::net::UdpSocket;
use std::time::{Duration, Instant};

struct Lab {
    sbc: Sbc,
    log: std::path::PathBuf,
    private: u16,
    carrier: UdpSocket,
    gateway: UdpSocket,
    _dir: tempfile::TempDir,
}

fn lab(drain_s: u64) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let LoopbackSbc {
        sbc,
        private,
        api,
        log,
        ..
    } = loopback_sbc(
        dir.path(),
        (41800, 41900),
        "",
        &format!("[shutdown]\ndrain_s = {drain_s}\n"),
    );
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
    Lab {
        sbc,
        log,
        private,
        carrier,
        gateway,
        _dir: dir,
    }
}

impl Lab {
    fn to_sbc(&self, msg: &str) {
        self.carrier
            .send_to(msg.as_bytes(), ("127.0.0.1", self.private))
            .unwrap();
    }

    /// The next message `s` receives that starts with `prefix`.
    fn expect(&self, s: &UdpSocket, prefix: &str) -> (String, std::net::SocketAddr) {
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

    fn invite(&self, call: &str) -> String {
        let me = self.carrier.local_addr().unwrap();
        let sdp = "v=0\r\no=c 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 43200 RTP/AVP 0\r\n";
        format!(
            "INVITE sip:15551234567@127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:100@{me}>;tag={call}\r\nTo: <sip:15551234567@127.0.0.1>\r\n\
             Call-ID: {call}\r\nCSeq: 1 INVITE\r\nContact: <sip:100@{me}>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            self.private,
            sdp.len()
        )
    }

    /// A call answered by the gateway and ACKed: the 200 the carrier got.
    fn call(&self, call: &str) -> String {
        self.to_sbc(&self.invite(call));
        let (inv, sbc) = self.expect(&self.gateway, "INVITE ");
        let sdp = "v=0\r\no=g 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42200 RTP/AVP 0\r\n";
        let gw = self.gateway.local_addr().unwrap();
        let extra = format!("Contact: <sip:gw@{gw}>\r\nContent-Type: application/sdp\r\n");
        self.gateway
            .send_to(answer(&inv, 200, &extra, sdp).as_bytes(), sbc)
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
        ok
    }

    fn term(&self) {
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &self.sbc.0.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Waits up to `limit` for the SBC to exit; its exit status.
    fn exited(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(st) = self.sbc.0.try_wait().unwrap() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

#[test]
fn sigterm_drains_new_calls_refused_the_call_in_progress_ends_then_exit() {
    let mut lab = lab(20);
    let ok = lab.call("d1");
    lab.term();
    std::thread::sleep(Duration::from_millis(300));
    // New calls and probes are refused; nothing reaches the gateway.
    lab.to_sbc(&lab.invite("d2"));
    let (busy, _) = lab.expect(&lab.carrier, "SIP/2.0 503");
    assert!(header(&busy, "Retry-After").is_some(), "{busy}");
    assert!(busy.contains("Call-ID: d2"), "{busy}");
    let me = lab.carrier.local_addr().unwrap();
    lab.to_sbc(&format!(
        "OPTIONS sip:127.0.0.1:{} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo1\r\nMax-Forwards: 70\r\n\
         From: <sip:probe@{me}>;tag=o1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n",
        lab.private
    ));
    lab.expect(&lab.carrier, "SIP/2.0 503");
    assert!(
        lab.exited(Duration::from_millis(500)).is_none(),
        "a call is up: still draining"
    );
    // The call in progress ends as usual; then the SBC exits.
    let to = header(&ok, "To").unwrap();
    let bye = format!(
        "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKd1b\r\nMax-Forwards: 70\r\n\
         From: <sip:100@{me}>;tag=d1\r\nTo: {to}\r\nCall-ID: d1\r\nCSeq: 2 BYE\r\n\
         Content-Length: 0\r\n\r\n",
        header(&ok, "Contact").unwrap().trim_matches(['<', '>'])
    );
    lab.to_sbc(&bye);
    let (bye_gw, sbc) = lab.expect(&lab.gateway, "BYE ");
    lab.gateway
        .send_to(answer(&bye_gw, 200, "", "").as_bytes(), sbc)
        .unwrap();
    lab.expect(&lab.carrier, "SIP/2.0 200");
    let status = lab.exited(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "the SBC did not exit once its last call ended\n{}",
            std::fs::read_to_string(&lab.log).unwrap_or_default()
        )
    });
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_sigterm_exits_at_once() {
    let mut lab = lab(60);
    lab.call("s1");
    lab.term();
    std::thread::sleep(Duration::from_millis(300));
    assert!(lab.exited(Duration::from_millis(300)).is_none(), "draining");
    lab.term();
    let status = lab.exited(Duration::from_secs(3)).expect("exited at once");
    assert!(status.success(), "{status}");
    let log = std::fs::read_to_string(&lab.log).unwrap_or_default();
    assert!(log.contains("second signal"), "{log}");
}
