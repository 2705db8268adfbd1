//! Gateway health through the engine: OPTIONS probes on the public side,
//! answers and silence judged, down gateways skipped by routing (a group
//! all down goes to the backup group), INVITE failures counted, operator
//! states.

use super::*;
use crate::health::{AdminState, HealthCmd, HealthConfig};

/// `snapshot_multi` (group 1: .10 priority 2, .11 priority 1; backup .12)
/// with probing every 10 s, 2 s timeout, down after 2, up after 1.
fn probed() -> Peers {
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.health = HealthConfig {
        failures_down: 2,
        successes_up: 1,
        ..HealthConfig::default()
    };
    Peers {
        engine: SipEngine::new(cfg, Arc::new(snapshot_multi(100, 100)), stats.clone()),
        stats,
        now: 0,
        out: Vec::new(),
    }
}

/// The OPTIONS in `sent`, by destination.
fn options(sent: &[(Side, SocketAddr, String)]) -> Vec<(SocketAddr, String)> {
    let mut o: Vec<_> = sent
        .iter()
        .filter(|s| s.2.starts_with("OPTIONS "))
        .map(|s| {
            assert_eq!(
                s.0,
                Side::Public,
                "gateways are probed from the public side"
            );
            (s.1, s.2.clone())
        })
        .collect();
    o.sort();
    o
}

/// A final answer `code` to the probe `req` from its destination.
fn answer_probe(peers: &mut Peers, to: SocketAddr, req: &str, code: u16) {
    let resp = answer(req, code, "p", false);
    assert!(peers.send(Side::Public, &to.to_string(), &resp).is_empty());
}

fn v4(a: SocketAddr) -> std::net::SocketAddrV4 {
    match a {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
    }
}

fn invite_goes_to(peers: &mut Peers, call: &str) -> Option<SocketAddr> {
    let sent = peers.send(Side::Private, CARRIER, &invite(call, call));
    sent.iter().find(|s| s.2.starts_with("INVITE")).map(|s| s.1)
}

#[test]
fn silent_gateways_are_skipped_and_a_dead_group_goes_to_the_backup() {
    let mut peers = probed();
    let (g10, g11, g12) = (
        addr("203.0.113.10:5060"),
        addr("203.0.113.11:5060"),
        addr("203.0.113.12:5060"),
    );
    for round in 0..2 {
        let probes = options(&peers.advance(10));
        assert_eq!(probes.len(), 3, "round {round}: {probes:?}");
        let req = &probes[0].1;
        assert!(
            req.contains("Via: SIP/2.0/UDP 203.0.113.50:5080;branch=z9hG4bKsbcp"),
            "{req}"
        );
        assert!(req.contains("CSeq: 1 OPTIONS\r\n"), "{req}");
        assert!(
            req.contains("From: <sip:sbc@203.0.113.50:5080>;tag="),
            "{req}"
        );
        // .11 answers 200, .12 405 (alive too); .10 stays silent and is
        // resent on Timer E, then given up at 2 s.
        answer_probe(&mut peers, g11, &probes[1].1, 200);
        answer_probe(&mut peers, g12, &probes[2].1, 405);
        let resent = options(&peers.advance(1_990));
        assert!(
            !resent.is_empty() && resent.iter().all(|(to, _)| *to == g10),
            "{resent:?}"
        );
        peers.advance(10_000 - 1_990 - 10);
    }
    assert_eq!(peers.stats.probes_sent.get(), 6);
    assert_eq!(peers.stats.probe_answers.get(), 4);
    // .10 (priority 2) is down: the call goes to .11.
    assert_eq!(invite_goes_to(&mut peers, "h1"), Some(g11));
    // .11 taken out for maintenance: the group is all down, the backup group at once.
    let mut out = Vec::new();
    peers.engine.health_command(
        peers.now,
        HealthCmd::SetState(v4(g11), AdminState::Disabled),
        &mut out,
    );
    assert_eq!(invite_goes_to(&mut peers, "h2"), Some(g12));
    // The backup down too: nothing is up, so the call tries the ones down
    // in order (a probe can be wrong), never the disabled one.
    peers.engine.health_command(
        peers.now,
        HealthCmd::SetState(v4(g12), AdminState::Inactive),
        &mut out,
    );
    assert_eq!(invite_goes_to(&mut peers, "h3"), Some(g10));
    assert_eq!(peers.stats.calls_no_gateway_up.get(), 1);
    // Every one disabled: 503 at once, no INVITE anywhere.
    for g in [g10, g12] {
        let cmd = HealthCmd::SetState(v4(g), AdminState::Disabled);
        peers.engine.health_command(peers.now, cmd, &mut out);
    }
    let sent = peers.send(Side::Private, CARRIER, &invite("h5", "h5"));
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status(&sent[0].2), 503);
    assert!(
        sent[0].2.contains("every gateway disabled"),
        "{}",
        sent[0].2
    );
    let cmd = HealthCmd::SetState(v4(g10), AdminState::Inactive);
    peers.engine.health_command(peers.now, cmd, &mut out);
    // .10 answers again: up after one success.
    let probes = options(&peers.advance(10));
    let p10 = probes.iter().find(|(to, _)| *to == g10).unwrap();
    answer_probe(&mut peers, g10, &p10.1, 200);
    assert_eq!(invite_goes_to(&mut peers, "h4"), Some(g10));
    let mut reports = Vec::new();
    peers.engine.take_health_reports(&mut reports);
    assert!(
        reports
            .iter()
            .any(|r| SocketAddr::V4(r.addr) == g10 && !r.up && r.reason == "OPTIONS timeout"),
        "{reports:?}"
    );
    assert!(reports
        .iter()
        .any(|r| SocketAddr::V4(r.addr) == g10 && r.up && r.reason == "OPTIONS 200"));
}

