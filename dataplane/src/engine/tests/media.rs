//! Media anchoring through the engine: port pairs, SDP rewriting, stream
//! commands, release with the call record, and the media timeout.

use super::*;
use crate::media::{MediaCmd, RelayTable, Verdict};

fn media_lab() -> Peers {
    media_lab_with(|_| {})
}

/// [`media_lab`] with its engine settings changed by `change`.
fn media_lab_with(change: impl FnOnce(&mut EngineConfig)) -> Peers {
    let media = MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10000, 10100), (20000, 20100)),
        timeout: 60_000,
        hold_timeout: Some(3_600_000),
        max_sessions: None,
    };
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.media = Some(media);
    change(&mut cfg);
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
    // The offer waits for its answer: no peer is set yet.
    assert!(
        !cmds.iter().any(|c| matches!(c, MediaCmd::Peer { .. })),
        "{cmds:?}"
    );

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
    // The answer commits the offer and itself.
    for (side, port, peer) in [
        (Side::Private, 10000, "10.0.1.10:40000"),
        (Side::Private, 10001, "10.0.1.10:40001"),
        (Side::Public, 20000, "203.0.113.10:30000"),
        (Side::Public, 20001, "203.0.113.10:30001"),
    ] {
        let peer = Some(peer.parse().unwrap());
        assert!(
            cmds.contains(&MediaCmd::Peer { side, port, peer }),
            "{cmds:?}"
        );
    }
    assert_ne!(peers.engine.free_port_pairs(), free);

    // The gateway hangs up: streams removed, ports back.
    let bye = gateway_bye(&fwd, "mb");
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

/// The engine's media commands so far, applied to `relay`.
fn apply(peers: &mut Peers, relay: &mut RelayTable) {
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds {
        relay.apply(c, |_| {});
    }
}

fn rtp_packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend([0, 0, 0, 1]);
    p.extend([0xff; 160]);
    p
}

/// Where the relay sends an RTP packet from the carrier's `src` (to our
/// private port 10000), or `None` when it drops it.
fn from_carrier(relay: &mut RelayTable, src: &str, seq: u16) -> Option<SocketAddrV4> {
    match relay.verdict(
        (Side::Private, 0, 10000),
        src.parse().unwrap(),
        &mut rtp_packet(seq),
        0,
    ) {
        Verdict::Relay { to, .. } => Some(to),
        Verdict::Drop(_) => None,
    }
}

/// Where the relay sends an RTP packet from the gateway's 203.0.113.10:30000.
fn from_gateway(relay: &mut RelayTable, seq: u16) -> Option<SocketAddrV4> {
    match relay.verdict(
        (Side::Public, 0, 20000),
        "203.0.113.10:30000".parse().unwrap(),
        &mut rtp_packet(seq),
        0,
    ) {
        Verdict::Relay { to, .. } => Some(to),
        Verdict::Drop(_) => None,
    }
}

const AUDIO_40000: &str = "v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40000 RTP/AVP 8\r\n";
const AUDIO_40002: &str = "v=0\r\nc=IN IP4 10.0.1.10\r\nm=audio 40002 RTP/AVP 8\r\n";
const GW_AUDIO: &str = "v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8\r\n";

/// An answered call with media crossing both ways through `relay`.
fn call_with_audio(peers: &mut Peers, relay: &mut RelayTable) {
    answered_media_call(peers);
    apply(peers, relay);
    let gw = "203.0.113.10:30000".parse().ok();
    assert_eq!(from_carrier(relay, "10.0.1.10:40000", 1), gw);
    assert_eq!(from_gateway(relay, 1), "10.0.1.10:40000".parse().ok());
}

