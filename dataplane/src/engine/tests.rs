//! Engine tests: fake peers in memory, a virtual clock, bytes in and out.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use super::*;
use crate::call::CallResult;
use crate::routing::{Carrier, Gateway};

const CARRIER: &str = "10.0.1.10:5060";
const GATEWAY: &str = "203.0.113.10:5060";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn snapshot() -> RouteSnapshot {
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
            id: 1,
            destination: "sip:203.0.113.10:5060".into(),
            addr: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 5060),
            group: 1,
            priority: 1,
            weight: 1,
            description: "gw1".into(),
        }],
        tenants: vec![],
    }
}

/// Group 1: .10 (priority 2) and .11 (priority 1); backup group 3: .12.
/// Carriers: 10.0.1.0/24. Tenant `acme` at 10.0.1.50.
fn snapshot_multi(max_cps: u32, max_concurrent: u32) -> RouteSnapshot {
    let gw = |id: i64, last: u8, group, priority| Gateway {
        id,
        destination: format!("sip:203.0.113.{last}:5060"),
        addr: SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, last), 5060),
        group,
        priority,
        weight: 1,
        description: String::new(),
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
        }],
    }
}

struct Lab {
    engine: SipEngine,
    stats: Arc<EngineStats>,
    now: Ms,
    out: Vec<Outgoing>,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(snapshot(), Policy::default())
    }

    fn with(snap: RouteSnapshot, policy: Policy) -> Lab {
        let stats = Arc::new(EngineStats::default());
        let mut cfg = EngineConfig::new(
            "10.0.0.100:5060".parse().unwrap(),
            "203.0.113.50:5080".parse().unwrap(),
        );
        cfg.policy = policy;
        Lab {
            engine: SipEngine::new(cfg, Arc::new(snap), stats.clone()),
            stats,
            now: 0,
            out: Vec::new(),
        }
    }

    /// Sends `msg` and returns what the engine sent, as text with destinations.
    fn send(&mut self, side: Side, from: &str, msg: &str) -> Vec<(Side, SocketAddr, String)> {
        self.out.clear();
        self.engine
            .handle(self.now, side, addr(from), msg.as_bytes(), &mut self.out);
        self.drain()
    }

    fn advance(&mut self, ms: Ms) -> Vec<(Side, SocketAddr, String)> {
        self.out.clear();
        let end = self.now + ms;
        while self.now < end {
            self.now += 10;
            self.engine.tick(self.now, &mut self.out);
        }
        self.drain()
    }

    fn drain(&mut self) -> Vec<(Side, SocketAddr, String)> {
        self.out
            .drain(..)
            .map(|o| (o.side, o.dst, String::from_utf8(o.data).unwrap()))
            .collect()
    }
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn status(msg: &str) -> u16 {
    msg.split(' ').nth(1).unwrap().parse().unwrap()
}

