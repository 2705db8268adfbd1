//! Routing through the engine: failover within the group and to the
//! backup group, the failover timer, tenant limits, unknown sources and
//! tenant prefixes.

use super::*;
use crate::call::{CallStep, EndedBy};

fn invites_to(sent: &[(Side, SocketAddr, String)]) -> Vec<SocketAddr> {
    sent.iter()
        .filter(|s| s.2.starts_with("INVITE"))
        .map(|s| s.1)
        .collect()
}

#[test]
fn failover_walks_the_group_then_the_backup_group() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    let sent = peers.send(Side::Private, CARRIER, &invite("f1", "f1"));
    assert_eq!(invites_to(&sent), vec![addr("203.0.113.10:5060")]);
    let first = sent[1].2.clone();
    let sent = peers.send(Side::Public, GATEWAY, &answer(&first, 503, "x", false));
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
    assert!(peers
        .send(Side::Public, GATEWAY, &answer(&first, 503, "x", false))
        .is_empty());
    let sent = peers.send(
        Side::Public,
        "203.0.113.11:5060",
        &answer(&second, 500, "y", false),
    );
    assert_eq!(invites_to(&sent), vec![addr("203.0.113.12:5060")]);
    let third = sent[1].2.clone();
    let sent = peers.send(
        Side::Public,
        "203.0.113.12:5060",
        &answer(&third, 200, "z", true),
    );
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 200);
    assert_eq!(peers.stats.failovers.get(), 2);
}

#[test]
fn nothing_left_gives_our_503_and_busy_is_not_failed_over() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    let mut sent = peers.send(Side::Private, CARRIER, &invite("f2", "f2"));
    for (gw, code) in [("203.0.113.10:5060", 503), ("203.0.113.11:5060", 502)] {
        let req = sent
            .iter()
            .find(|s| s.2.starts_with("INVITE"))
            .unwrap()
            .2
            .clone();
        sent = peers.send(Side::Public, gw, &answer(&req, code, "x", false));
    }
    let req = sent
        .iter()
        .find(|s| s.2.starts_with("INVITE"))
        .unwrap()
        .2
        .clone();
    let sent = peers.send(
        Side::Public,
        "203.0.113.12:5060",
        &answer(&req, 503, "x", false),
    );
    let to_caller: Vec<_> = sent.iter().filter(|s| s.1 == addr(CARRIER)).collect();
    assert_eq!(status(&to_caller[0].2), 503);
    assert_eq!(peers.engine.dialog_count(), 0);

    let sent = peers.send(Side::Private, CARRIER, &invite("f3", "f3"));
    let back = peers.send(Side::Public, GATEWAY, &answer(&sent[1].2, 486, "x", false));
    assert_eq!(invites_to(&back), Vec::<SocketAddr>::new());
    assert_eq!(status(&back[1].2), 486);
}

#[test]
fn silent_gateway_fails_over_after_the_failover_timer() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    peers.send(Side::Private, CARRIER, &invite("f4", "f4"));
    let sent = peers.advance(4_900);
    assert!(invites_to(&sent)
        .iter()
        .all(|a| *a == addr("203.0.113.10:5060")));
    let sent = peers.advance(200);
    assert!(invites_to(&sent).contains(&addr("203.0.113.11:5060")));
}

