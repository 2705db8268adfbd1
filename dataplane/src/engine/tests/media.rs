//! Media anchoring through the engine: port pairs, SDP rewriting, stream
//! commands, release with the call record, and the media timeout.

use super::*;

fn media_lab() -> Peers {
    let media = MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10000, 10100), (20000, 20100)),
        timeout: 60_000,
        hold_timeout: Some(3_600_000),
    };
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.media = Some(media);
    Peers {
        engine: SipEngine::new(cfg, Arc::new(snapshot()), stats.clone()),
        stats,
        now: 0,
        out: Vec::new(),
    }
}

/// INVITE with one audio line from the carrier, 200 with SDP from the gateway.
fn answered_media_call(peers: &mut Peers) -> String {
    let inv = invite("m1", "m1")
        .replace(
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
        )
        .replace("Content-Length: 55", "Content-Length: 83");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        "Content-Type: application/sdp\r\nContent-Length: 53\r\n\r\nv=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\n",
    );
    peers.send(Side::Public, GATEWAY, &ok);
    fwd
}

#[test]
fn media_timeout_ends_the_call_with_byes_both_ways() {
    use crate::media::MediaCmd;
    let mut peers = media_lab();
    let fwd = answered_media_call(&mut peers);
    assert_eq!(peers.stats.calls_up.get(), 1);
    peers.out.clear();
    let mut out = Vec::new();
    peers.engine.media_idle(Side::Private, 10000, &mut out);
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
    assert_eq!(peers.stats.calls_up.get(), 0);
    assert_eq!(peers.engine.dialog_count(), 0);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
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
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    assert_eq!(out.len(), 2);
}

#[test]
fn media_ports_are_allocated_rewritten_and_released() {
    use crate::media::MediaCmd;
    let mut peers = media_lab();
    let free = peers.engine.free_port_pairs();
    let inv = invite("m1", "m1").replace(
        "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
        "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
    );
    let inv = inv.replace("Content-Length: 55", "Content-Length: 83");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    assert!(fwd.contains("c=IN IP4 203.0.113.50\r\n"), "{fwd}");
    assert!(fwd.contains("m=audio 20000 RTP/AVP 8\r\n"), "{fwd}");
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
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
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert!(
        back[0]
            .2
            .contains("c=IN IP4 10.0.0.100\r\nm=audio 10000 RTP/AVP 8\r\n"),
        "{}",
        back[0].2
    );
    cmds.clear();
    peers.engine.take_media_commands(&mut cmds);
    assert!(cmds.contains(&MediaCmd::Peer {
        side: Side::Public,
        port: 20000,
        peer: Some("203.0.113.10:30000".parse().unwrap())
    }));
    assert_ne!(peers.engine.free_port_pairs(), free);

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
    let fwd_bye = peers.send(Side::Public, GATEWAY, &bye);
    let b = &fwd_bye[0].2;
    let bye_ok = answer(b, 200, "x", false).replace(
        &format!("To: {};tag=x", header(b, "To").unwrap()),
        &format!("To: {}", header(b, "To").unwrap()),
    );
    peers.send(Side::Private, "10.0.1.1:5060", &bye_ok);
    cmds.clear();
    peers.engine.take_media_commands(&mut cmds);
    let [MediaCmd::Release { rtp_ports, record }] = cmds.as_slice() else {
        panic!("one release expected: {cmds:?}");
    };
    assert_eq!(rtp_ports, &vec![(Side::Private, 10000)]);
    assert_eq!(record.result, crate::call::CallResult::Answered);
    assert_eq!(record.caller_side, Side::Private);
    assert_eq!(record.callee_call_id, header(&fwd, "Call-ID").unwrap());
    assert!(record.media.is_empty(), "the relay fills the media lines");
    assert!(
        peers.stats.call_records.is_empty(),
        "the record rides the release"
    );
    assert_eq!(peers.engine.free_port_pairs(), free);
}