fn invite(call: &str, branch: &str) -> String {
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
fn answer(req: &str, code: u16, to_tag: &str, sdp: bool) -> String {
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

fn in_dialog(
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

#[test]
fn inbound_call_is_proxied_with_topology_hidden() {
    let mut lab = Lab::new();
    let sent = lab.send(Side::Private, CARRIER, &invite("call1", "a1"));
    assert_eq!(sent.len(), 2);
    assert_eq!(status(&sent[0].2), 100);
    assert_eq!(sent[0].1, addr(CARRIER));
    let (side, dst, fwd) = &sent[1];
    assert_eq!((*side, *dst), (Side::Public, addr(GATEWAY)));
    assert!(fwd.starts_with("INVITE sip:+15551234@203.0.113.10:5060 SIP/2.0\r\n"));
    assert!(!fwd.contains("10.0."), "private address leaked:\n{fwd}");
    assert_eq!(fwd.matches("Via:").count(), 1);
    assert_eq!(
        header(fwd, "Record-Route"),
        Some("<sip:203.0.113.50:5080;lr>")
    );
    assert_eq!(header(fwd, "Max-Forwards"), Some("69"));
    assert!(!header(fwd, "Call-ID").unwrap().contains("call1"));

    // 180 and 200 come back with the carrier's own view restored.
    let ringing = answer(fwd, 180, "gw1", false);
    let back = lab.send(Side::Public, GATEWAY, &ringing);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, addr(CARRIER));
    let r = &back[0].2;
    assert_eq!(status(r), 180);
    assert_eq!(
        header(r, "Via"),
        Some("SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bKa1")
    );
    assert_eq!(header(r, "Call-ID"), Some("call1@10.0.1.10"));
    assert!(!r.contains("203.0.113.10"), "gateway address leaked:\n{r}");
    let ok = answer(fwd, 200, "gw1", true);
    let back = lab.send(Side::Public, GATEWAY, &ok);
    let r = &back[0].2;
    assert_eq!(status(r), 200);
    assert!(
        r.contains("Record-Route: <sip:10.0.0.100:5060;lr>\r\nRecord-Route: <sip:10.0.1.1;lr>\r\n")
    );
    assert_eq!(header(r, "Contact"), Some("<sip:sbc@10.0.0.100:5060>"));
    assert!(header(r, "To").unwrap().ends_with(";tag=gw1"));
    assert!(r.ends_with("c=IN IP4 10.0.0.100\r\n"));
    assert_eq!(lab.stats.calls_up.get(), 1);

    // A retransmitted 200 is relayed again.
    assert_eq!(lab.send(Side::Public, GATEWAY, &ok).len(), 1);

    // ACK from the carrier reaches the gateway's Contact.
    let from = "<sip:alice@10.0.1.10:5060>;tag=ca1";
    let to = "<sip:+15551234@10.0.0.100:5060>;tag=gw1";
    let ack = in_dialog(
        "ACK",
        "sip:sbc@10.0.0.100:5060",
        "call1@10.0.1.10",
        from,
        to,
        "a2",
        1,
    );
    let fwd_ack = lab.send(Side::Private, CARRIER, &ack);
    assert_eq!(fwd_ack.len(), 1);
    assert_eq!(fwd_ack[0].1, addr(GATEWAY));
    assert!(fwd_ack[0]
        .2
        .starts_with("ACK sip:lk@203.0.113.10:5060 SIP/2.0"));

    // BYE from the gateway reaches the carrier, and its 200 goes back.
    let gw_call_id = header(fwd, "Call-ID").unwrap();
    let gw_from = header(fwd, "From").unwrap();
    let bye = in_dialog(
        "BYE",
        "sip:sbc@203.0.113.50:5080",
        gw_call_id,
        &format!("{};tag=gw1", header(fwd, "To").unwrap()),
        gw_from,
        "b1",
        1,
    );
    let fwd_bye = lab.send(Side::Public, GATEWAY, &bye);
    assert_eq!(fwd_bye.len(), 1);
    let (_, dst, b) = &fwd_bye[0];
    // The carrier's own proxy (its Record-Route) is the next hop.
    assert_eq!(*dst, addr("10.0.1.1:5060"));
    assert!(b.starts_with("BYE sip:alice@10.0.1.10:5060 SIP/2.0"));
    assert_eq!(header(b, "Route"), Some("<sip:10.0.1.1;lr>"));
    assert_eq!(header(b, "Call-ID"), Some("call1@10.0.1.10"));
    assert!(header(b, "From").unwrap().ends_with("tag=gw1"));
    let bye_ok = answer(b, 200, "ca1", false).replace(
        &format!("To: {};tag=ca1", header(b, "To").unwrap()),
        &format!("To: {}", header(b, "To").unwrap()),
    );
    let back = lab.send(Side::Private, CARRIER, &bye_ok);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, addr(GATEWAY));
    assert_eq!(status(&back[0].2), 200);
    assert_eq!(
        header(&back[0].2, "Via"),
        Some("SIP/2.0/UDP x.invalid;branch=z9hG4bKb1")
    );
    assert_eq!(lab.stats.calls_up.get(), 0);
    assert_eq!(lab.engine.dialog_count(), 0);
    lab.advance(40_000);
    assert_eq!(lab.engine.transaction_count(), 0);
}

#[test]
fn retransmitted_invite_is_absorbed_not_forwarded() {
    let mut lab = Lab::new();
    let inv = invite("c2", "r1");
    assert_eq!(lab.send(Side::Private, CARRIER, &inv).len(), 2);
    let again = lab.send(Side::Private, CARRIER, &inv);
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0].2), 100);
    assert_eq!(again[0].1, addr(CARRIER));
}