#[test]
fn tenant_concurrency_limit_and_release() {
    let mut peers = Peers::with(snapshot_multi(100, 2), Policy::default());
    let tenant_src = "10.0.1.50:5060";
    let mut forwarded = Vec::new();
    for i in 0..3 {
        let inv = invite(&format!("l{i}"), &format!("l{i}"))
            .replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
        forwarded.push(peers.send(Side::Private, tenant_src, &inv));
    }
    assert_eq!(invites_to(&forwarded[0]).len(), 1);
    assert_eq!(invites_to(&forwarded[1]).len(), 1);
    let third = &forwarded[2][0].2;
    assert_eq!(status(third), 503);
    assert_eq!(header(third, "Retry-After"), Some("1"));
    assert_eq!(peers.engine.tenant_calls("acme"), 2);
    // The tenant name reaches the gateway for LiveKit's attributes.
    assert_eq!(header(&forwarded[0][1].2, "X-Tenant-ID"), Some("acme"));
    // One call fails: its slot is free again.
    peers.send(
        Side::Public,
        GATEWAY,
        &answer(&forwarded[0][1].2, 486, "b", false),
    );
    assert_eq!(peers.engine.tenant_calls("acme"), 1);
    let inv = invite("l9", "l9").replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
    assert_eq!(
        invites_to(&peers.send(Side::Private, tenant_src, &inv)).len(),
        1
    );
    let mut events = Vec::new();
    while let Some(e) = peers.stats.call_events.pop() {
        events.push(e.result);
    }
    assert!(events.contains(&CallResult::LimitExceeded));
    assert!(events.contains(&CallResult::Failed));
}

#[test]
fn tenant_cps_is_a_token_bucket() {
    let mut peers = Peers::with(snapshot_multi(2, 100), Policy::default());
    let burst = |peers: &mut Peers, base: usize| -> usize {
        (0..4)
            .filter(|i| {
                let id = format!("cps{}", base + i);
                let inv = invite(&id, &id).replace(
                    "To: <sip:+15551234",
                    "X-Tenant-ID: acme\r\nTo: <sip:+15551234",
                );
                invites_to(&peers.send(Side::Private, CARRIER, &inv)).len() == 1
            })
            .count()
    };
    assert_eq!(burst(&mut peers, 0), 2);
    peers.advance(1_000);
    assert_eq!(burst(&mut peers, 10), 2);
}

#[test]
fn unknown_sources_can_be_dropped_silently() {
    let policy = Policy {
        drop_unknown_sources: true,
        ..Policy::default()
    };
    let mut peers = Peers::with(snapshot(), policy);
    assert!(peers
        .send(Side::Private, "10.0.1.20:5060", &invite("d1", "d1"))
        .is_empty());
    assert_eq!(peers.engine.dialog_count(), 0);
}

#[test]
fn tenant_prefix_leaves_no_trace_toward_the_gateway() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    let inv = invite("p1", "p1")
        .replace(
            "sip:+15551234@10.0.0.100:5060 SIP/2.0",
            "sip:acme_919876543210@10.0.0.100:5060 SIP/2.0",
        )
        .replace(
            "To: <sip:+15551234@10.0.0.100:5060>",
            "To: acme_919876543210 <sip:acme_919876543210@10.0.0.100:5060>",
        );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = &sent[1].2;
    assert!(
        fwd.starts_with("INVITE sip:919876543210@203.0.113.10:5060 "),
        "{fwd}"
    );
    assert!(!fwd.contains("acme_"), "{fwd}");
    assert_eq!(header(fwd, "X-Tenant-ID"), Some("acme"));
}

#[test]
fn numbers_reach_the_gateway_in_the_tenants_form() {
    use crate::numbers::{NumberFormat, NumberRules};
    let mut snap = snapshot_multi(100, 100);
    snap.tenants[0].numbers = Some(NumberRules::new(NumberFormat::E164, Some("1"), None).unwrap());
    let mut peers = Peers::with(snap, Policy::default());
    let inv = invite("nr1", "nr1")
        .replace(
            "To: <sip:+15551234@10.0.0.100:5060>",
            "To: \"4155550123\" <sip:4155550123@10.0.0.100:5060>",
        )
        .replace(
            "INVITE sip:+15551234@10.0.0.100:5060",
            "INVITE sip:acme_4155550123@10.0.0.100:5060",
        )
        .replace(
            "From: \"Carrier\" <sip:alice@10.0.1.10:5060>",
            "From: \"4155550000\" <sip:4155550000@10.0.1.10:5060>",
        );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    assert!(
        fwd.starts_with("INVITE sip:+14155550123@203.0.113.10:5060 SIP/2.0\r\n"),
        "{fwd}"
    );
    assert_eq!(
        header(fwd, "To"),
        Some("\"+14155550123\" <sip:+14155550123@203.0.113.10:5060>")
    );
    assert!(
        header(fwd, "From")
            .unwrap()
            .starts_with("\"+14155550000\" <sip:+14155550000@203.0.113.50>;tag="),
        "{fwd}"
    );
}

