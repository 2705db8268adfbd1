//! Transactions and dialogs: proxying with topology hiding, retransmissions,
//! timeouts, CANCEL, final answers, OPTIONS and loops.

use super::*;

#[test]
fn inbound_call_is_proxied_with_topology_hidden() {
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("call1", "a1"));
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
    let back = peers.send(Side::Public, GATEWAY, &ringing);
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
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let r = &back[0].2;
    assert_eq!(status(r), 200);
    assert!(
        r.contains("Record-Route: <sip:10.0.0.100:5060;lr>\r\nRecord-Route: <sip:10.0.1.1;lr>\r\n")
    );
    assert_eq!(header(r, "Contact"), Some("<sip:sbc@10.0.0.100:5060>"));
    assert!(header(r, "To").unwrap().ends_with(";tag=gw1"));
    assert!(r.ends_with("c=IN IP4 10.0.0.100\r\n"));
    assert_eq!(peers.stats.calls_up.get(), 1);

    // A retransmitted 200 is relayed again.
    assert_eq!(peers.send(Side::Public, GATEWAY, &ok).len(), 1);

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
    let fwd_ack = peers.send(Side::Private, CARRIER, &ack);
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
    let fwd_bye = peers.send(Side::Public, GATEWAY, &bye);
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
    let back = peers.send(Side::Private, CARRIER, &bye_ok);
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, addr(GATEWAY));
    assert_eq!(status(&back[0].2), 200);
    assert_eq!(
        header(&back[0].2, "Via"),
        Some("SIP/2.0/UDP x.invalid;branch=z9hG4bKb1")
    );
    assert_eq!(peers.stats.calls_up.get(), 0);
    assert_eq!(peers.engine.dialog_count(), 0);
    peers.advance(40_000);
    assert_eq!(peers.engine.transaction_count(), 0);
}

#[test]
fn retransmitted_invite_is_absorbed_not_forwarded() {
    let mut peers = Peers::new();
    let inv = invite("c2", "r1");
    assert_eq!(peers.send(Side::Private, CARRIER, &inv).len(), 2);
    let again = peers.send(Side::Private, CARRIER, &inv);
    assert_eq!(again.len(), 1);
    assert_eq!(status(&again[0].2), 100);
    assert_eq!(again[0].1, addr(CARRIER));
}

#[test]
fn silent_gateway_gets_retransmissions_then_408() {
    let mut peers = Peers::new();
    peers.send(Side::Private, CARRIER, &invite("c3", "t1"));
    let sent = peers.advance(31_000);
    // Timer A: sent again at 0.5, 1.5, 3.5, 7.5, 15.5 and 31.5 s.
    assert_eq!(sent.iter().filter(|s| s.2.starts_with("INVITE")).count(), 5);
    let sent = peers.advance(1_100);
    assert_eq!(sent.iter().filter(|s| s.2.starts_with("INVITE")).count(), 1);
    let r: Vec<_> = sent.iter().filter(|s| s.1 == addr(CARRIER)).collect();
    assert_eq!(status(&r[0].2), 408);
    assert!(header(&r[0].2, "To").unwrap().contains(";tag="));
    assert_eq!(peers.stats.calls_failed.get(), 1);
    assert_eq!(peers.engine.dialog_count(), 0);
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
    assert!(peers.send(Side::Private, CARRIER, &ack).is_empty());
    peers.advance(6_000);
    assert_eq!(peers.engine.transaction_count(), 0);
}

#[test]
fn cancel_is_hop_by_hop_and_caller_gets_487() {
    let mut peers = Peers::new();
    let inv = invite("c4", "k1");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 180, "g4", false));
    let cancel = inv
        .replacen("INVITE sip", "CANCEL sip", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let sent = peers.send(Side::Private, CARRIER, &cancel);
    assert_eq!(sent.len(), 2);
    assert_eq!(status(&sent[0].2), 200);
    assert!(sent[1]
        .2
        .starts_with("CANCEL sip:+15551234@203.0.113.10:5060"));
    assert_eq!(header(&sent[1].2, "Via"), header(&fwd, "Via"));
    let terminated = answer(&fwd, 487, "g4", false);
    let sent = peers.send(Side::Public, GATEWAY, &terminated);
    assert_eq!(sent.len(), 2);
    assert!(sent[0].2.starts_with("ACK sip:+15551234@203.0.113.10:5060"));
    assert_eq!(status(&sent[1].2), 487);
    assert_eq!(sent[1].1, addr(CARRIER));
    assert_eq!(peers.engine.dialog_count(), 0);
}

