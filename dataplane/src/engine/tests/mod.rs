//! The engine's tests: [`Peers`] wires a [`SipEngine`] to fake carriers and
//! gateways in memory on a virtual clock, so SIP timers fire without
//! sleeping. One file per concern: transactions and dialogs (`txn`), routing,
//! failover and limits (`routing`), media anchoring (`media`), and the
//! RFC 4475 torture messages (`rfc4475`).

mod auth;
mod health;
mod journal;
mod media;
mod rfc4475;
mod routing;
mod sdes;
mod shield;
mod transport;
mod txn;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::*;
use crate::call::CallResult;
use crate::routing::{Carrier, Gateway, Resolved};

pub(super) const CARRIER: &str = "10.0.1.10:5060";
pub(super) const GATEWAY: &str = "203.0.113.10:5060";

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(super) fn snapshot() -> RouteSnapshot {
    RouteSnapshot {
        version: 1,
        carriers: vec![Carrier {
            id: 1,
            ip: Ipv4Addr::new(10, 0, 1, 10),
            mask: 32,
            name: "c1".into(),
            group: 1,
        }],
        gateways: vec![Gateway {
            description: "gw1".into(),
            ..Gateway::at(
                1,
                SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5060),
                1,
            )
        }],
        tenants: vec![],
    }
}

/// Group 1: .10 (priority 2) and .11 (priority 1); backup group 3: .12.
/// Carriers: 10.0.1.0/24. Tenant `acme` at 10.0.1.50.
pub(super) fn snapshot_multi(max_cps: u32, max_concurrent: u32) -> RouteSnapshot {
    let gw = |id: i64, last: u8, group, priority| Gateway {
        id,
        destination: format!("sip:203.0.113.{last}:5060"),
        targets: vec![Resolved::at(SocketAddrV4::new(
            Ipv4Addr::new(203, 0, 113, last),
            5060,
        ))],
        group,
        priority,
        weight: 1,
        description: String::new(),
        profile: Default::default(),
        auth: None,
        headers: Default::default(),
        transport: Default::default(),
        media_encryption: Default::default(),
    };
    RouteSnapshot {
        version: 1,
        carriers: vec![Carrier {
            id: 1,
            ip: Ipv4Addr::new(10, 0, 1, 0),
            mask: 24,
            name: "net".into(),
            group: 1,
        }],
        gateways: vec![gw(1, 10, 1, 2), gw(2, 11, 1, 1), gw(3, 12, 3, 1)],
        tenants: vec![crate::routing::Tenant {
            tenant_id: "acme".into(),
            source_ip: Ipv4Addr::new(10, 0, 1, 50),
            gateway_group: 1,
            max_cps,
            max_concurrent,
            numbers: None,
            offer_codecs: None,
        }],
    }
}

pub(super) struct Peers {
    pub(super) engine: SipEngine,
    pub(super) stats: Arc<EngineStats>,
    pub(super) now: Ms,
    pub(super) out: Vec<Outgoing>,
}

impl Peers {
    pub(super) fn new() -> Peers {
        Peers::with(snapshot(), Policy::default())
    }

    pub(super) fn with(snap: RouteSnapshot, policy: Policy) -> Peers {
        let stats = Arc::new(EngineStats::default());
        let mut cfg = EngineConfig::new(
            "10.0.0.100:5060".parse().unwrap(),
            "203.0.113.50:5080".parse().unwrap(),
        );
        cfg.policy = policy;
        Peers {
            engine: SipEngine::new(cfg, Arc::new(snap), stats.clone()),
            stats,
            now: 0,
            out: Vec::new(),
        }
    }

    /// Sends `msg` and returns what the engine sent, as text with destinations.
    pub(super) fn send(
        &mut self,
        side: Side,
        from: &str,
        msg: &str,
    ) -> Vec<(Side, SocketAddr, String)> {
        self.out.clear();
        self.engine
            .handle(self.now, side, addr(from), msg.as_bytes(), &mut self.out);
        self.drain()
    }

    pub(super) fn advance(&mut self, ms: Ms) -> Vec<(Side, SocketAddr, String)> {
        self.out.clear();
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            self.engine.tick(self.now, &mut self.out);
        }
        self.drain()
    }

    pub(super) fn drain(&mut self) -> Vec<(Side, SocketAddr, String)> {
        self.out
            .drain(..)
            .map(|o| (o.side, o.dst, String::from_utf8(o.data).unwrap()))
            .collect()
    }
}

pub(super) fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(super) fn status(msg: &str) -> u16 {
    msg.split(' ').nth(1).unwrap().parse().unwrap()
}

pub(super) fn invite(call: &str, branch: &str) -> String {
    format!(
        "INVITE sip:+15551234@10.0.0.100:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK{branch}\r\n\
Max-Forwards: 70\r\n\
From: \"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1\r\n\
To: <sip:+15551234@10.0.0.100:5060>\r\n\
Call-ID: {call}@10.0.1.10\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@10.0.1.10:5060>\r\n\
Record-Route: <sip:10.0.1.1;lr>\r\n\
P-Asserted-Identity: <sip:alice@10.0.1.10>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 55\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n"
    )
}

/// A response from the gateway to `req` (the INVITE the engine sent it).
pub(super) fn answer(req: &str, code: u16, to_tag: &str, sdp: bool) -> String {
    let mut r = format!("SIP/2.0 {code} Whatever\r\n");
    for l in req.split("\r\n") {
        let name = l.split(':').next().unwrap_or("");
        if ["Via", "From", "Call-ID", "CSeq", "Record-Route"].contains(&name) {
            r.push_str(l);
            r.push_str("\r\n");
        }
    }
    r.push_str(&format!(
        "To: {};tag={to_tag}\r\n",
        header(req, "To").unwrap()
    ));
    r.push_str("Contact: <sip:lk@203.0.113.10:5060>\r\n");
    let body = if sdp {
        "v=0\r\nc=IN IP4 203.0.113.10\r\n"
    } else {
        ""
    };
    r.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    r
}

/// The gateway's BYE within the call whose INVITE reached it as `fwd`
/// (CSeq 2, branch `branch`), sent to the SBC's public side.
pub(super) fn gateway_bye(fwd: &str, branch: &str) -> String {
    in_dialog(
        "BYE",
        "sip:sbc@203.0.113.50:5080",
        header(fwd, "Call-ID").unwrap(),
        &format!("{};tag=gw1", header(fwd, "To").unwrap()),
        header(fwd, "From").unwrap(),
        branch,
        2,
    )
}

pub(super) fn in_dialog(
    method: &str,
    ruri: &str,
    call_id: &str,
    from: &str,
    to: &str,
    branch: &str,
    cseq: u32,
) -> String {
    format!(
        "{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP x.invalid;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}