#[test]
fn a_port_only_move_takes_effect_when_answered_late() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    call_with_audio(&mut peers, &mut relay);
    let gw = "203.0.113.10:30000".parse().ok();
    // The carrier offers m=audio 40002 and keeps sending from 40000.
    let req = reinvite_request("mv1", 2, AUDIO_40002);
    let sent = peers.send(Side::Private, CARRIER, &req);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert!(fwd.contains("m=audio 20000 RTP/AVP 8\r\n"), "{fwd}");
    apply(&mut peers, &mut relay);
    for seq in 2..4 {
        assert_eq!(from_carrier(&mut relay, "10.0.1.10:40000", seq), gw);
        assert_eq!(
            from_gateway(&mut relay, seq),
            "10.0.1.10:40000".parse().ok()
        );
    }
    // The gateway answers 40 ms later; one old-port packet is still in flight.
    peers.advance(40);
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{GW_AUDIO}",
            GW_AUDIO.len()
        ),
    );
    peers.send(Side::Public, GATEWAY, &ok);
    apply(&mut peers, &mut relay);
    assert_eq!(from_carrier(&mut relay, "10.0.1.10:40000", 4), gw);
    let forwarded = (5..95)
        .filter(|&seq| from_carrier(&mut relay, "10.0.1.10:40002", seq) == gw)
        .count();
    assert_eq!(forwarded, 90, "packets from the new port forwarded");
    assert_eq!(from_gateway(&mut relay, 5), "10.0.1.10:40002".parse().ok());
    assert_eq!(from_carrier(&mut relay, "10.0.1.10:40000", 95), None);
}

#[test]
fn a_refused_or_cancelled_offer_leaves_the_session_unchanged() {
    let t38 = "v=0\r\nc=IN IP4 10.0.1.10\r\nm=image 40010 udptl t38\r\n";
    for (i, code) in [488u16, 491, 500, 487].into_iter().enumerate() {
        let mut peers = media_lab();
        let mut relay = RelayTable::new(10000, 20100);
        call_with_audio(&mut peers, &mut relay);
        let body = if code == 491 { AUDIO_40002 } else { t38 };
        let req = reinvite_request(&format!("rf{i}"), 2, body);
        let sent = peers.send(Side::Private, CARRIER, &req);
        let fwd = sent
            .iter()
            .find(|(s, ..)| *s == Side::Public)
            .unwrap()
            .2
            .clone();
        if code == 487 {
            // The carrier gives up: CANCEL, which the gateway answers 487.
            peers.send(Side::Public, GATEWAY, &answer(&fwd, 180, "gw1", false));
            let cancel = req
                .replacen("INVITE sip:", "CANCEL sip:", 1)
                .replace("CSeq: 2 INVITE", "CSeq: 2 CANCEL");
            let cancel =
                cancel.split("Contact:").next().unwrap().to_string() + "Content-Length: 0\r\n\r\n";
            let out = peers.send(Side::Private, CARRIER, &cancel);
            assert!(
                out.iter().any(|(_, _, m)| m.starts_with("CANCEL ")),
                "{out:?}"
            );
        }
        let refused = answer(&fwd, code, "gw1", false);
        let back = peers.send(Side::Public, GATEWAY, &refused);
        assert!(
            back.iter()
                .any(|(s, _, m)| *s == Side::Private && status(m) == code),
            "{code}: {back:?}"
        );
        let mut cmds = Vec::new();
        peers.engine.take_media_commands(&mut cmds);
        assert!(
            !cmds.iter().any(|c| matches!(c, MediaCmd::Peer { .. })),
            "{code}: the refused offer moved a peer: {cmds:?}"
        );
        for c in cmds {
            relay.apply(c, |_| {});
        }
        let gw = "203.0.113.10:30000".parse().ok();
        assert_eq!(from_carrier(&mut relay, "10.0.1.10:40000", 2), gw, "{code}");
        assert_eq!(
            from_carrier(&mut relay, "10.0.1.10:40002", 3),
            None,
            "{code}"
        );
        assert_eq!(from_gateway(&mut relay, 2), "10.0.1.10:40000".parse().ok());
        assert_eq!(peers.stats.offers_rolled_back.get(), 1, "{code}");
        assert_eq!(peers.stats.calls_up.get(), 1, "{code}");
        // The next offer is taken as usual.
        reinvite(&mut peers, &format!("ok{i}"), 3, AUDIO_40002, GW_AUDIO);
        apply(&mut peers, &mut relay);
        assert_eq!(from_carrier(&mut relay, "10.0.1.10:40002", 4), gw, "{code}");
    }
}