#[test]
fn call_records_say_who_ended_the_call_how_and_after_how_many_tries() {
    let mut peers = Peers::with(snapshot_multi(100, 100), Policy::default());
    peers.advance(1_000);
    let sent = peers.send(Side::Private, CARRIER, &invite("r1", "r1"));
    let first = sent[1].2.clone();
    // .10 answers 503: failed over to .11, which answers 200.
    // Capture names the caller's Call-ID for our leg's messages too.
    assert_eq!(
        peers
            .engine
            .caller_call_id(Side::Public, first.as_bytes())
            .as_deref(),
        Some("r1@10.0.1.10")
    );
    let sent = peers.send(Side::Public, GATEWAY, &answer(&first, 503, "x", false));
    let second = sent
        .iter()
        .find(|s| s.2.starts_with("INVITE"))
        .unwrap()
        .2
        .clone();
    peers.advance(250);
    peers.send(
        Side::Public,
        "203.0.113.11:5060",
        &answer(&second, 200, "g2", false),
    );
    peers.advance(2_000);
    // The carrier hangs up.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@10.0.0.100:5060",
        "r1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=g2",
        "rb1",
        2,
    );
    let out = peers.send(Side::Private, CARRIER, &bye);
    let fwd = &out.iter().find(|s| s.2.starts_with("BYE")).unwrap().2;
    peers.send(
        Side::Public,
        "203.0.113.11:5060",
        &answer(fwd, 200, "g2", false),
    );
    let r = peers.stats.call_records.pop().expect("a record");
    assert_eq!(
        (r.final_code, r.ended_by, r.attempts),
        (200, Some(EndedBy::Caller), 2)
    );
    // Its steps for the log: routed to .10, failed over to .11 on 503, answered.
    let steps: Vec<CallStep> = std::iter::from_fn(|| peers.stats.call_steps.pop()).collect();
    let Some(CallStep::Routed { callee_call_id, .. }) = steps.first() else {
        panic!("{steps:?}")
    };
    assert_eq!(callee_call_id, &r.callee_call_id);
    assert_eq!(
        steps,
        [
            CallStep::Routed {
                call: r.call,
                call_id: "r1@10.0.1.10".into(),
                callee_call_id: r.callee_call_id.clone(),
                tenant: None,
                caller_side: Side::Private,
                to: addr("203.0.113.10:5060"),
            },
            CallStep::FailedOver {
                call: r.call,
                from: addr("203.0.113.10:5060"),
                code: 503,
                to: addr("203.0.113.11:5060"),
            },
            CallStep::Answered {
                call: r.call,
                setup_ms: 250,
            },
        ]
    );
    assert_eq!(r.caller_addr, addr(CARRIER));
    assert_eq!(r.callee_addr, addr("203.0.113.11:5060"));
    assert_eq!(
        (r.started_ms, r.setup_ms, r.duration_ms),
        (1_000, Some(250), 2_000)
    );
    assert_eq!(r.ended_ms, 3_250);
    // A call the gateway refuses: its code, the callee's doing.
    let sent = peers.send(Side::Private, CARRIER, &invite("r2", "r2"));
    let req = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&req, 486, "x", false));
    let r = peers.stats.call_records.pop().expect("a record");
    assert_eq!(
        (r.final_code, r.ended_by, r.attempts),
        (486, Some(EndedBy::Callee), 1)
    );
    // Every gateway answers 503: our 503, the SBC's doing, three tries.
    let mut sent = peers.send(Side::Private, CARRIER, &invite("r3", "r3"));
    for gw in [
        "203.0.113.10:5060",
        "203.0.113.11:5060",
        "203.0.113.12:5060",
    ] {
        let req = sent
            .iter()
            .find(|s| s.2.starts_with("INVITE"))
            .unwrap()
            .2
            .clone();
        sent = peers.send(Side::Public, gw, &answer(&req, 503, "x", false));
    }
    let r = peers.stats.call_records.pop().expect("a record");
    assert_eq!(
        (r.final_code, r.ended_by, r.attempts),
        (503, Some(EndedBy::Sbc), 3)
    );
}