#[test]
fn busy_gateway_503_is_not_relayed_as_is() {
    // With failover on 503 (the default), the caller gets our own 503 once
    // nothing is left: the gateway's reason phrase is not in it.
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("c4", "s0"));
    let back = peers.send(Side::Public, GATEWAY, &answer(&sent[1].2, 503, "g4", false));
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
    let mut peers = Peers::with(snapshot(), policy);
    let sent = peers.send(Side::Private, CARRIER, &invite("c5", "s1"));
    let back = peers.send(Side::Public, GATEWAY, &answer(&sent[1].2, 503, "g5", false));
    assert_eq!(status(&back[1].2), 500);
    let sent = peers.send(Side::Private, CARRIER, &invite("c6", "s2"));
    let back = peers.send(Side::Public, GATEWAY, &answer(&sent[1].2, 486, "g6", false));
    assert_eq!(status(&back[1].2), 486);
    // Without media, each failed call's record goes straight to the ring.
    let records: Vec<_> = std::iter::from_fn(|| peers.stats.call_records.pop()).collect();
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
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, "10.0.1.20:5060", &invite("c7", "f1"));
    assert_eq!(sent.len(), 1);
    assert_eq!(status(&sent[0].2), 403);
    assert_eq!(peers.engine.dialog_count(), 0);
    assert_eq!(peers.engine.transaction_count(), 0);
}

#[test]
fn outbound_call_goes_to_the_host_carrier() {
    let mut peers = Peers::new();
    let inv = invite("o1", "o1")
        .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
        .replace("10.0.0.100:5060", "203.0.113.50:5080");
    let sent = peers.send(Side::Public, GATEWAY, &inv);
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
    let mut peers = Peers::new();
    let opt = in_dialog(
        "OPTIONS",
        "sip:10.0.0.100:5060",
        "o@x",
        "<sip:a@x>;tag=1",
        "<sip:10.0.0.100>",
        "p1",
        1,
    );
    let r = peers.send(Side::Private, CARRIER, &opt);
    assert_eq!(status(&r[0].2), 200);
    let looped = opt.replace("Via: SIP/2.0/UDP x.invalid;branch=z9hG4bKp1", "Via: SIP/2.0/UDP x.invalid;branch=z9hG4bKp2\r\nVia: SIP/2.0/UDP 203.0.113.50:5080;branch=z9hG4bKsbc1");
    assert_eq!(
        status(&peers.send(Side::Private, CARRIER, &looped)[0].2),
        482
    );
}

#[test]
fn challenged_outbound_call_keeps_credentials_and_call_id() {
    let mut peers = Peers::new();
    let inv = invite("auth1", "a1")
        .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
        .replace("10.0.0.100:5060", "203.0.113.50:5080");
    let first = peers.send(Side::Public, GATEWAY, &inv)[1].2.clone();
    let call_id = header(&first, "Call-ID").unwrap().to_string();
    // The carrier challenges; its realm and nonce reach the gateway as sent.
    let challenge =
        "Proxy-Authenticate: Digest realm=\"10.0.1.10\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"";
    let resp = answer(&first, 407, "c407", false).replace(
        "Content-Length: 0",
        &format!("{challenge}\r\nContent-Length: 0"),
    );
    let back = peers.send(Side::Private, CARRIER, &resp);
    let relayed = back.iter().find(|(s, ..)| *s == Side::Public).unwrap();
    assert_eq!(status(&relayed.2), 407);
    assert!(relayed.2.contains(challenge), "{}", relayed.2);
    // The gateway sends the INVITE again with credentials: same Call-ID and
    // From tag, CSeq + 1, a new branch (RFC 3261 8.1.3.5, 22.2).
    let credentials = "Proxy-Authorization: Digest username=\"u\", realm=\"10.0.1.10\", nonce=\"n1\", uri=\"sip:+15551234@203.0.113.50:5080\", response=\"0123456789abcdef0123456789abcdef\", qop=auth, nc=00000001, cnonce=\"c1\"";
    let again = inv.replace("branch=z9hG4bKa1", "branch=z9hG4bKa2").replace(
        "CSeq: 1 INVITE",
        &format!("CSeq: 2 INVITE\r\n{credentials}"),
    );
    let second = peers.send(Side::Public, GATEWAY, &again)[1].2.clone();
    assert!(
        second.contains(credentials),
        "credentials altered:\n{second}"
    );
    assert_eq!(header(&second, "Call-ID"), Some(call_id.as_str()));
    assert_eq!(header(&second, "CSeq"), Some("2 INVITE"));
    // A new call from the same gateway later gets a Call-ID of its own.
    let fresh = inv
        .replace("auth1@", "auth2@")
        .replace("z9hG4bKa1", "z9hG4bKa3");
    let other = peers.send(Side::Public, GATEWAY, &fresh)[1].2.clone();
    assert_ne!(header(&other, "Call-ID"), Some(call_id.as_str()));
}