#[test]
fn a_delayed_offer_is_answered_in_the_ack() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    let inv = invite("d1", "d1")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            "Content-Length: 55\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            "Content-Length: 0\r\n\r\n",
        );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{GW_AUDIO}",
            GW_AUDIO.len()
        ),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert!(
        back[0].2.contains("m=audio 10000 RTP/AVP 8\r\n"),
        "{}",
        back[0].2
    );
    apply(&mut peers, &mut relay);
    assert_eq!(from_gateway(&mut relay, 1), None, "no answer yet");
    let ack = in_dialog(
        "ACK",
        "sip:sbc@10.0.0.100:5060",
        "d1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        "d1ack",
        1,
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{AUDIO_40000}",
            AUDIO_40000.len()
        ),
    );
    let out = peers.send(Side::Private, CARRIER, &ack);
    assert!(out[0].2.starts_with("ACK "), "{out:?}");
    assert!(
        out[0].2.contains("m=audio 20000 RTP/AVP 8\r\n"),
        "{}",
        out[0].2
    );
    apply(&mut peers, &mut relay);
    assert_eq!(
        from_carrier(&mut relay, "10.0.1.10:40000", 1),
        "203.0.113.10:30000".parse().ok()
    );
    assert_eq!(from_gateway(&mut relay, 2), "10.0.1.10:40000".parse().ok());
    assert_eq!(peers.stats.offers_rolled_back.get(), 0);
}

#[test]
fn an_update_is_answered_in_its_200() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    call_with_audio(&mut peers, &mut relay);
    let req = reinvite_request("up1", 2, AUDIO_40002)
        .replacen("INVITE sip:", "UPDATE sip:", 1)
        .replace("CSeq: 2 INVITE", "CSeq: 2 UPDATE");
    let sent = peers.send(Side::Private, CARRIER, &req);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert!(fwd.starts_with("UPDATE "), "{fwd}");
    apply(&mut peers, &mut relay);
    assert_eq!(from_gateway(&mut relay, 2), "10.0.1.10:40000".parse().ok());
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{GW_AUDIO}",
            GW_AUDIO.len()
        ),
    );
    peers.send(Side::Public, GATEWAY, &ok);
    apply(&mut peers, &mut relay);
    assert_eq!(from_gateway(&mut relay, 3), "10.0.1.10:40002".parse().ok());
}

#[test]
fn our_byes_are_resent_until_answered_and_their_answers_counted() {
    let mut peers = media_lab();
    answered_media_call(&mut peers);
    let mut out = Vec::new();
    peers.engine.media_idle(Side::Private, 10000, &mut out);
    let byes: Vec<String> = out
        .iter()
        .map(|o| String::from_utf8(o.data.clone()).unwrap())
        .collect();
    assert_eq!(byes.len(), 2);
    assert_eq!(peers.stats.local_requests.get(), 2);
    // Both lost: resent after T1 (Timer E), the same bytes.
    let again = peers.advance(500);
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(again[0].2, byes[0]);
    assert_eq!(again[1].2, byes[1]);
    // The gateway answers its BYE: counted, not stray, not relayed, not resent.
    let ok = answer(&byes[1], 200, "x", false).replace(
        &format!("To: {};tag=x", header(&byes[1], "To").unwrap()),
        &format!("To: {}", header(&byes[1], "To").unwrap()),
    );
    let relayed = peers.send(Side::Public, GATEWAY, &ok);
    assert!(relayed.is_empty(), "{relayed:?}");
    assert_eq!(peers.stats.local_answers.get(), 1);
    assert_eq!(peers.stats.stray_responses.get(), 0);
    // The carrier never answers: resent (T1 doubling to T2) until Timer F.
    let rest = peers.advance(64 * 500);
    assert!(rest.iter().all(|(_, _, m)| *m == byes[0]), "{rest:?}");
    assert!(rest.len() >= 8, "{} retransmissions", rest.len());
    assert_eq!(peers.stats.local_timeouts.get(), 1);
    assert_eq!(peers.engine.transaction_count(), 0);
    assert!(peers.advance(10_000).is_empty());
}

/// An ISUP IAM (ITU-T Q.763) as SIP-I carries it: binary, with a NUL, bytes
/// above 0x7f and a CRLF followed by `--` inside.
const ISUP_IAM: &[u8] = &[
    0x01, 0x00, 0x20, 0x00, 0x0a, 0x03, 0x02, 0x0a, 0x08, 0x83, 0x90, 0x89, 0x67, 0x45, 0x23, 0x01,
    0x0f, 0x0d, 0x0a, 0x2d, 0x2d, 0xff, 0x00,
];