#[test]
fn a_gateways_headers_go_in_its_initial_invite_only() {
    let mut snap = snapshot();
    snap.gateways[0].headers = std::sync::Arc::from(&b"X-LK-Project: p_1\r\nX-Region: eu\r\n"[..]);
    let mut peers = Peers::with(snap, Policy::default());
    // The carrier's own X-Region gives way to the gateway's.
    let inv = invite("h1", "h1").replacen(
        "Content-Type:",
        "X-Region: us\r\nX-Other: kept\r\nContent-Type:",
        1,
    );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let out = &sent.iter().find(|s| s.2.starts_with("INVITE")).unwrap().2;
    assert_eq!(header(out, "X-LK-Project"), Some("p_1"));
    assert_eq!(header(out, "X-Region"), Some("eu"));
    assert_eq!(out.matches("X-Region").count(), 1, "{out}");
    assert_eq!(header(out, "X-Other"), Some("kept"));
    // Not in what follows in the dialog.
    let sent = peers.send(Side::Public, GATEWAY, &answer(out, 200, "gw", true));
    let ok = &sent.iter().find(|s| s.1 == addr(CARRIER)).unwrap().2;
    let to = header(ok, "To").unwrap().to_string();
    let from = header(&inv, "From").unwrap().to_string();
    let bye = in_dialog(
        "BYE",
        "sip:x@10.0.0.100:5060",
        "h1@10.0.1.10",
        &from,
        &to,
        "b",
        2,
    );
    let sent = peers.send(Side::Private, CARRIER, &bye);
    let out = &sent.iter().find(|s| s.2.starts_with("BYE")).unwrap().2;
    assert!(header(out, "X-LK-Project").is_none(), "{out}");
}

#[test]
fn draining_refuses_new_calls_and_options_but_ends_calls_in_progress() {
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("d1", "d1"));
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 200, "gw1", false));
    assert_eq!(peers.stats.calls_up.get(), 1);
    peers.engine.set_draining(true);
    let sent = peers.send(Side::Private, CARRIER, &invite("d2", "d2"));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status(&sent[0].2), 503);
    assert_eq!(
        header(&sent[0].2, "Retry-After"),
        Some("1"),
        "policy.retry_after_s"
    );
    let options = in_dialog(
        "OPTIONS",
        "sip:10.0.0.100:5060",
        "probe@10.0.1.10",
        "<sip:probe@10.0.1.10>;tag=p",
        "<sip:10.0.0.100>",
        "o1",
        1,
    );
    let sent = peers.send(Side::Private, CARRIER, &options);
    assert_eq!(status(&sent[0].2), 503);
    // The call in progress still ends normally.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@10.0.0.100:5060",
        "d1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        "b1",
        2,
    );
    let sent = peers.send(Side::Private, CARRIER, &bye);
    let to_gw = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    assert!(to_gw.starts_with("BYE "), "{to_gw}");
    peers.send(Side::Public, GATEWAY, &answer(to_gw, 200, "gw1", false));
    assert_eq!(peers.stats.calls_up.get(), 0);
    assert_eq!(peers.stats.drain_refused.get(), 2);
}

