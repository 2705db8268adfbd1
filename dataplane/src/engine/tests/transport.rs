//! TCP and TLS legs: our Via, Record-Route and Contact say the transport,
//! nothing is resent over a reliable transport, a transport error fails
//! the INVITE over at once, and a gateway's call over TLS is answered and
//! ended over its connection.

use super::*;
use crate::transport::Transport;

const TLS_GW: &str = "203.0.113.10:5061";

fn tls_snapshot() -> RouteSnapshot {
    let mut snap = snapshot_multi(100, 100);
    snap.gateways.truncate(2);
    let g = &mut snap.gateways[0];
    g.destination = format!("sips:{TLS_GW}");
    g.targets = vec![Resolved::at(TLS_GW.parse().unwrap())];
    g.transport = Transport::Tls;
    // A host carrier for calls from the gateway.
    snap.carriers.push(Carrier {
        id: 2,
        ip: Ipv4Addr::new(10, 0, 1, 10),
        mask: 32,
        name: "host".into(),
        group: 1,
    });
    snap
}

fn engine() -> (SipEngine, Arc<EngineStats>) {
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.tls[Side::Public] = Some("203.0.113.50:5081".parse().unwrap());
    (
        SipEngine::new(cfg, Arc::new(tls_snapshot()), stats.clone()),
        stats,
    )
}

fn text(o: &Outgoing) -> String {
    String::from_utf8(o.data.clone()).unwrap()
}

#[test]
fn a_tls_gateway_gets_our_tls_headers_no_resends_and_a_transport_error_fails_over() {
    let (mut e, stats) = engine();
    let mut out = Vec::new();
    e.handle(
        0,
        Side::Private,
        addr(CARRIER),
        invite("t1", "t1").as_bytes(),
        &mut out,
    );
    let inv = out.iter().find(|o| text(o).starts_with("INVITE")).unwrap();
    assert_eq!((inv.dst, inv.transport), (addr(TLS_GW), Transport::Tls));
    let msg = text(inv);
    assert!(
        header(&msg, "Via")
            .unwrap()
            .starts_with("SIP/2.0/TLS 203.0.113.50:5081;alias;branch=z9hG4bK"),
        "{msg}"
    );
    assert_eq!(
        header(&msg, "Record-Route"),
        Some("<sip:203.0.113.50:5081;transport=tls;lr>")
    );
    assert_eq!(
        header(&msg, "Contact"),
        Some("<sip:sbc@203.0.113.50:5081;transport=tls>")
    );
    // Timer A does not run over TLS.
    out.clear();
    for now in (100..=3_000).step_by(100) {
        e.tick(now, &mut out);
    }
    assert!(
        out.iter().all(|o| !text(o).starts_with("INVITE")),
        "{out:?}"
    );
    // The connection fails: the next gateway at once, over UDP.
    out.clear();
    e.transport_error(3_000, (Transport::Tls, addr(TLS_GW)), &mut out);
    let next = out.iter().find(|o| text(o).starts_with("INVITE")).unwrap();
    assert_eq!(
        (next.dst, next.transport),
        (addr("203.0.113.11:5060"), Transport::Udp)
    );
    assert!(header(&text(next), "Via")
        .unwrap()
        .starts_with("SIP/2.0/UDP 203.0.113.50:5080;branch="));
    assert_eq!(
        (stats.transport_errors.get(), stats.failovers.get()),
        (1, 1)
    );
}

#[test]
fn a_call_from_a_gateway_over_tls_is_answered_and_ended_over_its_connection() {
    let (mut e, _) = engine();
    let flow = addr("203.0.113.10:40001");
    let invite = "INVITE sip:+15551234@203.0.113.50:5081;transport=tls SIP/2.0\r\n\
Via: SIP/2.0/TLS 203.0.113.10:5061;branch=z9hG4bKlk1\r\nMax-Forwards: 70\r\n\
From: <sip:lk@203.0.113.10>;tag=lk1\r\nTo: <sip:+15551234@203.0.113.50>\r\n\
Call-ID: lk-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:lk@203.0.113.10:5061;transport=tls>\r\n\
Content-Type: application/sdp\r\nContent-Length: 55\r\n\r\n\
v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n";
    let mut out = Vec::new();
    e.handle_on(
        0,
        (Side::Public, Transport::Tls),
        flow,
        invite.as_bytes(),
        &mut out,
    );
    let trying = out
        .iter()
        .find(|o| text(o).starts_with("SIP/2.0 100"))
        .unwrap();
    assert_eq!((trying.dst, trying.transport), (flow, Transport::Tls));
    let to_carrier = out.iter().find(|o| text(o).starts_with("INVITE")).unwrap();
    assert_eq!(
        (to_carrier.dst, to_carrier.transport),
        (addr(CARRIER), Transport::Udp)
    );
    let req = text(to_carrier);
    let ok = answer(&req, 200, "c1", true);
    out.clear();
    e.handle(10, Side::Private, addr(CARRIER), ok.as_bytes(), &mut out);
    let back = out
        .iter()
        .find(|o| text(o).starts_with("SIP/2.0 200"))
        .unwrap();
    assert_eq!((back.dst, back.transport), (flow, Transport::Tls));
    let back = text(back);
    assert_eq!(
        header(&back, "Record-Route"),
        Some("<sip:203.0.113.50:5081;transport=tls;lr>")
    );
    assert_eq!(
        header(&back, "Contact"),
        Some("<sip:sbc@203.0.113.50:5081;transport=tls>")
    );
    // The carrier hangs up: the BYE goes over the gateway's connection.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@10.0.0.100:5060",
        header(&req, "Call-ID").unwrap(),
        &format!("{};tag=c1", header(&req, "To").unwrap()),
        header(&req, "From").unwrap(),
        "cbye",
        1,
    );
    out.clear();
    e.handle(20, Side::Private, addr(CARRIER), bye.as_bytes(), &mut out);
    let to_gw = out.iter().find(|o| text(o).starts_with("BYE")).unwrap();
    assert_eq!((to_gw.dst, to_gw.transport), (flow, Transport::Tls));
    assert!(header(&text(to_gw), "Via")
        .unwrap()
        .starts_with("SIP/2.0/TLS 203.0.113.50:5081;alias;branch="));
}

#[test]
fn a_portless_tls_via_of_ours_is_a_loop_at_5061() {
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.tls[Side::Public] = Some("203.0.113.50:5061".parse().unwrap());
    let mut engine = SipEngine::new(cfg, Arc::new(tls_snapshot()), stats);
    let options = |via: &str| {
        format!(
            "OPTIONS sip:203.0.113.50:5061;transport=tls SIP/2.0\r\nVia: SIP/2.0/TLS 203.0.113.10:5061;branch=z9hG4bKgw1\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:gw@203.0.113.10>;tag=g\r\nTo: <sip:203.0.113.50>\r\nCall-ID: loop@gw\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    };
    for (via, code) in [
        ("SIP/2.0/TLS 203.0.113.50;branch=z9hG4bKours", 482),
        ("SIP/2.0/UDP 203.0.113.50;branch=z9hG4bKours", 200),
    ] {
        let mut out = Vec::new();
        engine.handle_on(
            0,
            (Side::Public, Transport::Tls),
            addr(TLS_GW),
            options(via).as_bytes(),
            &mut out,
        );
        let answer = String::from_utf8(out[0].data.clone()).unwrap();
        assert_eq!(status(&answer), code, "{via}: {answer}");
    }
}