/// `msg` (a SIP message with an `application/sdp` body `sdp`) with a
/// SIP-I body instead: `multipart/mixed` of that SDP and [`ISUP_IAM`].
fn sip_i(msg: &str, sdp: &str) -> Vec<u8> {
    let head = msg
        .split("Content-Type: application/sdp\r\n")
        .next()
        .unwrap();
    let head = head.split("Content-Length:").next().unwrap();
    let mut body = format!(
        "--b1\r\nContent-Type: application/sdp\r\n\r\n{sdp}\r\n--b1\r\n\
Content-Type: application/ISUP;version=itu-t92+\r\nContent-Disposition: signal;handling=optional\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(ISUP_IAM);
    body.extend_from_slice(b"\r\n--b1--\r\n");
    let mut out = format!(
        "{head}MIME-Version: 1.0\r\nContent-Type: multipart/mixed;boundary=b1\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend(body);
    out
}

/// The header block (as text) and the body of a message we sent.
fn split_message(data: &[u8]) -> (String, Vec<u8>) {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(data[..end + 2].to_vec()).unwrap();
    let body = data[end + 4..].to_vec();
    assert_eq!(
        header(&head, "Content-Length"),
        Some(body.len().to_string().as_str()),
        "{head}"
    );
    (head, body)
}

#[test]
fn the_sdp_part_of_a_sip_i_body_is_anchored_and_the_isup_passes_byte_exact() {
    use crate::sip::multipart::Multipart;
    let mut peers = media_lab();
    let inv = sip_i(&invite("si1", "si1"), AUDIO_40000);
    let mut out = Vec::new();
    peers
        .engine
        .handle(0, Side::Private, addr(CARRIER), &inv, &mut out);
    let to_gw = &out.iter().find(|o| o.side == Side::Public).unwrap().data;
    let (head, body) = split_message(to_gw);
    assert_eq!(
        header(&head, "Content-Type"),
        Some("multipart/mixed;boundary=b1")
    );
    let mp = Multipart::parse(b"multipart/mixed;boundary=b1", &body).unwrap();
    let sdp = String::from_utf8(mp.part_body(0).to_vec()).unwrap();
    assert!(sdp.contains("c=IN IP4 203.0.113.50\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 20000 RTP/AVP 8\r\n"), "{sdp}");
    assert_eq!(mp.part_body(1), ISUP_IAM);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, MediaCmd::Install(_)))
            .count(),
        2,
        "RTP and RTCP streams: {cmds:?}"
    );

    // The gateway answers with plain SDP; the carrier's address is committed.
    let fwd = String::from_utf8_lossy(to_gw).into_owned();
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{GW_AUDIO}",
            GW_AUDIO.len()
        ),
    );
    peers.send(Side::Public, GATEWAY, &ok);
    peers.engine.take_media_commands(&mut cmds);
    assert!(cmds.contains(&MediaCmd::Peer {
        side: Side::Private,
        port: 10000,
        peer: "10.0.1.10:40000".parse().ok()
    }));
}

#[test]
fn a_sip_i_answer_from_the_carrier_is_anchored_too() {
    use crate::sip::multipart::Multipart;
    let mut peers = media_lab();
    // An outbound call: the gateway's INVITE with plain SDP.
    let inv = invite("so1", "so1")
        .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
        .replace("10.0.0.100:5060", "203.0.113.50:5080")
        .replace(
            "Content-Length: 55\r\n\r\nv=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            &format!("Content-Length: {}\r\n\r\n{GW_AUDIO}", GW_AUDIO.len()),
        );
    let sent = peers.send(Side::Public, GATEWAY, &inv);
    let to_carrier = &sent.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert!(
        to_carrier.contains("m=audio 10000 RTP/AVP 8\r\n"),
        "{to_carrier}"
    );
    // The carrier answers 200 with SDP + ISUP (an ANM).
    let ok = answer(to_carrier, 200, "ca9", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{AUDIO_40000}",
            AUDIO_40000.len()
        ),
    );
    let ok = sip_i(&ok, AUDIO_40000);
    let mut out = Vec::new();
    peers
        .engine
        .handle(0, Side::Private, addr(CARRIER), &ok, &mut out);
    let (head, body) = split_message(&out[0].data);
    assert!(head.starts_with("SIP/2.0 200 "), "{head}");
    let mp = Multipart::parse(b"multipart/mixed;boundary=b1", &body).unwrap();
    let sdp = String::from_utf8(mp.part_body(0).to_vec()).unwrap();
    assert!(sdp.contains("c=IN IP4 203.0.113.50\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 20000 RTP/AVP 8\r\n"), "{sdp}");
    assert_eq!(mp.part_body(1), ISUP_IAM);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for (side, port, peer) in [
        (Side::Private, 10000, "10.0.1.10:40000"),
        (Side::Public, 20000, "203.0.113.10:30000"),
    ] {
        let peer = peer.parse().ok();
        assert!(
            cmds.contains(&MediaCmd::Peer { side, port, peer }),
            "{cmds:?}"
        );
    }
}