#[test]
fn rport_is_filled_in_on_every_answer() {
    let mut peers = Peers::new();
    // Behind NAT: sent-by says 192.168.1.5:5062, the datagram came from CARRIER.
    let inv = invite("rp1", "rp1").replace(
        "Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bKrp1",
        "Via: SIP/2.0/UDP 192.168.1.5:5062;rport;branch=z9hG4bKrp1, SIP/2.0/UDP 10.0.9.9;rport",
    );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let want = "Via: SIP/2.0/UDP 192.168.1.5:5062;rport=5060;branch=z9hG4bKrp1;received=10.0.1.10, SIP/2.0/UDP 10.0.9.9;rport\r\n";
    assert_eq!(status(&sent[0].2), 100);
    assert!(sent[0].2.contains(want), "{}", sent[0].2);
    let busy = answer(&sent[1].2, 486, "g486", false);
    let back = peers.send(Side::Public, GATEWAY, &busy);
    let relayed = back.iter().find(|(s, ..)| *s == Side::Private).unwrap();
    assert_eq!(status(&relayed.2), 486);
    assert!(relayed.2.contains(want), "{}", relayed.2);
    // Without rport, the Via comes back as it was.
    let plain = peers.send(Side::Private, CARRIER, &invite("rp2", "rp2"));
    assert!(plain[0]
        .2
        .contains("Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bKrp2\r\n"));
}

#[test]
fn requests_toward_a_strict_router_carry_its_uri_and_the_target_last() {
    // The carrier's edge proxy records its route without ;lr (RFC 2543).
    let mut peers = Peers::new();
    let inv = invite("sr1", "sr1").replace(
        "Record-Route: <sip:10.0.1.1;lr>",
        "Record-Route: <sip:10.0.1.1;transport=udp>",
    );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 200, "gw1", true));
    let bye = gateway_bye(&fwd, "srb");
    let out = peers.send(Side::Public, GATEWAY, &bye);
    let (side, dst, to_carrier) = &out[0];
    assert_eq!((*side, *dst), (Side::Private, addr("10.0.1.1:5060")));
    assert!(
        to_carrier.starts_with("BYE sip:10.0.1.1;transport=udp SIP/2.0\r\n"),
        "{to_carrier}"
    );
    assert_eq!(
        header(to_carrier, "Route"),
        Some("<sip:alice@10.0.1.10:5060>")
    );
    assert_eq!(to_carrier.matches("Route:").count(), 1, "{to_carrier}");
    // A loose router is left as it is.
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("lr1", "lr1"));
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 200, "gw1", true));
    let bye = bye.replace(
        header(&bye, "Call-ID").unwrap(),
        header(&fwd, "Call-ID").unwrap(),
    );
    let bye = bye.replace(
        header(&bye, "From").unwrap(),
        &format!("{};tag=gw1", header(&fwd, "To").unwrap()),
    );
    let out = peers.send(Side::Public, GATEWAY, &bye);
    assert!(
        out[0]
            .2
            .starts_with("BYE sip:alice@10.0.1.10:5060 SIP/2.0\r\n"),
        "{}",
        out[0].2
    );
    assert_eq!(header(&out[0].2, "Route"), Some("<sip:10.0.1.1;lr>"));
}

#[test]
fn a_refer_naming_our_address_names_our_address_on_the_other_side() {
    let mut peers = Peers::new();
    let sent = peers.send(Side::Private, CARRIER, &invite("rf1", "rf1"));
    let fwd = sent[1].2.clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 200, "gw1", true));
    // LiveKit transfers the call to a number behind the SBC (RFC 3515).
    let refer = in_dialog(
        "REFER",
        "sip:sbc@203.0.113.50:5080",
        header(&fwd, "Call-ID").unwrap(),
        &format!("{};tag=gw1", header(&fwd, "To").unwrap()),
        header(&fwd, "From").unwrap(),
        "rfr",
        2,
    )
    .replace(
        "Content-Length: 0",
        "Refer-To: <sip:+15550001@203.0.113.50:5080>\r\nReferred-By: <sip:lk@203.0.113.10>\r\nContent-Length: 0",
    );
    let out = peers.send(Side::Public, GATEWAY, &refer);
    let (side, _, to_carrier) = &out[0];
    assert_eq!(*side, Side::Private);
    assert!(to_carrier.starts_with("REFER "), "{to_carrier}");
    assert_eq!(
        header(to_carrier, "Refer-To"),
        Some("<sip:+15550001@10.0.0.100:5060>")
    );
    assert!(!to_carrier.contains("203.0.113"), "{to_carrier}");
    // The carrier's NOTIFY carries a sipfrag naming our private address.
    let frag = "SIP/2.0 200 OK\r\nContact: <sip:+15550001@10.0.0.100:5060>\r\n";
    let notify = in_dialog(
        "NOTIFY",
        "sip:sbc@10.0.0.100:5060",
        "rf1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        "rfn",
        2,
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Event: refer\r\nSubscription-State: terminated;reason=noresource\r\nContent-Type: message/sipfrag;version=2.0\r\nContent-Length: {}\r\n\r\n{frag}",
            frag.len()
        ),
    );
    let out = peers.send(Side::Private, CARRIER, &notify);
    let (side, _, to_gw) = &out[0];
    assert_eq!(*side, Side::Public);
    assert!(
        to_gw.ends_with("SIP/2.0 200 OK\r\nContact: <sip:+15550001@203.0.113.50:5080>\r\n"),
        "{to_gw}"
    );
    assert!(!to_gw.contains("10.0."), "{to_gw}");
}
