//! SIP capture: HEP v3 to a Homer collector, and pcap files on demand.
//!
//! The engine thread copies every SIP datagram it receives or sends into a
//! bounded ring while capture is on (`EngineStats::capture_on`; a full ring
//! is a counted drop). One task here ([`CaptureHub`]) drains it every 20 ms
//! and hands each datagram to the HEP sender and to the pcap captures
//! running (`GET /api/v1/capture`), never from the packet path.
//!
//! HEP v3 ([`sbc_dataplane::net::hep`] encodes it). Both legs of a call carry the
//! caller's Call-ID as correlation id (the engine names it as it copies
//! each message), so Homer shows them as one call; each
//! call's end adds a JSON media quality report (type 100) correlated the same
//! way, as rtpengine's `--homer` does. The RTCP the relay receives goes as
//! type 5 in Homer's JSON form (`rtcp_message`), correlated through the
//! relay ports the engine names for each call (`EngineStats::media_calls`).

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sbc_dataplane::call::{CallRecord, Captured, RtcpCopy};
use sbc_dataplane::media::rtcp;
use sbc_dataplane::net::pcap::{pcap_records, udp_frame};
use sbc_dataplane::side::Side;
use sbc_dataplane::stats::{EngineStats, MEDIA_CAPTURE_BUF};
use tokio::sync::mpsc;

pub use sbc_dataplane::net::hep::{decode, encode, HepMessage, PROTO_LOG, PROTO_RTCP, PROTO_SIP};

/// The Call-ID of a SIP message (`Call-ID:` or its compact form `i:`).
pub fn call_id_of(sip: &[u8]) -> Option<String> {
    let head = sip
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(sip, |end| &sip[..end]);
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        (name.eq_ignore_ascii_case("call-id") || name.eq_ignore_ascii_case("i"))
            .then(|| value.trim().to_string())
    })
}

/// `[hep]`: where and how HEP goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepTarget {
    /// The collector, UDP.
    pub collector: SocketAddr,
    /// Our capture agent id.
    pub node_id: u32,
    /// The collector's password, if any.
    pub password: Option<String>,
    /// This SBC node's name (`[cluster] node_id`), sent as HEP chunk 19.
    pub node_name: Option<String>,
}

/// What a pcap capture wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// SIP only.
    Sip,
    /// Relayed media only (RTP and RTCP).
    Rtp,
    /// Both.
    All,
}

impl Filter {
    /// The filter called `name` (`sip`, `rtp`, `all`).
    pub fn parse(name: &str) -> Option<Filter> {
        match name {
            "sip" => Some(Filter::Sip),
            "rtp" => Some(Filter::Rtp),
            "all" => Some(Filter::All),
            _ => None,
        }
    }

    fn sip(self) -> bool {
        self != Filter::Rtp
    }

    fn media(self) -> bool {
        self != Filter::Sip
    }
}

/// The pcap captures in progress: what each wants, and where it goes.
type Taps = Arc<Mutex<Vec<(Filter, mpsc::UnboundedSender<Captured>)>>>;

/// Drains the engine's capture ring and feeds HEP and the pcap captures.
#[derive(Debug, Clone)]
pub struct CaptureHub {
    stats: Arc<EngineStats>,
    taps: Taps,
    hep: bool,
    /// HEP messages sent.
    pub hep_sent: Arc<std::sync::atomic::AtomicU64>,
    reports: mpsc::UnboundedSender<CallRecord>,
}