#[test]
fn strip_isup_leaves_the_sdp_alone_as_a_plain_body() {
    let mut peers = media_lab_with(|cfg| cfg.strip_isup = true);
    let inv = sip_i(&invite("si2", "si2"), AUDIO_40000);
    let mut out = Vec::new();
    peers
        .engine
        .handle(0, Side::Private, addr(CARRIER), &inv, &mut out);
    let to_gw = &out.iter().find(|o| o.side == Side::Public).unwrap().data;
    let (head, body) = split_message(to_gw);
    assert_eq!(header(&head, "Content-Type"), Some("application/sdp"));
    let sdp = String::from_utf8(body).unwrap();
    assert!(sdp.starts_with("v=0\r\nc=IN IP4 203.0.113.50\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 20000 RTP/AVP 8\r\n"), "{sdp}");
}

const BAD_SDP: &str = "v=0\r\nc=IN IP4 10.10.10.256\r\nm=audio 30000 RTP/AVP 8\r\n";

/// `req` answered 200 by the gateway with [`BAD_SDP`].
fn bad_answer(req: &str) -> String {
    answer(req, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{BAD_SDP}",
            BAD_SDP.len()
        ),
    )
}

#[test]
fn an_answer_the_relay_cannot_anchor_ends_the_call_cleanly() {
    // The call's first answer: the carrier gets 502, the gateway ACK + BYE.
    let mut peers = media_lab();
    let free = peers.engine.free_port_pairs();
    let inv = invite("ba1", "ba1")
        .replace(
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
        )
        .replace("Content-Length: 55", "Content-Length: 83");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    let out = peers.send(Side::Public, GATEWAY, &bad_answer(&fwd));
    let to_carrier: Vec<&String> = out
        .iter()
        .filter(|(s, ..)| *s == Side::Private)
        .map(|(.., m)| m)
        .collect();
    assert_eq!(to_carrier.len(), 1, "{out:?}");
    assert_eq!(status(to_carrier[0]), 502);
    assert_eq!(
        header(to_carrier[0], "Warning"),
        Some("399 sbc \"SDP c= line is not IN IP4 with an IPv4 address\"")
    );
    let to_gw: Vec<&String> = out
        .iter()
        .filter(|(s, ..)| *s == Side::Public)
        .map(|(.., m)| m)
        .collect();
    assert_eq!(to_gw.len(), 2, "{out:?}");
    assert!(to_gw[0].starts_with("ACK sip:lk@203.0.113.10:5060 SIP/2.0\r\n"));
    assert_eq!(header(to_gw[0], "CSeq"), Some("1 ACK"));
    assert!(header(to_gw[0], "To").unwrap().ends_with(";tag=gw1"));
    assert!(to_gw[1].starts_with("BYE sip:lk@203.0.113.10:5060 SIP/2.0\r\n"));
    assert_eq!(header(to_gw[1], "CSeq"), Some("2 BYE"));
    assert_eq!(peers.engine.dialog_count(), 0);
    assert_eq!(peers.engine.free_port_pairs(), free);
    assert_eq!(peers.stats.calls_up.get(), 0);
    assert_eq!(peers.stats.answers_refused.get(), 1);

    // A re-INVITE's answer: both legs get a BYE, the carrier its 502 first.
    let mut peers = media_lab();
    answered_media_call(&mut peers);
    let req = reinvite_request("ba2", 2, AUDIO_40002);
    let sent = peers.send(Side::Private, CARRIER, &req);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    let out = peers.send(Side::Public, GATEWAY, &bad_answer(&fwd));
    let kinds: Vec<(Side, String)> = out
        .iter()
        .map(|(s, _, m)| (*s, m.split(' ').take(2).collect::<Vec<_>>().join(" ")))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (Side::Public, "ACK sip:lk@203.0.113.10:5060".into()),
            (Side::Public, "BYE sip:lk@203.0.113.10:5060".into()),
            (Side::Private, "SIP/2.0 502".into()),
            (Side::Private, "BYE sip:alice@10.0.1.10:5060".into()),
        ]
    );
    assert_eq!(peers.engine.dialog_count(), 0);
    assert_eq!(peers.stats.calls_up.get(), 0);
}