#[test]
fn silent_gateway_gets_retransmissions_then_408() {
    let mut lab = Lab::new();
    lab.send(Side::Private, CARRIER, &invite("c3", "t1"));
    let sent = lab.advance(31_000);
    // Timer A: sent again at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    assert_eq!(sent.iter().filter(|s| s.2.starts_with("INVITE")).count(), 5);
    let sent = lab.advance(1_100);
    assert_eq!(sent.iter().filter(|s| s.2.starts_with("INVITE")).count(), 1);
    let r: Vec<_> = sent.iter().filter(|s| s.1 == addr(CARRIER)).collect();
    assert_eq!(status(&r[0].2), 408);
    assert!(header(&r[0].2, "To").unwrap().contains(";tag="));
    assert_eq!(lab.stats.calls_failed.get(), 1);
    assert_eq!(lab.engine.dialog_count(), 0);
    // The carrier's ACK ends it.
    let ack = in_dialog(
        "ACK",
        "sip:+15551234@10.0.0.100:5060",
        "c3@10.0.1.10",
        "<sip:alice@10.0.1.10:5060>;tag=ca1",
        header(&r[0].2, "To").unwrap(),
        "t1",
        1,
    )
    .replace("x.invalid", "10.0.1.10:5060");
    assert!(lab.send(Side::Private, CARRIER, &ack).is_empty());
    lab.advance(6_000);
    assert_eq!(lab.engine.transaction_count(), 0);
}

#[test]
fn cancel_is_hop_by_hop_and_caller_gets_487() {
    let mut lab = Lab::new();
    let inv = invite("c4", "k1");
    let sent = lab.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    lab.send(Side::Public, GATEWAY, &answer(&fwd, 180, "g4", false));
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let sent = lab.send(Side::Private, CARRIER, &cancel);
    assert_eq!(sent.len(), 2);
    assert_eq!(status(&sent[0].2), 200);
    assert!(sent[1]
        .2
        .starts_with("CANCEL sip:+15551234@203.0.113.10:5060"));
    assert_eq!(header(&sent[1].2, "Via"), header(&fwd, "Via"));
    let terminated = answer(&fwd, 487, "g4", false);
    let sent = lab.send(Side::Public, GATEWAY, &terminated);
    assert_eq!(sent.len(), 2);
    assert!(sent[0].2.starts_with("ACK sip:+15551234@203.0.113.10:5060"));
    assert_eq!(status(&sent[1].2), 487);
    assert_eq!(sent[1].1, addr(CARRIER));
    assert_eq!(lab.engine.dialog_count(), 0);
}

#[test]
fn busy_gateway_503_is_not_relayed_as_is() {
    // With failover on 503 (the default), the caller gets our own 503 once
    // nothing is left: the gateway's reason phrase is not in it.
    let mut lab = Lab::new();
    let sent = lab.send(Side::Private, CARRIER, &invite("c4", "s0"));
    let back = lab.send(Side::Public, GATEWAY, &answer(&sent[1].2, 503, "g4", false));
    assert!(
        back[1].2.starts_with("SIP/2.0 503 Service Unavailable\r\n"),
        "{}",
        back[1].2
    );
    // Without failover on 503, it is relayed as 500 (RFC 3261 16.7 step 6).
    let policy = Policy {
        failover_codes: vec![],
        ..Policy::default()
    };
    let mut lab = Lab::with(snapshot(), policy);
    let sent = lab.send(Side::Private, CARRIER, &invite("c5", "s1"));
    let back = lab.send(Side::Public, GATEWAY, &answer(&sent[1].2, 503, "g5", false));
    assert_eq!(status(&back[1].2), 500);
    let sent = lab.send(Side::Private, CARRIER, &invite("c6", "s2"));
    let back = lab.send(Side::Public, GATEWAY, &answer(&sent[1].2, 486, "g6", false));
    assert_eq!(status(&back[1].2), 486);
    // Without media, each failed call's record goes straight to the ring.
    let records: Vec<_> = std::iter::from_fn(|| lab.stats.call_records.pop()).collect();
    assert_eq!(records.len(), 2);
    assert!(records
        .iter()
        .all(|r| r.result == crate::call::CallResult::Failed
            && r.setup_ms.is_none()
            && r.duration_ms == 0));
    assert_eq!(records[1].caller_call_id, "c6@10.0.1.10");
    assert!(records[0].call < records[1].call);
}