#[test]
fn overloaded_refuses_new_calls_only() {
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("o1", "o1"));
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 200, "gw1", false));
    peers.engine.set_overloaded(true);
    let sent = peers.send(Side::Private, CARRIER, &invite("o2", "o2"));
    assert_eq!((sent.len(), status(&sent[0].2)), (1, 503), "{sent:?}");
    assert!(header(&sent[0].2, "Retry-After").is_some());
    assert!(!sent[0].2.contains("oc="), "no overload control offered");
    // A client that offers RFC 7339 overload control (`oc` in its Via) is
    // told how much to shed, for how long, in sequence.
    peers.now = 5_000;
    let oc = invite("o4", "o4").replace(";branch=z9hG4bKo4", ";branch=z9hG4bKo4;oc;rport");
    let sent = peers.send(Side::Private, CARRIER, &oc);
    let via = header(&sent[0].2, "Via").unwrap();
    assert_eq!(
        via,
        "SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bKo4;rport=5060;received=10.0.1.10;oc=50;oc-algo=\"loss\";oc-validity=1000;oc-seq=5000",
        "{}",
        sent[0].2
    );
    assert_eq!(status(&sent[0].2), 503);
    let options = in_dialog(
        "OPTIONS",
        "sip:10.0.0.100:5060",
        "probe@10.0.1.10",
        "<sip:probe@10.0.1.10>;tag=p",
        "<sip:10.0.0.100>",
        "o1",
        1,
    );
    assert_eq!(
        status(&peers.send(Side::Private, CARRIER, &options)[0].2),
        200
    );
    let bye = in_dialog(
        "BYE",
        "sip:sbc@10.0.0.100:5060",
        "o1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        "b1",
        2,
    );
    let sent = peers.send(Side::Private, CARRIER, &bye);
    assert!(sent
        .iter()
        .any(|(s, _, m)| *s == Side::Public && m.starts_with("BYE ")));
    peers.engine.set_overloaded(false);
    let sent = peers.send(Side::Private, CARRIER, &invite("o3", "o3"));
    assert!(sent
        .iter()
        .any(|(s, _, m)| *s == Side::Public && m.starts_with("INVITE ")));
    assert_eq!(peers.stats.overload_refused.get(), 2);
}

#[test]
fn a_broken_ack_gets_no_answer_a_broken_invite_400() {
    let mut peers = Peers::new();
    let ack = "ACK sip:x@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.1.10;branch=z9hG4bKa\r\nFrom: \"\r\" <sip:a@10.0.1.10>;tag=1\r\nTo: <sip:x@10.0.0.100>;tag=2\r\nCall-ID: a\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    assert!(peers.send(Side::Private, CARRIER, ack).is_empty());
    let invite = invite("b1", "b1").replace("\"Carrier\"", "\"Car\rrier\"");
    let sent = peers.send(Side::Private, CARRIER, &invite);
    assert_eq!(status(&sent[0].2), 400, "{sent:?}");
    assert!(sent.iter().all(|(s, ..)| *s == Side::Private));
}

/// The asks the engine queued for the control plane.
fn asks(peers: &Peers) -> Vec<AdmissionAsk> {
    std::iter::from_fn(|| peers.stats.admission_asks.pop()).collect()
}