#[test]
fn gateways_that_fail_invites_are_taken_out() {
    let mut peers = probed();
    // Every probe answered 200, as LiveKit does while it refuses calls.
    let probes = options(&peers.advance(10));
    for (to, req) in &probes {
        answer_probe(&mut peers, *to, req, 200);
    }
    let g10 = addr("203.0.113.10:5060");
    for call in ["i1", "i2"] {
        let sent = peers.send(Side::Private, CARRIER, &invite(call, call));
        let req = &sent.iter().find(|s| s.2.starts_with("INVITE")).unwrap();
        assert_eq!(req.1, g10);
        // 503: failed over to .11, which answers.
        let sent = peers.send(Side::Public, GATEWAY, &answer(&req.2, 503, "x", false));
        let next = sent.iter().find(|s| s.2.starts_with("INVITE")).unwrap();
        assert_eq!(next.1, addr("203.0.113.11:5060"));
        peers.send(
            Side::Public,
            "203.0.113.11:5060",
            &answer(&next.2, 200, "y", false),
        );
    }
    // Down after two: the next call starts at .11.
    assert_eq!(
        invite_goes_to(&mut peers, "i3"),
        Some(addr("203.0.113.11:5060"))
    );
}

#[test]
fn host_carriers_are_probed_from_the_private_side_when_asked() {
    let mut snap = snapshot_multi(100, 100);
    snap.carriers.push(crate::routing::Carrier {
        id: 2,
        ip: Ipv4Addr::new(10, 0, 1, 10),
        mask: 32,
        name: "host".into(),
        group: 1,
    });
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.health = HealthConfig {
        probe_carriers: true,
        ..HealthConfig::default()
    };
    let stats = Arc::new(EngineStats::default());
    let mut peers = Peers {
        engine: SipEngine::new(cfg, Arc::new(snap), stats.clone()),
        stats,
        now: 0,
        out: Vec::new(),
    };
    let sent = peers.advance(10);
    let to_carrier: Vec<_> = sent
        .iter()
        .filter(|s| s.2.starts_with("OPTIONS ") && s.1 == addr("10.0.1.10:5060"))
        .collect();
    assert_eq!(to_carrier.len(), 1, "{sent:?}");
    assert_eq!(to_carrier[0].0, Side::Private);
    assert!(
        to_carrier[0]
            .2
            .contains("Via: SIP/2.0/UDP 10.0.0.100:5060;"),
        "{}",
        to_carrier[0].2
    );
    // Only the host carrier (mask 32), not the /24.
    assert_eq!(sent.iter().filter(|s| s.0 == Side::Private).count(), 1);
}