#[test]
fn unknown_source_gets_403_and_no_state() {
    let mut lab = Lab::new();
    let sent = lab.send(Side::Private, "10.0.1.20:5060", &invite("c7", "f1"));
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 403);
    assert_eq!(lab.engine.dialog_count(), 0);
    assert_eq!(lab.engine.transaction_count(), 0);
}

#[test]
fn outbound_call_goes_to_the_host_carrier() {
    let mut lab = Lab::new();
    let inv = invite("o1", "o1")
        .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
        .replace("10.0.0.100:5060", "203.0.113.50:5080");
    let sent = lab.send(Side::Public, GATEWAY, &inv);
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].1, addr(CARRIER));
    assert!(
        !sent[1].2.contains("203.0.113.10"),
        "gateway leaked: {}",
        sent[1].2
    );
}

#[test]
fn options_answered_and_loops_refused() {
    let mut lab = Lab::new();
    let opt = in_dialog(
        "OPTIONS",
        "sip:10.0.0.100:5060",
        "o@x",
        "<sip:a@x>;tag=1",
        "<sip:10.0.0.100>",
        "p1",
        1,
    );
    let r = lab.send(Side::Private, CARRIER, &opt);
    assert_eq!(status(&r[0].2), 200);
    let looped = opt.replace("Via: SIP/2.0/UDP x.invalid;branch=z9hG4bKp1", "Via: SIP/2.0/UDP x.invalid;branch=z9hG4bKp2\r\nVia: SIP/2.0/UDP 203.0.113.50:5080;branch=z9hG4bKsbc1");
    assert_eq!(status(&lab.send(Side::Private, CARRIER, &looped)[0].2), 482);
}

