//! HEP v3 (HEP/EEP, as sipcapture's Homer, heplify and rtpengine speak it),
//! the wire format of SIP capture: `HEP3`, the total length (u16), then
//! chunks of vendor 0, type (u16), length (u16, its 6-byte header included)
//! and value: IP family (1), protocol UDP (2), IPv4 source and destination
//! (3, 4), ports (7, 8), time in seconds and microseconds (9, 10), protocol
//! type (11: 1 SIP, 5 RTCP, 100 a JSON log line), capture agent id (12),
//! auth key (14, the password), payload (15), correlation id (17) and
//! node name (19, as heplify-server reads it: the SBC node's `[cluster]
//! node_id`).
//! The control plane's capture task sends it; fuzzed and property-tested
//! as an encode/decode pair.

use std::net::SocketAddrV4;

/// HEP protocol type of a SIP payload.
pub const PROTO_SIP: u8 = 1;
/// HEP protocol type of an RTCP report, sent as Homer's JSON form of it.
pub const PROTO_RTCP: u8 = 5;
/// HEP protocol type of a JSON log line (the per-call media report).
pub const PROTO_LOG: u8 = 100;

/// One HEP v3 message's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepMessage {
    /// Where the payload came from.
    pub src: SocketAddrV4,
    /// Where it went.
    pub dst: SocketAddrV4,
    /// When, µs since the Unix epoch.
    pub ts_us: u64,
    /// [`PROTO_SIP`] or [`PROTO_LOG`].
    pub proto: u8,
    /// The capture agent (`[hep] node_id`).
    pub node_id: u32,
    /// The collector's password (`[hep] password`), if any.
    pub password: Option<String>,
    /// The call the message belongs to (the caller's Call-ID).
    pub correlation: Option<String>,
    /// The SBC node that captured it (`[cluster] node_id`), if named.
    pub node_name: Option<String>,
    /// The SIP message, or the JSON report.
    pub payload: Vec<u8>,
}

fn chunk(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((value.len() + 6) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// The HEP v3 bytes of `m`; `None` when it would not fit the u16 length,
/// or its time does not fit HEP's u32 seconds (after 2106).
pub fn encode(m: &HepMessage) -> Option<Vec<u8>> {
    let secs = u32::try_from(m.ts_us / 1_000_000).ok()?;
    let mut out = Vec::with_capacity(m.payload.len() + 128);
    out.extend_from_slice(b"HEP3\0\0");
    chunk(&mut out, 1, &[2]);
    chunk(&mut out, 2, &[17]);
    chunk(&mut out, 3, &m.src.ip().octets());
    chunk(&mut out, 4, &m.dst.ip().octets());
    chunk(&mut out, 7, &m.src.port().to_be_bytes());
    chunk(&mut out, 8, &m.dst.port().to_be_bytes());
    chunk(&mut out, 9, &secs.to_be_bytes());
    chunk(&mut out, 10, &((m.ts_us % 1_000_000) as u32).to_be_bytes());
    chunk(&mut out, 11, &[m.proto]);
    chunk(&mut out, 12, &m.node_id.to_be_bytes());
    if let Some(p) = &m.password {
        chunk(&mut out, 14, p.as_bytes());
    }
    chunk(&mut out, 15, &m.payload);
    if let Some(c) = &m.correlation {
        chunk(&mut out, 17, c.as_bytes());
    }
    if let Some(n) = &m.node_name {
        chunk(&mut out, 19, n.as_bytes());
    }
    let len = u16::try_from(out.len()).ok()?;
    out.get_mut(4..6)?.copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// Reads HEP v3 bytes back (the chunks [`encode`] writes; others are
/// skipped); `None` for anything malformed.
pub fn decode(b: &[u8]) -> Option<HepMessage> {
    if b.get(..4)? != b"HEP3" {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([*b.get(4)?, *b.get(5)?]));
    let body = b.get(6..total)?;
    let mut m = HepMessage {
        src: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
        dst: SocketAddrV4::new([0, 0, 0, 0].into(), 0),
        ts_us: 0,
        proto: 0,
        node_id: 0,
        password: None,
        correlation: None,
        node_name: None,
        payload: Vec::new(),
    };
    let mut at = 0;
    while at < body.len() {
        let &[_, _, k0, k1, l0, l1] = body.get(at..at + 6)? else {
            return None;
        };
        let kind = u16::from_be_bytes([k0, k1]);
        let len = usize::from(u16::from_be_bytes([l0, l1]));
        let v = body.get(at + 6..at + len.max(6))?;
        let u32_of = |v: &[u8]| Some(u32::from_be_bytes(v.try_into().ok()?));
        let u16_of = |v: &[u8]| Some(u16::from_be_bytes(v.try_into().ok()?));
        let ip_of = |v: &[u8]| Some(std::net::Ipv4Addr::from(<[u8; 4]>::try_from(v).ok()?));
        match kind {
            3 => m.src.set_ip(ip_of(v)?),
            4 => m.dst.set_ip(ip_of(v)?),
            7 => m.src.set_port(u16_of(v)?),
            8 => m.dst.set_port(u16_of(v)?),
            9 => m.ts_us += u64::from(u32_of(v)?) * 1_000_000,
            10 => m.ts_us += u64::from(u32_of(v)?),
            11 => m.proto = *v.first()?,
            12 => m.node_id = u32_of(v)?,
            14 => m.password = Some(String::from_utf8_lossy(v).into_owned()),
            15 => m.payload = v.to_vec(),
            17 => m.correlation = Some(String::from_utf8_lossy(v).into_owned()),
            19 => m.node_name = Some(String::from_utf8_lossy(v).into_owned()),
            _ => {}
        }
        at += len.max(6);
    }
    Some(m)
}