impl CaptureHub {
    /// Starts the hub's task; with `hep` set, capture is on from now on and
    /// every SIP datagram (and each call's end) goes to the collector.
    pub fn start(stats: Arc<EngineStats>, hep: Option<HepTarget>) -> CaptureHub {
        let (reports, mut report_rx) = mpsc::unbounded_channel::<CallRecord>();
        let hub = CaptureHub {
            stats: stats.clone(),
            taps: Arc::default(),
            hep: hep.is_some(),
            hep_sent: Arc::default(),
            reports,
        };
        if hep.is_some() {
            stats.capture_on.store(true, Ordering::Relaxed);
            stats.rtcp_on.store(true, Ordering::Relaxed);
        }
        let (taps, sent) = (hub.taps.clone(), hub.hep_sent.clone());
        tokio::spawn(async move {
            let socket = match &hep {
                Some(t) => {
                    let bind: SocketAddr = if t.collector.is_ipv4() {
                        ([0, 0, 0, 0], 0).into()
                    } else {
                        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                    };
                    match tokio::net::UdpSocket::bind(bind).await {
                        Ok(s) => Some(s),
                        Err(e) => {
                            tracing::warn!(error = %e, "HEP socket not bound");
                            None
                        }
                    }
                }
                None => None,
            };
            let mut every = tokio::time::interval(Duration::from_millis(20));
            // Our relay ports (side, RTP port) -> the Call-ID of their call;
            // a port's next call replaces the entry, so it stays within the
            // port range.
            let mut calls: HashMap<(Side, u16), String> = HashMap::new();
            loop {
                every.tick().await;
                while let Some(m) = stats.media_calls.pop() {
                    for p in m.ports {
                        calls.insert(p, m.call_id.clone());
                    }
                }
                while let Some(c) = stats.rtcp_copies.pop() {
                    let (Some(t), Some(sock)) = (&hep, &socket) else {
                        continue;
                    };
                    // RTCP arrives at RTP + 1 (even RTP ports), or with rtcp-mux at the RTP port.
                    let correlation = calls.get(&(c.side, c.port & !1)).cloned();
                    let Some(m) = rtcp_message(&c, correlation, t) else {
                        continue;
                    };
                    if let Some(bytes) = encode(&m) {
                        if sock.send_to(&bytes, t.collector).await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // Media copies go to the captures that want them, and their
                // buffers back to the relay's pool.
                while let Some(c) = stats.media_capture.pop() {
                    if let Ok(mut t) = taps.lock() {
                        t.retain(|(f, tap)| !f.media() || tap.send(c.clone()).is_ok());
                    }
                    let _ = stats.media_pool.push(c.data);
                }
                while let Some(c) = stats.sip_capture.pop() {
                    if let Ok(mut t) = taps.lock() {
                        t.retain(|(f, tap)| !f.sip() || tap.send(c.clone()).is_ok());
                    }
                    let (Some(t), Some(sock)) = (&hep, &socket) else {
                        continue;
                    };
                    // The engine named the caller leg's Call-ID as it copied.
                    let correlation = c.correlation.clone().or_else(|| call_id_of(&c.data));
                    let m = HepMessage {
                        src: v4(c.src),
                        dst: v4(c.dst),
                        ts_us: c.ts_us,
                        proto: PROTO_SIP,
                        node_id: t.node_id,
                        password: t.password.clone(),
                        node_name: t.node_name.clone(),
                        correlation,
                        payload: c.data,
                    };
                    if let Some(bytes) = encode(&m) {
                        if sock.send_to(&bytes, t.collector).await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                while let Ok(r) = report_rx.try_recv() {
                    let (Some(t), Some(sock)) = (&hep, &socket) else {
                        continue;
                    };
                    if let Some(bytes) = encode(&report(&r, t)) {
                        if sock.send_to(&bytes, t.collector).await.is_ok() {
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
        hub
    }

    /// A call ended: its media quality report goes to the collector.
    pub fn ended(&self, r: &CallRecord) {
        if self.hep {
            let _ = self.reports.send(r.clone());
        }
    }

    /// Captures what `filter` names for `seconds` and returns it as a pcap
    /// file. Media needs the relay's buffer pool filled first (8,192
    /// buffers; a packet finding none is a counted drop).
    pub async fn pcap(&self, seconds: u64, filter: Filter) -> Vec<u8> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        if let Ok(mut t) = self.taps.lock() {
            t.push((filter, tx));
        }
        if filter.sip() {
            self.stats.capture_on.store(true, Ordering::Relaxed);
        }
        if filter.media() {
            while self
                .stats
                .media_pool
                .push(Vec::with_capacity(MEDIA_CAPTURE_BUF))
                .is_ok()
            {}
            self.stats.media_capture_on.store(true, Ordering::Relaxed);
        }
        let mut frames = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
        while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            if let Some(f) = udp_frame(v4(c.src), v4(c.dst), &c.data) {
                frames.push((c.ts_us, f));
            }
        }
        drop(rx);
        let (sip, media) = self.taps.lock().map_or((false, false), |mut t| {
            t.retain(|(_, tap)| !tap.is_closed());
            (
                t.iter().any(|(f, _)| f.sip()),
                t.iter().any(|(f, _)| f.media()),
            )
        });
        if !self.hep && !sip {
            self.stats.capture_on.store(false, Ordering::Relaxed);
        }
        if !media {
            self.stats.media_capture_on.store(false, Ordering::Relaxed);
        }
        frames.sort_by_key(|(ts, _)| *ts);
        pcap_records(frames)
    }
}

fn v4(a: SocketAddr) -> SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => SocketAddrV4::new([0, 0, 0, 0].into(), a.port()),
    }
}

/// An RTCP packet as Homer stores it (HEP type 5): the JSON captagent and
/// rtpengine send, `ssrc`, `type`, `report_count`, `report_blocks`,
/// `sender_information` (for an SR) and `sdes_ssrc`, correlated with the
/// caller's Call-ID. `None` for a compound packet without SR or RR.
fn rtcp_message(c: &RtcpCopy, correlation: Option<String>, t: &HepTarget) -> Option<HepMessage> {
    let r = rtcp::report(c.data.get(..usize::from(c.len))?)?;
    let blocks: Vec<_> = r
        .blocks
        .iter()
        .map(|b| {
            serde_json::json!({
                "source_ssrc": b.source_ssrc, "fraction_lost": b.fraction_lost,
                "packets_lost": b.packets_lost, "highest_seq_no": b.highest_seq_no,
                "ia_jitter": b.ia_jitter, "lsr": b.lsr, "dlsr": b.dlsr,
            })
        })
        .collect();
    let mut json = serde_json::json!({
        "ssrc": r.ssrc,
        "type": r.packet_type,
        "report_count": r.blocks.len(),
        "report_blocks": blocks,
        "sdes_ssrc": r.sdes_ssrc.unwrap_or(r.ssrc),
    });
    if let Some(s) = r.sender {
        json["sender_information"] = serde_json::json!({
            "ntp_timestamp_sec": s.ntp_sec,
            // The NTP fraction (1/2^32 s) in microseconds.
            "ntp_timestamp_usec": (u64::from(s.ntp_frac) * 1_000_000) >> 32,
            "rtp_timestamp": s.rtp_timestamp,
            "packets": s.packets,
            "octets": s.octets,
        });
    }
    Some(HepMessage {
        src: c.src,
        dst: c.dst,
        ts_us: c.ts_us,
        proto: PROTO_RTCP,
        node_id: t.node_id,
        password: t.password.clone(),
        node_name: t.node_name.clone(),
        correlation,
        payload: json.to_string().into_bytes(),
    })
}

/// The media quality report of a finished call (a JSON log line for
/// Homer, correlated with the caller's Call-ID).
fn report(r: &CallRecord, t: &HepTarget) -> HepMessage {
    let dir = |x: &sbc_dataplane::call::RtpSummary| {
        serde_json::json!({
            "packets": x.packets, "bytes": x.bytes, "lost": x.lost,
            "jitter_ms": x.jitter_ms, "dtmf_events": x.dtmf_events,
        })
    };
    let lines: Vec<_> = r
        .media
        .iter()
        .map(|m| serde_json::json!({"from_caller": dir(&m.from_caller), "from_callee": dir(&m.from_callee)}))
        .collect();
    let json = serde_json::json!({
        "type": "sbc_call_report",
        "call_id": r.caller_call_id,
        "callee_call_id": r.callee_call_id,
        "tenant": r.tenant,
        "result": r.result.name(),
        "final_code": r.final_code,
        "ended_by": r.ended_by.map(|e| e.name()),
        "setup_ms": r.setup_ms,
        "duration_ms": r.duration_ms,
        "media": lines,
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    HepMessage {
        src: v4(r.caller_addr),
        dst: v4(r.callee_addr),
        ts_us: now,
        proto: PROTO_LOG,
        node_id: t.node_id,
        password: t.password.clone(),
        node_name: t.node_name.clone(),
        correlation: Some(r.caller_call_id.clone()),
        payload: json.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_rtcp_report_goes_as_homers_json_with_the_call_id() {
        // An RR from the carrier with one block, then an SDES.
        let mut pkt = vec![0x81, 201, 0, 7, 0, 0, 0, 7];
        for w in [9u32, (3 << 24) | 5, 1_000, 40, 0, 0] {
            pkt.extend_from_slice(&w.to_be_bytes());
        }
        pkt.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0, 7]);
        let mut data = [0; sbc_dataplane::call::RTCP_COPY];
        data[..pkt.len()].copy_from_slice(&pkt);
        let c = RtcpCopy {
            ts_us: 5,
            side: Side::Private,
            port: 20_001,
            src: "10.0.1.10:30001".parse().unwrap(),
            dst: "10.0.0.100:20001".parse().unwrap(),
            len: pkt.len() as u16,
            data,
        };
        let t = HepTarget {
            collector: "10.0.0.5:9060".parse().unwrap(),
            node_id: 3,
            password: None,
            node_name: Some("sbc-1".into()),
        };
        let m = rtcp_message(&c, Some("a@b".into()), &t).unwrap();
        assert_eq!(
            (m.proto, m.ts_us, m.src, m.dst),
            (PROTO_RTCP, 5, c.src, c.dst)
        );
        assert_eq!(m.correlation.as_deref(), Some("a@b"));
        let j: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(j["type"], 201);
        assert_eq!(j["ssrc"], 7);
        assert_eq!(j["report_count"], 1);
        assert_eq!(j["sdes_ssrc"], 7);
        assert_eq!(j["report_blocks"][0]["source_ssrc"], 9);
        assert_eq!(j["report_blocks"][0]["fraction_lost"], 3);
        assert_eq!(j["report_blocks"][0]["packets_lost"], 5);
        assert_eq!(j["report_blocks"][0]["ia_jitter"], 40);
        assert!(j.get("sender_information").is_none());
        // RTP is no report.
        let rtp = RtcpCopy {
            len: 12,
            data: [0x80; sbc_dataplane::call::RTCP_COPY],
            ..c
        };
        assert!(rtcp_message(&rtp, None, &t).is_none());
    }

    #[test]
    fn hep_round_trips_and_has_the_layout_homer_reads() {
        let m = HepMessage {
            src: "10.0.1.10:5060".parse().unwrap(),
            dst: "10.0.0.100:5060".parse().unwrap(),
            ts_us: 1_700_000_000_123_456,
            proto: PROTO_SIP,
            node_id: 2001,
            password: Some("myHep".into()),
            correlation: Some("abc@10.0.1.10".into()),
            node_name: Some("sbc-1".into()),
            payload: b"INVITE sip:x SIP/2.0\r\nCall-ID: abc@10.0.1.10\r\n\r\n".to_vec(),
        };
        let b = encode(&m).unwrap();
        assert_eq!(&b[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([b[4], b[5]])), b.len());
        // The first chunk: vendor 0, type 1 (IP family), length 7, IPv4.
        assert_eq!(&b[6..13], &[0, 0, 0, 1, 0, 7, 2]);
        assert_eq!(decode(&b), Some(m.clone()));
        // The same bytes again from what was read.
        assert_eq!(encode(&decode(&b).unwrap()).unwrap(), b);
        assert_eq!(decode(&b[..20]), None);
        assert_eq!(call_id_of(&m.payload).as_deref(), Some("abc@10.0.1.10"));
        assert_eq!(
            call_id_of(b"BYE sip:x SIP/2.0\r\ni: short@h\r\n\r\nbody Call-ID: no").as_deref(),
            Some("short@h")
        );
    }
}