#[test]
fn early_media_flows_on_the_183s_answer_and_the_200_keeps_it() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    let inv = invite("em1", "em1")
        .replace(
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
        )
        .replace("Content-Length: 55", "Content-Length: 83");
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    let with_sdp = |code: u16| {
        answer(&fwd, code, "gw1", false).replace(
            "Content-Length: 0\r\n\r\n",
            &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{GW_AUDIO}",
                GW_AUDIO.len()
            ),
        )
    };
    let back = peers.send(Side::Public, GATEWAY, &with_sdp(183));
    assert!(
        back[0].2.contains("m=audio 10000 RTP/AVP 8\r\n"),
        "{}",
        back[0].2
    );
    apply(&mut peers, &mut relay);
    // Ringback from the gateway reaches the carrier before the answer.
    assert_eq!(from_gateway(&mut relay, 1), "10.0.1.10:40000".parse().ok());
    assert_eq!(
        from_carrier(&mut relay, "10.0.1.10:40000", 1),
        "203.0.113.10:30000".parse().ok()
    );
    peers.send(Side::Public, GATEWAY, &with_sdp(200));
    apply(&mut peers, &mut relay);
    assert_eq!(from_gateway(&mut relay, 2), "10.0.1.10:40000".parse().ok());
    assert_eq!(peers.stats.offers_rolled_back.get(), 0);
    assert_eq!(peers.stats.calls_up.get(), 1);
}

#[test]
fn a_glare_rolls_both_offers_back() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    answered_media_call(&mut peers);
    let fwd_invite = {
        // The gateway's leg as the gateway sees it, from the call's INVITE.
        let mut p = media_lab();
        let inv = invite("m1", "m1")
            .replace(
                "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
                "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8\r\n",
            )
            .replace("Content-Length: 55", "Content-Length: 83");
        p.send(Side::Private, CARRIER, &inv)[1].2.clone()
    };
    apply(&mut peers, &mut relay);
    // Both send a re-INVITE at once (RFC 3261 14.1): each side answers the other 491.
    let from_carrier_req = reinvite_request("g1", 2, AUDIO_40002);
    let sent = peers.send(Side::Private, CARRIER, &from_carrier_req);
    let to_gw = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    let gw_sdp = "v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30002 RTP/AVP 8\r\n";
    let from_gw_req = in_dialog(
        "INVITE",
        "sip:sbc@203.0.113.50:5080",
        header(&fwd_invite, "Call-ID").unwrap(),
        &format!("{};tag=gw1", header(&fwd_invite, "To").unwrap()),
        header(&fwd_invite, "From").unwrap(),
        "g2",
        1,
    )
    .replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Contact: <sip:lk@203.0.113.10:5060>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{gw_sdp}",
            gw_sdp.len()
        ),
    );
    let sent = peers.send(Side::Public, GATEWAY, &from_gw_req);
    let to_carrier = sent
        .iter()
        .find(|(s, ..)| *s == Side::Private)
        .unwrap()
        .2
        .clone();
    assert!(to_carrier.starts_with("INVITE "), "{to_carrier}");
    peers.send(Side::Public, GATEWAY, &answer(&to_gw, 491, "gw1", false));
    let r491 = answer(&to_carrier, 491, "ca1", false).replace(
        &format!("To: {};tag=ca1", header(&to_carrier, "To").unwrap()),
        &format!("To: {}", header(&to_carrier, "To").unwrap()),
    );
    peers.send(Side::Private, CARRIER, &r491);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    assert!(
        !cmds.iter().any(|c| matches!(c, MediaCmd::Peer { .. })),
        "{cmds:?}"
    );
    assert_eq!(peers.stats.offers_rolled_back.get(), 2);
    assert_eq!(
        from_carrier(&mut relay, "10.0.1.10:40000", 2),
        "203.0.113.10:30000".parse().ok()
    );
    assert_eq!(from_gateway(&mut relay, 2), "10.0.1.10:40000".parse().ok());
}