/// RFC 4475 verdicts, straight through the engine.
#[test]
fn rfc4475_torture_messages() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/rfc4475");
    let Ok(expected) = std::fs::read_to_string(dir.join("EXPECTED.tsv")) else {
        panic!("RFC 4475 corpus not found at {}", dir.display());
    };
    let mut failures = Vec::new();
    for row in expected.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (file, verdict) = (cols[0], cols[3]);
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let mut lab = Lab::new();
        lab.out.clear();
        lab.engine
            .handle(0, Side::Private, addr(CARRIER), &bytes, &mut lab.out);
        let replies: Vec<u16> = lab
            .out
            .iter()
            .filter(|o| o.dst == addr(CARRIER) && o.data.starts_with(b"SIP/2.0 "))
            .map(|o| status(&String::from_utf8_lossy(&o.data)))
            .collect();
        let ok = match verdict {
            "accept" => !replies.contains(&400),
            "drop" => lab.out.is_empty(),
            v => {
                let code: u16 = v.trim_start_matches("reject-").parse().unwrap();
                replies.first() == Some(&code)
            }
        };
        if !ok {
            failures.push(format!("{file}: expected {verdict}, got {replies:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn invites_to(sent: &[(Side, SocketAddr, String)]) -> Vec<SocketAddr> {
    sent.iter()
        .filter(|s| s.2.starts_with("INVITE"))
        .map(|s| s.1)
        .collect()
}

#[test]
fn failover_walks_the_group_then_the_backup_group() {
    let mut lab = Lab::with(snapshot_multi(100, 100), Policy::default());
    let sent = lab.send(Side::Private, CARRIER, &invite("f1", "f1"));
    assert_eq!(invites_to(&sent), vec![addr("203.0.113.10:5060")]);
    let first = sent[1].2.clone();
    let sent = lab.send(Side::Public, GATEWAY, &answer(&first, 503, "x", false));
    assert!(sent[0].2.starts_with("ACK "), "the 503 is acknowledged");
    assert_eq!(invites_to(&sent), vec![addr("203.0.113.11:5060")]);
    assert!(
        sent.iter().all(|s| s.1 != addr(CARRIER)),
        "nothing relayed to the caller yet"
    );
    let second = sent[1].2.clone();
    assert!(second.starts_with("INVITE sip:+15551234@203.0.113.11:5060 "));
    assert_ne!(header(&first, "Via"), header(&second, "Via"));
    // A late retransmission of the first gateway's 503 is not taken for the second.
    assert!(lab
        .send(Side::Public, GATEWAY, &answer(&first, 503, "x", false))
        .is_empty());
    let sent = lab.send(
        Side::Public,
        "203.0.113.11:5060",
        &answer(&second, 500, "y", false),
    );
    assert_eq!(invites_to(&sent), vec![addr("203.0.113.12:5060")]);
    let third = sent[1].2.clone();
    let sent = lab.send(
        Side::Public,
        "203.0.113.12:5060",
        &answer(&third, 200, "z", true),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 200);
    assert_eq!(lab.stats.failovers.get(), 2);
}

#[test]
fn nothing_left_gives_our_503_and_busy_is_not_failed_over() {
    let mut lab = Lab::with(snapshot_multi(100, 100), Policy::default());
    let mut sent = lab.send(Side::Private, CARRIER, &invite("f2", "f2"));
    for (gw, code) in [("203.0.113.10:5060", 503), ("203.0.113.11:5060", 502)] {
        let req = sent
            .iter()
            .find(|s| s.2.starts_with("INVITE"))
            .unwrap()
            .2
            .clone();
        sent = lab.send(Side::Public, gw, &answer(&req, code, "x", false));
    }
    let req = sent
        .iter()
        .find(|s| s.2.starts_with("INVITE"))
        .unwrap()
        .2
        .clone();
    let sent = lab.send(
        Side::Public,
        "203.0.113.12:5060",
        &answer(&req, 503, "x", false),
    );
    let to_caller: Vec<_> = sent.iter().filter(|s| s.1 == addr(CARRIER)).collect();
    assert_eq!(status(&to_caller[0].2), 503);
    assert_eq!(lab.engine.dialog_count(), 0);

    let sent = lab.send(Side::Private, CARRIER, &invite("f3", "f3"));
    let back = lab.send(Side::Public, GATEWAY, &answer(&sent[1].2, 486, "x", false));
    assert_eq!(invites_to(&back), Vec::<SocketAddr>::new());
    assert_eq!(status(&back[1].2), 486);
}

#[test]
fn silent_gateway_fails_over_after_the_failover_timer() {
    let mut lab = Lab::with(snapshot_multi(100, 100), Policy::default());
    lab.send(Side::Private, CARRIER, &invite("f4", "f4"));
    let sent = lab.advance(4_900);
    assert!(invites_to(&sent)
        .iter()
        .all(|a| *a == addr("203.0.113.10:5060")));
    let sent = lab.advance(200);
    assert!(invites_to(&sent).contains(&addr("203.0.113.11:5060")));
}

#[test]
fn tenant_concurrency_limit_and_release() {
    let mut lab = Lab::with(snapshot_multi(100, 2), Policy::default());
    let tenant_src = "10.0.1.50:5060";
    let mut forwarded = Vec::new();
    for i in 0..3 {
        let inv = invite(&format!("l{i}"), &format!("l{i}"))
            .replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
        forwarded.push(lab.send(Side::Private, tenant_src, &inv));
    }
    assert_eq!(invites_to(&forwarded[0]).len(), 1);
    assert_eq!(invites_to(&forwarded[1]).len(), 1);
    let third = &forwarded[2][0].2;
    assert_eq!(status(third), 503);
    assert_eq!(header(third, "Retry-After"), Some("1"));
    assert_eq!(lab.engine.tenant_calls("acme"), 2);
    // The tenant name reaches the gateway for LiveKit's attributes.
    assert_eq!(header(&forwarded[0][1].2, "X-Tenant-ID"), Some("acme"));
    // One call fails: its slot is free again.
    lab.send(
        Side::Public,
        GATEWAY,
        &answer(&forwarded[0][1].2, 486, "b", false),
    );
    assert_eq!(lab.engine.tenant_calls("acme"), 1);
    let inv = invite("l9", "l9").replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
    assert_eq!(
        invites_to(&lab.send(Side::Private, tenant_src, &inv)).len(),
        1
    );
    let mut events = Vec::new();
    while let Some(e) = lab.stats.call_events.pop() {
        events.push(e.result);
    }
    assert!(events.contains(&CallResult::LimitExceeded));
    assert!(events.contains(&CallResult::Failed));
}

#[test]
fn tenant_cps_is_a_token_bucket() {
    let mut lab = Lab::with(snapshot_multi(2, 100), Policy::default());
    let burst = |lab: &mut Lab, base: usize| -> usize {
        (0..4)
            .filter(|i| {
                let id = format!("cps{}", base + i);
                let inv = invite(&id, &id).replace(
                    "To: <sip:+15551234",
                    "X-Tenant-ID: acme\r\nTo: <sip:+15551234",
                );
                invites_to(&lab.send(Side::Private, CARRIER, &inv)).len() == 1
            })
            .count()
    };
    assert_eq!(burst(&mut lab, 0), 2);
    lab.advance(1_000);
    assert_eq!(burst(&mut lab, 10), 2);
}

#[test]
fn unknown_sources_can_be_dropped_silently() {
    let policy = Policy {
        drop_unknown_sources: true,
        ..Policy::default()
    };
    let mut lab = Lab::with(snapshot(), policy);
    assert!(lab
        .send(Side::Private, "10.0.1.20:5060", &invite("d1", "d1"))
        .is_empty());
    assert_eq!(lab.engine.dialog_count(), 0);
}

#[test]
fn tenant_prefix_leaves_no_trace_toward_the_gateway() {
    let mut lab = Lab::with(snapshot_multi(100, 100), Policy::default());
    let inv = invite("p1", "p1")
        .replace(
            "sip:+15551234@10.0.0.100:5060 SIP/2.0",
            "sip:acme_919876543210@10.0.0.100:5060 SIP/2.0",
        )
        .replace(
            "To: <sip:+15551234@10.0.0.100:5060>",
            "To: acme_919876543210 <sip:acme_919876543210@10.0.0.100:5060>",
        );
    let sent = lab.send(Side::Private, CARRIER, &inv);
    let fwd = &sent[1].2;
    assert!(
        fwd.starts_with("INVITE sip:919876543210@203.0.113.10:5060 "),
        "{fwd}"
    );
    assert!(!fwd.contains("acme_"), "{fwd}");
    assert_eq!(header(fwd, "X-Tenant-ID"), Some("acme"));
}

fn media_lab() -> Lab {
    let media = MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10000, 10100), (20000, 20100)),
        timeout: 60_000,
    };
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.media = Some(media);
    Lab {
        engine: SipEngine::new(cfg, Arc::new(snapshot()), stats.clone()),
        stats,
        now: 0,
        out: Vec::new(),
    }
}