#[test]
fn cluster_admission_puts_the_invite_aside_until_the_verdict() {
    let policy = Policy {
        cluster_ask_ms: Some(100),
        ..Policy::default()
    };
    let mut peers = Peers::with(snapshot_multi(100, 100), policy);
    let tenant_src = "10.0.1.50:5060";
    let inv = |id: &str| invite(id, id).replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
    // Put aside: nothing sent; one ask; its retransmission is absorbed.
    assert!(peers.send(Side::Private, tenant_src, &inv("k1")).is_empty());
    assert!(peers.send(Side::Private, tenant_src, &inv("k1")).is_empty());
    let a = asks(&peers);
    assert_eq!(
        a,
        vec![AdmissionAsk::Admit {
            token: 0,
            tenant: "acme".into(),
            max_concurrent: 100,
            max_cps: 100
        }]
    );
    // Granted: the INVITE goes on, and the call counts.
    peers.out.clear();
    peers
        .engine
        .admission_verdict(peers.now, 0, Verdict::Granted, &mut peers.out);
    let sent = peers.drain();
    assert_eq!(invites_to(&sent).len(), 1, "{sent:?}");
    assert_eq!(peers.engine.tenant_calls("acme"), 1);
    // Its end gives the slot back to the store.
    peers.send(Side::Public, GATEWAY, &answer(&sent[1].2, 486, "b", false));
    assert_eq!(
        asks(&peers),
        vec![AdmissionAsk::Release {
            tenant: "acme".into()
        }]
    );
    // Refused: the tenant-limit answer, no ask to release.
    peers.send(Side::Private, tenant_src, &inv("k2"));
    asks(&peers);
    peers.out.clear();
    peers
        .engine
        .admission_verdict(peers.now, 1, Verdict::Refused, &mut peers.out);
    let sent = peers.drain();
    assert_eq!(status(&sent[0].2), 503, "{sent:?}");
    assert!(asks(&peers).is_empty());
    // No verdict within 100 ms: the node's share (100 / 4 nodes) admits it.
    peers.stats.cluster_nodes.set(4);
    peers.send(Side::Private, tenant_src, &inv("k3"));
    asks(&peers);
    assert_eq!(
        peers.engine.next_timer().map(|t| t <= peers.now + 100),
        Some(true)
    );
    let sent = peers.advance(200);
    assert_eq!(invites_to(&sent).len(), 1, "{sent:?}");
    assert_eq!(peers.stats.admission_late.get(), 1);
    assert_eq!(peers.stats.admission_by_share.get(), 1);
    // The store refused it after all: it now counts the call the share let in.
    peers
        .engine
        .admission_verdict(peers.now, 2, Verdict::Refused, &mut peers.out);
    assert_eq!(
        asks(&peers),
        vec![AdmissionAsk::Take {
            tenant: "acme".into()
        }]
    );
    // The engine's counts on demand.
    peers.engine.push_admission_counts();
    assert_eq!(
        asks(&peers),
        vec![AdmissionAsk::Counts(vec![("acme".into(), 1)])]
    );
}

#[test]
fn the_share_of_a_cluster_without_its_store_divides_the_limits() {
    let policy = Policy {
        cluster_ask_ms: Some(100),
        ..Policy::default()
    };
    let mut peers = Peers::with(snapshot_multi(100, 6), policy);
    peers.stats.cluster_nodes.set(3);
    let mut up = 0;
    for i in 0..4u64 {
        let id = format!("u{i}");
        let inv = invite(&id, &id).replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
        peers.send(Side::Private, "10.0.1.50:5060", &inv);
        peers.out.clear();
        peers
            .engine
            .admission_verdict(peers.now, i, Verdict::Unreachable, &mut peers.out);
        up += invites_to(&peers.drain()).len();
    }
    assert_eq!(up, 2, "6 calls over 3 nodes: 2 on this one");
}

#[test]
fn a_cancel_while_the_admission_is_asked_ends_the_invite_and_a_late_grant_goes_back() {
    let policy = Policy {
        cluster_ask_ms: Some(100),
        ..Policy::default()
    };
    let mut peers = Peers::with(snapshot_multi(100, 100), policy);
    let inv = invite("c1", "c1").replace("10.0.1.10:5060;branch", "10.0.1.50:5060;branch");
    peers.send(Side::Private, "10.0.1.50:5060", &inv);
    asks(&peers);
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let sent = peers.send(Side::Private, "10.0.1.50:5060", &cancel);
    let codes: Vec<u16> = sent.iter().map(|(_, _, m)| status(m)).collect();
    assert_eq!(codes, [200, 487], "{sent:?}");
    assert!(sent[1].2.contains("CSeq: 1 INVITE"), "{}", sent[1].2);
    // The store granted it meanwhile: the slot goes back; nothing is sent on.
    peers.out.clear();
    peers
        .engine
        .admission_verdict(peers.now, 0, Verdict::Granted, &mut peers.out);
    assert!(peers.drain().is_empty());
    assert_eq!(
        asks(&peers),
        vec![AdmissionAsk::Release {
            tenant: "acme".into()
        }]
    );
    assert_eq!(peers.engine.tenant_calls("acme"), 0);
}