#[test]
fn telephone_events_take_the_payload_type_each_side_negotiated() {
    let mut peers = media_lab();
    let mut relay = RelayTable::new(10000, 20100);
    let offer = "v=0\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n";
    let inv = invite("pt1", "pt1")
        .replace(
            "v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n",
            offer,
        )
        .replace(
            "Content-Length: 55",
            &format!("Content-Length: {}", offer.len()),
        );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent[1].2.clone();
    assert!(fwd.contains("a=rtpmap:101 telephone-event/8000"), "{fwd}");
    // The gateway answers with its own number for the events.
    let gw_sdp = "v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 RTP/AVP 8 96\r\n\
a=rtpmap:96 telephone-event/8000\r\n";
    let ok = answer(&fwd, 200, "gw1", false).replace(
        "Content-Length: 0\r\n\r\n",
        &format!(
            "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{gw_sdp}",
            gw_sdp.len()
        ),
    );
    peers.send(Side::Public, GATEWAY, &ok);
    apply(&mut peers, &mut relay);
    let event = |pt: u8| {
        let mut p = rtp_packet(1);
        p[1] = pt;
        p.truncate(16);
        p
    };
    let mut p = event(101);
    let v = relay.verdict(
        (Side::Private, 0, 10000),
        "10.0.1.10:40000".parse().unwrap(),
        &mut p,
        0,
    );
    assert!(matches!(v, Verdict::Relay { .. }), "{v:?}");
    assert_eq!(
        p[1],
        0x80 | 96,
        "the carrier's event leaves with the gateway's number"
    );
    let mut p = event(0x80 | 96);
    let v = relay.verdict(
        (Side::Public, 0, 20000),
        "203.0.113.10:30000".parse().unwrap(),
        &mut p,
        0,
    );
    assert!(matches!(v, Verdict::Relay { .. }), "{v:?}");
    assert_eq!(
        p[1],
        0x80 | 101,
        "the gateway's event reaches the carrier as its 101"
    );
}

#[test]
fn past_max_sessions_a_new_call_gets_503_until_a_line_is_free() {
    let mut peers = media_lab_with(|c| {
        if let Some(m) = c.media.as_mut() {
            m.max_sessions = Some(1);
        }
    });
    let fwd = answered_media_call(&mut peers);
    let offer = |call: &str| {
        invite(call, call)
            .replace(
                "c=IN IP4 10.0.1.10\r\nt=0 0\r\n",
                "c=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40002 RTP/AVP 8\r\n",
            )
            .replace("Content-Length: 55", "Content-Length: 83")
    };
    // One line anchored: the next call is refused before it is routed.
    let sent = peers.send(Side::Private, CARRIER, &offer("m2"));
    let refused: Vec<_> = sent.iter().filter(|(s, ..)| *s == Side::Public).collect();
    assert!(refused.is_empty(), "nothing to the gateway: {sent:?}");
    let resp = &sent.last().unwrap().2;
    assert_eq!(status(resp), 503, "{resp}");
    assert!(
        resp.starts_with("SIP/2.0 503 Service Unavailable - media ports exhausted\r\n"),
        "{resp}"
    );
    assert_eq!(header(resp, "Retry-After"), Some("1"));
    assert_eq!(peers.stats.calls_no_media_ports.get(), 1);
    assert_eq!(peers.stats.calls_up.get(), 1, "the first call goes on");
    // The first call ends: its line is free and the next call is routed.
    let bye = gateway_bye(&fwd, "mb");
    let b = peers.send(Side::Public, GATEWAY, &bye)[0].2.clone();
    let bye_ok = answer(&b, 200, "x", false).replace(
        &format!("To: {};tag=x", header(&b, "To").unwrap()),
        &format!("To: {}", header(&b, "To").unwrap()),
    );
    peers.send(Side::Private, "10.0.1.1:5060", &bye_ok);
    let sent = peers.send(Side::Private, CARRIER, &offer("m3"));
    assert!(
        sent.iter()
            .any(|(s, _, m)| *s == Side::Public && m.starts_with("INVITE ")),
        "{sent:?}"
    );
    assert_eq!(peers.stats.calls_no_media_ports.get(), 1);
}