/// INVITE with one audio line from the carrier, 200 with SDP from the gateway.
fn answered_media_call(lab: &mut Lab) -> String {
    let inv = invite("m1", "m1")
        .replace(
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
        )
        .replace("Content-Length: 55", "Content-Length: 83");
    let sent = lab.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 53\r\n\r\nv=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\n",
    );
    lab.send(Side::Public, GATEWAY, &ok);
    fwd
}

#[test]
fn media_timeout_ends_the_call_with_byes_both_ways() {
    use crate::media::MediaCmd;
    let mut lab = media_lab();
    let fwd = answered_media_call(&mut lab);
    assert_eq!(lab.stats.calls_up.get(), 1);
    lab.out.clear();
    let mut out = Vec::new();
    lab.engine.media_idle(Side::Private, 10000, &mut out);
    assert_eq!(out.len(), 2);
    let to_carrier = String::from_utf8(out[0].data.clone()).unwrap();
    let to_gateway = String::from_utf8(out[1].data.clone()).unwrap();
    assert!(
        to_carrier.starts_with("BYE sip:alice@10.0.1.10:5060 SIP/2.0"),
        "{to_carrier}"
    );
    assert_eq!(header(&to_carrier, "Call-ID"), Some("m1@10.0.1.10"));
    assert!(header(&to_carrier, "From").unwrap().ends_with(";tag=gw1"));
    assert!(header(&to_carrier, "To").unwrap().ends_with(";tag=ca1"));
    assert_eq!(header(&to_carrier, "CSeq"), Some("1 BYE"));
    assert_eq!(out[1].dst, addr(GATEWAY));
    assert!(
        to_gateway.starts_with("BYE sip:lk@203.0.113.10:5060 SIP/2.0"),
        "{to_gateway}"
    );
    assert_eq!(header(&to_gateway, "Call-ID"), header(&fwd, "Call-ID"));
    assert!(header(&to_gateway, "From").unwrap().ends_with(";tag=ca1"));
    assert!(header(&to_gateway, "To").unwrap().ends_with(";tag=gw1"));
    assert_eq!(
        header(&to_gateway, "CSeq"),
        Some("2 BYE"),
        "after the INVITE's CSeq 1"
    );
    assert!(!to_gateway.contains("10.0."), "{to_gateway}");
    assert_eq!(lab.stats.calls_up.get(), 0);
    assert_eq!(lab.engine.dialog_count(), 0);
    let mut cmds = Vec::new();
    lab.engine.take_media_commands(&mut cmds);
    let record = cmds
        .iter()
        .find_map(|c| match c {
            MediaCmd::Release { rtp_ports, record } => {
                assert_eq!(rtp_ports, &vec![(Side::Private, 10000)]);
                Some(record)
            }
            _ => None,
        })
        .expect("the streams are released with the call record");
    assert_eq!(record.result, crate::call::CallResult::MediaTimeout);
    assert_eq!(record.caller_call_id, "m1@10.0.1.10");
    assert!(record.setup_ms.is_some());
    // A second report for the same port finds nothing.
    lab.engine.media_idle(Side::Private, 10000, &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn media_ports_are_allocated_rewritten_and_released() {
    use crate::media::MediaCmd;
    let mut lab = media_lab();
    let free = lab.engine.free_port_pairs();
    let inv = invite("m1", "m1").replace(
        "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
        "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
    );
    let inv = inv.replace("Content-Length: 55", "Content-Length: 83");
    let sent = lab.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    assert!(fwd.contains("c=IN IP4 203.0.113.50\r\n"), "{fwd}");
    assert!(fwd.contains("m=audio 20000 RTP/AVP 8\r\n"), "{fwd}");
    let mut cmds = Vec::new();
    lab.engine.take_media_commands(&mut cmds);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCmd::Install(_)))
            .count(),
        2
    );
    assert!(cmds.contains(&MediaCmd::Peer {
        side: Side::Private,
        port: 10000,
        peer: Some("10.0.1.10:40000".parse().unwrap())
    }));
    assert!(cmds.contains(&MediaCmd::Peer {
        side: Side::Private,
        port: 10001,
        peer: Some("10.0.1.10:40001".parse().unwrap())
    }));

    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 53\r\n\r\nv=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\n",
    );
    let back = lab.send(Side::Public, GATEWAY, &ok);
    assert!(
        back[0]
            .2
            .contains("c=IN IP4 10.0.0.100\r\nm=audio 10000 RTP/AVP 8\r\n"),
        "{}",
        back[0].2
    );
    cmds.clear();
    lab.engine.take_media_commands(&mut cmds);
    assert!(cmds.contains(&MediaCmd::Peer {
        side: Side::Public,
        port: 20000,
        peer: Some("203.0.113.10:30000".parse().unwrap())
    }));
    assert_ne!(lab.engine.free_port_pairs(), free);

    // The gateway hangs up: streams removed, ports back.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@203.0.113.50:5080",
        header(&fwd, "Call-ID").unwrap(),
        &format!("{};tag=gw1", header(&fwd, "To").unwrap()),
        header(&fwd, "From").unwrap(),
        "mb",
        2,
    );
    let fwd_bye = lab.send(Side::Public, GATEWAY, &bye);
    let b = &fwd_bye[0].2;
    let bye_ok = answer(b, 200, "x", false).replace(
        &format!("To: {};tag=x", header(b, "To").unwrap()),
        &format!("To: {}", header(b, "To").unwrap()),
    );
    lab.send(Side::Private, "10.0.1.1:5060", &bye_ok);
    cmds.clear();
    lab.engine.take_media_commands(&mut cmds);
    let [MediaCmd::Release { rtp_ports, record }] = cmds.as_slice() else {
        panic!("one release expected: {cmds:?}");
    };
    assert_eq!(rtp_ports, &vec![(Side::Private, 10000)]);
    assert_eq!(record.result, crate::call::CallResult::Answered);
    assert_eq!(record.caller_side, Side::Private);
    assert_eq!(record.callee_call_id, header(&fwd, "Call-ID").unwrap());
    assert!(record.media.is_empty(), "the relay fills the media lines");
    assert!(
        lab.stats.call_records.is_empty(),
        "the record rides the release"
    );
    assert_eq!(lab.engine.free_port_pairs(), free);
}
