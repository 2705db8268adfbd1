//! The engine and messages the benchmarks and `callmem` share: one carrier
//! (10.0.1.10) and one gateway (203.0.113.10) provisioned, our SIP addresses
//! 10.0.0.100:5060 / 203.0.113.50:5080, and INVITEs with an SDP offer.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use sbc_dataplane::engine::MediaSettings;
use sbc_dataplane::routing::{Carrier, Gateway, RouteSnapshot};
use sbc_dataplane::stats::EngineStats;
use sbc_dataplane::{BySide, EngineConfig, SipEngine};

/// The carrier's SIP address.
pub const CARRIER: &str = "10.0.1.10:5060";
/// The gateway's SIP address.
pub const GATEWAY: &str = "203.0.113.10:5060";

/// A carrier's INVITE with a PCMA/PCMU/telephone-event offer (930 bytes).
pub const INVITE: &str = "INVITE sip:+15551234@10.0.0.100:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@10.0.1.10:5060>\r\n\
To: <sip:+15551234@10.0.0.100:5060>\r\n\
From: \"Alice\" <sip:+15550001@10.0.1.10:5060>;tag=9fxced76sl\r\n\
Call-ID: 3848276298220188511@10.0.1.10\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, INFO\r\n\
Supported: replaces, timer\r\n\
User-Agent: carrier-switch/4.2\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 229\r\n\r\n\
v=0\r\n\
o=- 3848276298 3848276298 IN IP4 10.0.1.10\r\n\
s=-\r\n\
c=IN IP4 10.0.1.10\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// [`INVITE`] made call `i`'s own: its Call-ID, From tag and branch end in `i`.
pub fn invite(i: u32) -> String {
    INVITE
        .replace("3848276298220188511@", &format!("{i}-3848276298220188511@"))
        .replace("tag=9fxced76sl", &format!("tag=9fxced76sl{i}"))
        .replace("a1b2c3d4", &format!("a1b2c3d4-{i}"))
}

/// The routing snapshot: carrier 10.0.1.10/32 and gateway
/// sip:203.0.113.10:5060 in group 1.
pub fn snapshot() -> RouteSnapshot {
    RouteSnapshot {
        version: 1,
        carriers: vec![Carrier {
            id: 1,
            ip: Ipv4Addr::new(10, 0, 1, 10),
            mask: 32,
            name: "c".into(),
            group: 1,
        }],
        gateways: vec![Gateway::at(
            1,
            SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5060),
            1,
        )],
        tenants: vec![],
    }
}

/// The relay's settings the SBC starts with: ports 10,000-60,000 on
/// 10.0.0.100 and 203.0.113.50, media timeout 60 s.
pub fn media() -> MediaSettings {
    MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10_000, 60_000), (10_000, 60_000)),
        timeout: 60_000,
        hold_timeout: None,
        max_sessions: None,
    }
}

/// An engine on [`snapshot`]; with `media`, anchoring media per [`media`].
pub fn engine(media: bool) -> SipEngine {
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap_or_else(|_| unreachable!()),
        "203.0.113.50:5080"
            .parse()
            .unwrap_or_else(|_| unreachable!()),
    );
    if media {
        cfg.media = Some(self::media());
    }
    SipEngine::new(cfg, Arc::new(snapshot()), Arc::new(EngineStats::default()))
}

/// A socket address from text known to be one.
pub fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| unreachable!())
}

/// The value of the first header `name` of a message (exact name, `: `).
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(": ")))
}