#[test]
fn ice_candidates_never_reach_the_other_side() {
    let mut peers = media_lab();
    let body = "v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n\
m=audio 40000 RTP/AVP 0\r\na=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\n\
a=candidate:1 1 UDP 2130706431 10.0.1.10 40000 typ host\r\na=rtcp-mux\r\n";
    let inv = invite("ice1", "ice1")
        .replace(
            "Content-Length: 55\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            &format!("Content-Length: {}\r\n\r\n{body}", body.len()),
        );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = &sent[1].2;
    for gone in [
        "candidate",
        "ice-ufrag",
        "ice-pwd",
        "rtcp-mux",
        "40000",
        "10.0.1.10",
    ] {
        assert!(!fwd.contains(gone), "{gone} reached the gateway:\n{fwd}");
    }
    assert!(fwd.contains("m=audio 20000 RTP/AVP 0\r\n"), "{fwd}");
    let sdp_len = fwd.split("\r\n\r\n").nth(1).unwrap().len();
    assert_eq!(
        header(fwd, "Content-Length"),
        Some(sdp_len.to_string().as_str())
    );
}

/// A re-INVITE from the carrier in the call of [`answered_media_call`],
/// carrying `body` as `application/sdp`.
fn reinvite_request(branch: &str, cseq: u32, body: &str) -> String {
    in_dialog(
        "INVITE",
        "sip:sbc@10.0.0.100:5060",
        "m1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        branch,
        cseq,
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:alice@10.0.1.10:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// [`reinvite_request`] with `sdp`, answered 200 by the gateway with `answer_sdp`.
fn reinvite(peers: &mut Peers, branch: &str, cseq: u32, sdp: &str, answer_sdp: &str) {
    let req = reinvite_request(branch, cseq, sdp);
    let sent = peers.send(Side::Private, CARRIER, &req);
    let fwd = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    assert!(fwd.starts_with("INVITE "), "{fwd}");
    let ok = answer(fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer_sdp}",
            answer_sdp.len()
        ),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert!(back
        .iter()
        .any(|(s, _, m)| *s == Side::Private && status(m) == 200));
}

#[test]
fn held_calls_outlive_the_media_timeout_until_the_hold_timeout() {
    let mut peers = media_lab();
    answered_media_call(&mut peers);
    let hold = "v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40000 RTP/AVP 8\r\na=inactive\r\n";
    let held = "v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\na=inactive\r\n";
    reinvite(&mut peers, "h1", 2, hold, held);
    let mut out = Vec::new();
    // Silent for the media timeout, but on hold: the call stays up.
    peers.now += 60_000;
    peers.engine.tick(peers.now, &mut out);
    out.clear();
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    assert!(out.is_empty(), "held call hung up: {out:?}");
    assert_eq!(peers.stats.calls_up.get(), 1);
    assert_eq!(peers.stats.media_timeouts_held.get(), 1);
    // Held and silent past the hold timeout: ended with BYEs both ways.
    peers.now += 3_600_000;
    peers.engine.tick(peers.now, &mut out);
    out.clear();
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(peers.stats.calls_up.get(), 0);
    assert_eq!(peers.stats.media_timeouts.get(), 1);
}

#[test]
fn a_resumed_call_is_subject_to_the_media_timeout_again() {
    let mut peers = media_lab();
    answered_media_call(&mut peers);
    // c=0.0.0.0 hold (RFC 2543 style), then resumed.
    let hold = "v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 40000 RTP/AVP 8\r\n";
    let answer_sdp = "v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\n";
    reinvite(&mut peers, "h2", 2, hold, answer_sdp);
    let mut out = Vec::new();
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    assert!(out.is_empty(), "held call hung up: {out:?}");
    let resume = "v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40000 RTP/AVP 8\r\na=sendrecv\r\n";
    reinvite(&mut peers, "h3", 3, resume, answer_sdp);
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(peers.stats.media_timeouts.get(), 1);
}

#[test]
fn an_offer_the_relay_cannot_anchor_is_refused_with_488() {
    let mut peers = media_lab();
    let inv = invite("bad1", "bad1")
        .replace("c=IN IP4 10.0.1.10\r\n", "c=IN IP4 10.10.10.256\r\n")
        .replace("t=0 0\r\n", "t=0 0\r\nm=audio 40000 RTP/AVP 0\r\n")
        .replace("Content-Length: 55", "Content-Length: 81");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status(&sent[0].2), 488);
    assert_eq!(
        header(&sent[0].2, "Warning"),
        Some("399 sbc \"SDP c= line is not IN IP4 with an IPv4 address\"")
    );
    assert_eq!(peers.engine.dialog_count(), 0);
    // A re-INVITE with such an offer is refused too, and the call stays.
    answered_media_call(&mut peers);
    let req = reinvite_request("bad2", 2, "no sdp\r\n");
    let sent = peers.send(Side::Private, CARRIER, &req);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status(&sent[0].2), 488);
    assert_eq!(peers.stats.calls_up.get(), 1);
}
