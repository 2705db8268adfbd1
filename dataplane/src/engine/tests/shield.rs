//! The LiveKit shield (a gateway's `livekit` profile): session timers kept
//! at the carrier's edge (RFC 4028).

use super::*;
use crate::engine::config::MediaSettings;
use crate::media::{RelayTable, Verdict};
use crate::routing::Profile;

/// An engine relaying media whose one gateway (.10) has the `livekit` profile.
fn shielded() -> Peers {
    shielded_with(|_, _| {})
}

/// [`shielded`] with its provisioning and settings changed by `change`.
fn shielded_with(
    change: impl FnOnce(&mut crate::routing::RouteSnapshot, &mut EngineConfig),
) -> Peers {
    let mut snap = snapshot();
    snap.gateways[0].profile = Profile::Livekit;
    let stats = Arc::new(EngineStats::default());
    let mut cfg = EngineConfig::new(
        "10.0.0.100:5060".parse().unwrap(),
        "203.0.113.50:5080".parse().unwrap(),
    );
    cfg.media = Some(MediaSettings {
        ip: BySide::new(Ipv4Addr::new(10, 0, 0, 100), Ipv4Addr::new(203, 0, 113, 50)),
        ports: BySide::new((10000, 10100), (20000, 20100)),
        timeout: 60_000,
        hold_timeout: None,
        max_sessions: None,
    });
    change(&mut snap, &mut cfg);
    Peers {
        engine: SipEngine::new(cfg, Arc::new(snap), stats.clone()),
        stats,
        now: 0,
        out: Vec::new(),
    }
}

const CARRIER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 101\r\n";
const GW_SDP: &str = "v=0\r\no=lk 7 7 IN IP4 203.0.113.10\r\nc=IN IP4 203.0.113.10\r\nt=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";

fn with_body(msg: &str, sdp: &str) -> String {
    let head = msg.split("Content-Length:").next().unwrap();
    let head = head.replace("Content-Type: application/sdp\r\n", "");
    format!(
        "{head}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    )
}

/// An inbound call from a carrier that uses session timers, answered by
/// the gateway; returns the INVITE the gateway got and the 200 the carrier got.
fn timed_call(peers: &mut Peers, se: &str) -> (String, String) {
    let inv = invite("st1", "st1").replace(
        "Contact: <sip:alice@10.0.1.10:5060>\r\n",
        &format!("Contact: <sip:alice@10.0.1.10:5060>\r\nSupported: timer, replaces\r\nSession-Expires: {se}\r\nMin-SE: 90\r\n"),
    );
    let inv = with_body(&inv, CARRIER_SDP);
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    let ok = with_body(&answer(&fwd, 200, "gw1", false), GW_SDP);
    let back = peers.send(Side::Public, GATEWAY, &ok);
    (fwd, back[0].2.clone())
}

/// A request from the carrier in the call of [`timed_call`].
fn from_carrier(method: &str, branch: &str, cseq: u32, sdp: Option<&str>) -> String {
    let req = in_dialog(
        method,
        "sip:sbc@10.0.0.100:5060",
        "st1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
        branch,
        cseq,
    )
    .replace(
        "Content-Length: 0",
        "Contact: <sip:alice@10.0.1.10:5060>\r\nSession-Expires: 1800;refresher=uac\r\nContent-Length: 0",
    );
    match sdp {
        Some(sdp) => with_body(&req, sdp),
        None => req,
    }
}

#[test]
fn the_gateway_never_sees_session_timers_and_the_carrier_gets_its_own() {
    let mut peers = shielded();
    let (fwd, ok) = timed_call(&mut peers, "1800;refresher=uac");
    assert_eq!(header(&fwd, "Session-Expires"), None, "{fwd}");
    assert_eq!(header(&fwd, "Min-SE"), None, "{fwd}");
    assert_eq!(header(&fwd, "Supported"), Some("replaces"), "{fwd}");
    assert_eq!(status(&ok), 200);
    assert_eq!(header(&ok, "Require"), Some("timer"), "{ok}");
    assert_eq!(
        header(&ok, "Session-Expires"),
        Some("1800;refresher=uac"),
        "{ok}"
    );
    // A transparent gateway gets the headers as they came.
    let mut peers = Peers::new();
    let inv = invite("st2", "st2").replace(
        "Contact: <sip:alice@10.0.1.10:5060>\r\n",
        "Contact: <sip:alice@10.0.1.10:5060>\r\nSupported: timer\r\nSession-Expires: 1800\r\n",
    );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    assert_eq!(header(&sent[1].2, "Session-Expires"), Some("1800"));
    assert_eq!(header(&sent[1].2, "Supported"), Some("timer"));
}

#[test]
fn refreshes_that_change_nothing_are_answered_at_the_edge() {
    let mut peers = shielded();
    let (_, ok) = timed_call(&mut peers, "1800;refresher=uac");
    let our_sdp = ok.split("\r\n\r\n").nth(1).unwrap().to_string();
    // A re-INVITE with the same SDP but a new o= version.
    let same = CARRIER_SDP.replace("o=- 1 1", "o=- 1 2");
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("INVITE", "r1", 2, Some(&same)),
    );
    assert_eq!(
        out.len(),
        1,
        "answered here, nothing to the gateway: {out:?}"
    );
    let (side, dst, r) = &out[0];
    assert_eq!((*side, *dst), (Side::Private, addr(CARRIER)));
    assert_eq!(status(r), 200);
    assert_eq!(header(r, "CSeq"), Some("2 INVITE"));
    assert_eq!(header(r, "Contact"), Some("<sip:sbc@10.0.0.100:5060>"));
    assert_eq!(header(r, "Session-Expires"), Some("1800;refresher=uac"));
    assert!(r.ends_with(&our_sdp), "the SDP we gave before:\n{r}");
    // Its retransmission gets the same 200; its ACK goes no further.
    let again = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("INVITE", "r1", 2, Some(&same)),
    );
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, *r);
    let ack = from_carrier("ACK", "r1a", 2, None);
    assert!(peers.send(Side::Private, CARRIER, &ack).is_empty());
    assert!(
        peers.advance(5_000).is_empty(),
        "no 2xx resent after the ACK"
    );
    // A bodiless UPDATE: 200 without a body.
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("UPDATE", "u1", 3, None),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status(&out[0].2), 200);
    assert_eq!(header(&out[0].2, "Content-Length"), Some("0"));
    assert_eq!(peers.stats.refreshes_answered.get(), 2);
    // A re-INVITE that moves the media still reaches the gateway.
    let moved = CARRIER_SDP.replace("40000", "40002");
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("INVITE", "r2", 4, Some(&moved)),
    );
    let to_gw = out.iter().find(|(s, ..)| *s == Side::Public).unwrap();
    assert!(
        to_gw.2.starts_with("INVITE sip:lk@203.0.113.10:5060"),
        "{}",
        to_gw.2
    );
    assert_eq!(header(&to_gw.2, "Session-Expires"), None);
}

#[test]
fn a_session_nobody_refreshes_is_ended_both_ways() {
    let mut peers = shielded();
    timed_call(&mut peers, "120;refresher=uac");
    // Refreshed at 60 s: the session restarts.
    peers.advance(60_000);
    peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("UPDATE", "u1", 2, None),
    );
    // 120 - min(32, 40) = 88 s after the refresh, the BYEs go.
    assert!(peers.advance(87_000).is_empty());
    let byes = peers.advance(1_000);
    assert_eq!(byes.len(), 2, "{byes:?}");
    assert!(byes.iter().all(|(_, _, m)| m.starts_with("BYE ")
        && header(m, "Reason") == Some("SIP;cause=408;text=\"session expired\"")));
    assert_eq!(peers.stats.sessions_expired.get(), 1);
    assert_eq!(peers.engine.dialog_count(), 0);
}

#[test]
fn too_short_an_interval_is_refused_with_422() {
    let mut peers = shielded();
    let inv = invite("st3", "st3").replace(
        "Contact: <sip:alice@10.0.1.10:5060>\r\n",
        "Contact: <sip:alice@10.0.1.10:5060>\r\nSupported: timer\r\nSession-Expires: 60\r\n",
    );
    let out = peers.send(Side::Private, CARRIER, &inv);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(status(&out[0].2), 422);
    assert_eq!(header(&out[0].2, "Min-SE"), Some("90"));
}

#[test]
fn on_an_outbound_call_the_carrier_refreshes_or_we_do_with_update() {
    let mut peers = shielded();
    let inv = invite("so1", "so1")
        .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
        .replace("10.0.0.100:5060", "203.0.113.50:5080");
    let sent = peers.send(Side::Public, GATEWAY, &inv);
    let to_carrier = sent
        .iter()
        .find(|(s, ..)| *s == Side::Private)
        .unwrap()
        .2
        .clone();
    assert!(to_carrier.contains("Supported: timer\r\n"), "{to_carrier}");
    assert_eq!(
        header(&to_carrier, "Session-Expires"),
        Some("1800;refresher=uas")
    );
    // The carrier makes us the refresher (we were its UAC).
    let ok = answer(&to_carrier, 200, "ca9", true).replace(
        "Content-Length:",
        "Require: timer\r\nSession-Expires: 1800;refresher=uac\r\nAllow: INVITE, ACK, BYE, UPDATE\r\nContent-Length:",
    );
    let back = peers.send(Side::Private, CARRIER, &ok);
    assert_eq!(header(&back[0].2, "Session-Expires"), None, "{}", back[0].2);
    assert_eq!(header(&back[0].2, "Require"), None, "{}", back[0].2);
    assert!(peers.advance(899_000).is_empty());
    let refresh = peers.advance(1_000);
    assert_eq!(refresh.len(), 1, "{refresh:?}");
    let (side, _, update) = &refresh[0];
    assert_eq!(*side, Side::Private);
    assert!(
        update.starts_with("UPDATE sip:lk@203.0.113.10:5060") || update.starts_with("UPDATE "),
        "{update}"
    );
    assert_eq!(
        header(update, "Session-Expires"),
        Some("1800;refresher=uac")
    );
    assert_eq!(header(update, "CSeq"), Some("2 UPDATE"));
    assert_eq!(header(update, "Contact"), Some("<sip:sbc@10.0.0.100:5060>"));
    // LiveKit hangs up with its CSeq 2: the carrier gets it above our UPDATE's,
    // and LiveKit gets the answer with its own CSeq back.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@203.0.113.50:5080",
        "so1@10.0.1.10",
        "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
        "<sip:+15551234@203.0.113.50:5080>;tag=ca9",
        "byeg",
        2,
    );
    let out = peers.send(Side::Public, GATEWAY, &bye);
    let to_carrier = &out.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert!(to_carrier.starts_with("BYE "), "{to_carrier}");
    assert_eq!(header(to_carrier, "CSeq"), Some("3 BYE"));
    let ok = answer(to_carrier, 200, "x", false).replace(
        &format!("To: {};tag=x", header(to_carrier, "To").unwrap()),
        &format!("To: {}", header(to_carrier, "To").unwrap()),
    );
    let back = peers.send(Side::Private, CARRIER, &ok);
    assert_eq!(header(&back[0].2, "CSeq"), Some("2 BYE"), "{}", back[0].2);
}

fn relay_to(relay: &mut RelayTable, side: Side, port: u16, src: &str) -> Option<SocketAddrV4> {
    let mut pkt = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
    pkt.extend([0xff; 160]);
    match relay.verdict((side, 0, port), src.parse().unwrap(), &mut pkt, 0) {
        Verdict::Relay { to, .. } => Some(to),
        Verdict::Drop(_) => None,
    }
}

#[test]
fn a_hold_answered_sendrecv_stays_a_hold_toward_the_carrier() {
    let mut peers = shielded();
    let mut relay = RelayTable::new(10000, 20100);
    timed_call(&mut peers, "1800");
    let apply = |peers: &mut Peers, relay: &mut RelayTable| {
        let mut cmds = Vec::new();
        peers.engine.take_media_commands(&mut cmds);
        for c in cmds {
            relay.apply(c, |_| {});
        }
    };
    apply(&mut peers, &mut relay);
    let gw = "203.0.113.10:30000".parse().ok();
    let carrier = "10.0.1.10:40000".parse().ok();
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        carrier
    );
    // The carrier holds with music (sendonly); the gateway answers sendrecv.
    let hold = format!("{CARRIER_SDP}a=sendonly\r\n");
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("INVITE", "h1", 2, Some(&hold)),
    );
    let to_gw = out
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert!(to_gw.contains("a=sendonly\r\n"), "{to_gw}");
    let ok = with_body(
        &answer(&to_gw, 200, "gw1", false),
        &format!("{GW_SDP}a=sendrecv\r\n"),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let to_carrier = &back[0].2;
    assert!(to_carrier.contains("a=recvonly\r\n"), "{to_carrier}");
    assert!(!to_carrier.contains("a=sendrecv"), "{to_carrier}");
    apply(&mut peers, &mut relay);
    // Music on hold reaches the gateway; nothing goes to the holder.
    assert_eq!(
        relay_to(&mut relay, Side::Private, 10000, "10.0.1.10:40000"),
        gw
    );
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        None
    );
    // Resumed: as answered, audio both ways.
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("INVITE", "h2", 3, Some(CARRIER_SDP)),
    );
    let to_gw = out
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    let ok = with_body(
        &answer(&to_gw, 200, "gw1", false),
        &format!("{GW_SDP}a=sendrecv\r\n"),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert!(back[0].2.contains("a=sendrecv\r\n"), "{}", back[0].2);
    apply(&mut peers, &mut relay);
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        carrier
    );
}

#[test]
fn a_transfer_to_the_sbc_itself_is_refused_with_403() {
    let mut peers = shielded();
    let (fwd, _) = timed_call(&mut peers, "1800");
    let refer = |target: &str| {
        in_dialog(
            "REFER",
            "sip:sbc@203.0.113.50:5080",
            header(&fwd, "Call-ID").unwrap(),
            &format!("{};tag=gw1", header(&fwd, "To").unwrap()),
            header(&fwd, "From").unwrap(),
            "rf",
            2,
        )
        .replace(
            "Content-Length: 0",
            &format!("Refer-To: <{target}>\r\nContent-Length: 0"),
        )
    };
    let out = peers.send(
        Side::Public,
        GATEWAY,
        &refer("sip:+15550001@203.0.113.50:5080"),
    );
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (Side::Public, 403));
    // Anywhere else: passed on to the carrier.
    let out = peers.send(
        Side::Public,
        GATEWAY,
        &refer("sip:+15550001@carrier.example").replace("z9hG4bKrf", "z9hG4bKrg"),
    );
    assert!(out[0].2.starts_with("REFER "), "{out:?}");
}

#[test]
fn a_delayed_offer_becomes_our_offer_to_the_gateway() {
    let mut peers = shielded();
    let mut relay = RelayTable::new(10000, 20100);
    let sent = peers.send(Side::Private, CARRIER, &bodiless_invite("do1"));
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert_eq!(
        header(&fwd, "Content-Type"),
        Some("application/sdp"),
        "{fwd}"
    );
    assert!(fwd.contains("c=IN IP4 203.0.113.50\r\n"), "{fwd}");
    assert!(fwd.contains("m=audio 20000 RTP/AVP 0 8 9 101\r\n"), "{fwd}");
    assert!(
        fwd.contains("a=rtpmap:101 telephone-event/8000\r\n"),
        "{fwd}"
    );
    let body_len = fwd.split("\r\n\r\n").nth(1).unwrap().len();
    assert_eq!(
        header(&fwd, "Content-Length"),
        Some(body_len.to_string().as_str())
    );
    // LiveKit answers; the carrier gets that answer as our offer in the 200.
    let ok = with_body(&answer(&fwd, 200, "gw1", false), GW_SDP);
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let to_carrier = &back[0].2;
    assert!(
        to_carrier.contains("c=IN IP4 10.0.0.100\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 101\r\n"),
        "{to_carrier}"
    );
    // The carrier answers in the ACK, which reaches the gateway without it.
    let ack = with_body(
        &in_dialog(
            "ACK",
            "sip:sbc@10.0.0.100:5060",
            "do1@10.0.1.10",
            "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
            "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
            "do1a",
            1,
        ),
        CARRIER_SDP,
    );
    let out = peers.send(Side::Private, CARRIER, &ack);
    assert!(
        out[0].2.starts_with("ACK sip:lk@203.0.113.10:5060"),
        "{out:?}"
    );
    assert_eq!(header(&out[0].2, "Content-Length"), Some("0"));
    assert_eq!(header(&out[0].2, "Content-Type"), None);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds {
        relay.apply(c, |_| {});
    }
    assert_eq!(
        relay_to(&mut relay, Side::Private, 10000, "10.0.1.10:40000"),
        "203.0.113.10:30000".parse().ok()
    );
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        "10.0.1.10:40000".parse().ok()
    );
}

/// The INVITE of [`invite`] without its SDP: a delayed offer.
fn bodiless_invite(call: &str) -> String {
    invite(call, call)
        .replace("Content-Type: application/sdp\r\n", "")
        .split("Content-Length:")
        .next()
        .unwrap()
        .to_string()
        + "Content-Length: 0\r\n\r\n"
}

#[test]
fn our_offer_lists_the_tenants_codecs_else_the_configured_ones() {
    use crate::media::Codec;
    let tenant = |codecs: Option<Vec<Codec>>| crate::routing::Tenant {
        tenant_id: "acme".into(),
        source_ip: Ipv4Addr::new(10, 0, 1, 10),
        gateway_group: 1,
        max_cps: 100,
        max_concurrent: 100,
        numbers: None,
        offer_codecs: codecs,
    };
    let offered = |peers: &mut Peers, call: &str| {
        let sent = peers.send(Side::Private, CARRIER, &bodiless_invite(call));
        let fwd = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
        fwd.lines()
            .filter(|l| l.starts_with("m=") || l.starts_with("a=rtpmap"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let mut peers = shielded_with(|snap, _| {
        snap.tenants = vec![tenant(Some(vec![
            Codec::G722,
            Codec::Pcma,
            Codec::TelephoneEvent,
        ]))];
    });
    assert_eq!(
        offered(&mut peers, "tc1"),
        "m=audio 20000 RTP/AVP 9 8 101|a=rtpmap:9 G722/8000|a=rtpmap:8 PCMA/8000|\
a=rtpmap:101 telephone-event/8000"
    );
    let mut peers = shielded_with(|snap, cfg| {
        snap.tenants = vec![tenant(None)];
        cfg.offer_codecs = vec![Codec::Pcmu];
    });
    assert_eq!(
        offered(&mut peers, "tc2"),
        "m=audio 20000 RTP/AVP 0|a=rtpmap:0 PCMU/8000"
    );
}

#[test]
fn a_carrier_requiring_100rel_gets_reliable_provisionals_from_us() {
    let mut peers = shielded();
    let inv = invite("pr1", "pr1").replace(
        "Contact: <sip:alice@10.0.1.10:5060>\r\n",
        "Contact: <sip:alice@10.0.1.10:5060>\r\nRequire: 100rel\r\nSupported: 100rel, replaces\r\n",
    );
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert_eq!(header(&fwd, "Require"), None, "{fwd}");
    assert_eq!(header(&fwd, "Supported"), Some("replaces"), "{fwd}");
    // LiveKit rings: the carrier gets it reliably, resent until its PRACK.
    let ringing = peers.send(Side::Public, GATEWAY, &answer(&fwd, 180, "gw1", false));
    let r180 = ringing[0].2.clone();
    assert_eq!(status(&r180), 180);
    assert_eq!(header(&r180, "Require"), Some("100rel"));
    assert_eq!(header(&r180, "RSeq"), Some("1"));
    let again = peers.advance(500);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(again[0].2, r180);
    // A 183 meanwhile waits for that PRACK.
    let progress = with_body(&answer(&fwd, 183, "gw1", false), GW_SDP);
    assert!(peers.send(Side::Public, GATEWAY, &progress).is_empty());
    let prack = |branch: &str, rseq: u32| {
        from_carrier("PRACK", branch, 2, None)
            .replace(
                "Content-Length: 0",
                &format!("RAck: {rseq} 1 INVITE\r\nContent-Length: 0"),
            )
            .replace("st1@10.0.1.10", "pr1@10.0.1.10")
    };
    let out = peers.send(Side::Private, CARRIER, &prack("p0", 7));
    assert_eq!(status(&out[0].2), 481, "{out:?}");
    let out = peers.send(Side::Private, CARRIER, &prack("p1", 1));
    assert_eq!(out.len(), 2, "the queued 183 and the PRACK's 200: {out:?}");
    assert!(
        out.iter().all(|(s, ..)| *s == Side::Private),
        "LiveKit never sees PRACK"
    );
    // That PRACK again (our 200 lost): 200 again, nothing resent.
    let again = peers.send(Side::Private, CARRIER, &prack("p1", 1));
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(status(&again[0].2), 200);
    let r183 = &out[0].2;
    assert_eq!(status(r183), 183);
    assert_eq!(header(r183, "RSeq"), Some("2"));
    assert!(r183.contains("m=audio 10000 "), "{r183}");
    assert_eq!(status(&out[1].2), 200);
    assert_eq!(header(&out[1].2, "CSeq"), Some("2 PRACK"));
    // The 200 to the INVITE ends the resending of the 183.
    let ok = with_body(&answer(&fwd, 200, "gw1", false), GW_SDP);
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert_eq!(status(&back[0].2), 200);
    assert!(peers.advance(10_000).is_empty(), "nothing resent");
    // Its PRACK, late (after the 200), still gets 200 (RFC 3262 3: the
    // provisional was sent and is acknowledged now); one for an RSeq never
    // sent gets 481.
    let out = peers.send(Side::Private, CARRIER, &prack("p2", 2));
    assert_eq!((out.len(), status(&out[0].2)), (1, 200), "{out:?}");
    let out = peers.send(Side::Private, CARRIER, &prack("p3", 3));
    assert_eq!(status(&out[0].2), 481, "{out:?}");
}

#[test]
fn an_update_that_moves_media_reaches_the_gateway_as_a_reinvite() {
    let mut peers = shielded();
    let mut relay = RelayTable::new(10000, 20100);
    timed_call(&mut peers, "1800");
    let moved = CARRIER_SDP.replace("40000", "40002");
    let out = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("UPDATE", "up1", 2, Some(&moved)),
    );
    let to_gw = out
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    assert!(
        to_gw.starts_with("INVITE sip:lk@203.0.113.10:5060 SIP/2.0\r\n"),
        "{to_gw}"
    );
    assert_eq!(header(&to_gw, "CSeq"), Some("2 INVITE"));
    assert!(to_gw.contains("m=audio 20000 RTP/AVP 0 101\r\n"), "{to_gw}");
    let ok = with_body(&answer(&to_gw, 200, "gw1", false), GW_SDP);
    let out = peers.send(Side::Public, GATEWAY, &ok);
    let ack = out.iter().find(|(s, ..)| *s == Side::Public).unwrap();
    assert!(ack.2.starts_with("ACK sip:lk@203.0.113.10:5060"), "{out:?}");
    assert_eq!(header(&ack.2, "CSeq"), Some("2 ACK"));
    let to_carrier = out.iter().find(|(s, ..)| *s == Side::Private).unwrap();
    assert_eq!(status(&to_carrier.2), 200);
    assert_eq!(header(&to_carrier.2, "CSeq"), Some("2 UPDATE"));
    assert!(
        to_carrier.2.contains("m=audio 10000 RTP/AVP 0 101\r\n"),
        "{}",
        to_carrier.2
    );
    // The UPDATE's retransmission gets the same 200; the gateway's 2xx copy another ACK.
    let again = peers.send(
        Side::Private,
        CARRIER,
        &from_carrier("UPDATE", "up1", 2, Some(&moved)),
    );
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].2, to_carrier.2);
    let acks = peers.send(Side::Public, GATEWAY, &ok);
    assert_eq!(acks.len(), 1);
    assert!(acks[0].2.starts_with("ACK "));
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds {
        relay.apply(c, |_| {});
    }
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        "10.0.1.10:40002".parse().ok()
    );
}

#[test]
fn an_early_update_is_answered_at_the_edge() {
    let mut peers = shielded();
    let inv = with_body(&invite("eu1", "eu1"), CARRIER_SDP);
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    peers.send(Side::Public, GATEWAY, &answer(&fwd, 180, "gw1", false));
    let update = from_carrier("UPDATE", "eu2", 2, None).replace("st1@10.0.1.10", "eu1@10.0.1.10");
    let out = peers.send(Side::Private, CARRIER, &update);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (Side::Private, 200));
    // One that moves the carrier's media before the gateway answered the
    // INVITE's offer: 500 with Retry-After (RFC 3311 5.2), nothing forwarded.
    let moved = CARRIER_SDP
        .replace("40000", "40002")
        .replace("o=- 1 1", "o=- 1 2");
    let update =
        from_carrier("UPDATE", "eu3", 3, Some(&moved)).replace("st1@10.0.1.10", "eu1@10.0.1.10");
    let out = peers.send(Side::Private, CARRIER, &update);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (Side::Private, 500));
    assert_eq!(header(&out[0].2, "Retry-After"), Some("1"));
    // After the gateway's 183 with its answer: 200 with the SDP the carrier
    // has from us, and the relay follows the carrier's move.
    let mut relay = RelayTable::new(10000, 20100);
    let early = with_body(&answer(&fwd, 183, "gw1", false), GW_SDP);
    peers.send(Side::Public, GATEWAY, &early);
    let update =
        from_carrier("UPDATE", "eu4", 4, Some(&moved)).replace("st1@10.0.1.10", "eu1@10.0.1.10");
    let out = peers.send(Side::Private, CARRIER, &update);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (Side::Private, 200));
    assert!(
        out[0]
            .2
            .contains("c=IN IP4 10.0.0.100\r\nt=0 0\r\nm=audio 10000 RTP/AVP 0 101\r\n"),
        "{}",
        out[0].2
    );
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds {
        relay.apply(c, |_| {});
    }
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000"),
        "10.0.1.10:40002".parse().ok()
    );
}

#[test]
fn info_dtmf_reaches_the_gateway_as_rfc4733_and_other_info_stays_here() {
    use crate::media::{MediaCmd, TelephoneEvent};
    let mut peers = shielded();
    let mut relay = RelayTable::new(10000, 20100);
    timed_call(&mut peers, "1800");
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds.drain(..) {
        relay.apply(c, |_| {});
    }
    relay_to(&mut relay, Side::Public, 20000, "203.0.113.10:30000");
    let info = |branch: &str, cseq: u32, ty: &str, body: &str| {
        from_carrier("INFO", branch, cseq, None).replace(
            "Content-Length: 0\r\n",
            &format!("Content-Type: {ty}\r\nContent-Length: {}\r\n", body.len()),
        ) + body
    };
    let out = peers.send(
        Side::Private,
        CARRIER,
        &info(
            "i1",
            2,
            "application/dtmf-relay",
            "Signal=#\r\nDuration=160\r\n",
        ),
    );
    assert_eq!(out.len(), 1, "nothing to the gateway: {out:?}");
    assert_eq!((out[0].0, status(&out[0].2)), (Side::Private, 200));
    peers.send(
        Side::Private,
        CARRIER,
        &info("i2", 3, "application/dtmf", "7"),
    );
    peers.engine.take_media_commands(&mut cmds);
    let events: Vec<TelephoneEvent> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCmd::Dtmf { side, port, event } => {
                assert_eq!((*side, *port), (Side::Public, 20000));
                Some(*event)
            }
            _ => None,
        })
        .collect();
    assert_eq!(events.len(), 2, "{cmds:?}");
    assert_eq!(
        (events[0].pt, events[0].event, events[0].duration),
        (101, 11, 1280)
    );
    assert_eq!(events[1].event, 7);
    assert_eq!(events[1].ssrc, events[0].ssrc);
    assert_eq!(events[1].seq, events[0].seq.wrapping_add(4));
    assert!(events[1].timestamp > events[0].timestamp);
    // Where the relay sends them: the gateway's media address.
    assert_eq!(
        relay.sends_to(Side::Public, 20000),
        Some((0, "203.0.113.10:30000".parse().unwrap()))
    );
    assert_eq!(peers.stats.info_dtmf.get(), 2);
    // Other INFO: answered here.
    let out = peers.send(
        Side::Private,
        CARRIER,
        &info("i3", 4, "application/x-foo", "x"),
    );
    assert_eq!(status(&out[0].2), 415);
    assert_eq!(
        header(&out[0].2, "Accept"),
        Some("application/dtmf-relay, application/dtmf")
    );
    let out = peers.send(Side::Private, CARRIER, &from_carrier("INFO", "i4", 5, None));
    assert_eq!((out.len(), status(&out[0].2)), (1, 200));
}

/// The whole carrier: delayed offer, 100rel, session timers with
/// UPDATE refreshes, INFO DTMF; the gateway understands none of them. The
/// call lasts 15 minutes of engine time.
#[test]
fn a_carrier_using_everything_completes_a_15_minute_call_through_livekit() {
    use crate::media::MediaCmd;
    let mut peers = shielded();
    let inv = invite("all1", "all1")
        .replace("Content-Type: application/sdp\r\n", "")
        .replace(
            "Contact: <sip:alice@10.0.1.10:5060>\r\n",
            "Contact: <sip:alice@10.0.1.10:5060>\r\nSupported: timer, 100rel\r\nRequire: 100rel\r\n\
Session-Expires: 90;refresher=uac\r\nMin-SE: 90\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE, INFO, PRACK\r\n",
        )
        .split("Content-Length:")
        .next()
        .unwrap()
        .to_string()
        + "Content-Length: 0\r\n\r\n";
    let sent = peers.send(Side::Private, CARRIER, &inv);
    let fwd = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
        .clone();
    let mut gateway_saw = vec![fwd.clone()];
    // LiveKit: 180, then 200 with its answer to our offer.
    let r180 = peers.send(Side::Public, GATEWAY, &answer(&fwd, 180, "gw1", false));
    assert_eq!(header(&r180[0].2, "RSeq"), Some("1"));
    let prack = from_carrier("PRACK", "a1p", 2, None)
        .replace("st1@10.0.1.10", "all1@10.0.1.10")
        .replace("Content-Length: 0", "RAck: 1 1 INVITE\r\nContent-Length: 0");
    let out = peers.send(Side::Private, CARRIER, &prack);
    assert_eq!(status(&out[0].2), 200);
    let ok = peers.send(
        Side::Public,
        GATEWAY,
        &with_body(&answer(&fwd, 200, "gw1", false), GW_SDP),
    );
    assert_eq!(
        header(&ok[0].2, "Session-Expires"),
        Some("90;refresher=uac")
    );
    let ack = with_body(
        &from_carrier("ACK", "a1a", 1, None).replace("st1@10.0.1.10", "all1@10.0.1.10"),
        CARRIER_SDP,
    );
    gateway_saw.extend(
        peers
            .send(Side::Private, CARRIER, &ack)
            .into_iter()
            .map(|(_, _, m)| m),
    );
    // 15 minutes: an UPDATE refresh every 45 s (half the interval), a digit
    // every other refresh.
    let mut cseq = 3;
    let mut digits = 0;
    for step in 0..20 {
        let out = peers.advance(45_000);
        assert!(out.is_empty(), "at {} s: {out:?}", (step + 1) * 45);
        let mut reqs = vec![from_carrier("UPDATE", &format!("u{cseq}"), cseq, None)];
        cseq += 1;
        if step % 2 == 1 {
            digits += 1;
            reqs.push(
                from_carrier("INFO", &format!("i{cseq}"), cseq, None).replace(
                    "Content-Length: 0\r\n",
                    "Content-Type: application/dtmf-relay\r\nContent-Length: 24\r\n",
                ) + "Signal=5\r\nDuration=160\r\n",
            );
            cseq += 1;
        }
        for req in reqs {
            let req = req.replace("st1@10.0.1.10", "all1@10.0.1.10");
            let out = peers.send(Side::Private, CARRIER, &req);
            assert_eq!(out.len(), 1, "{out:?}");
            assert_eq!((out[0].0, status(&out[0].2)), (Side::Private, 200));
        }
    }
    assert_eq!(peers.stats.calls_up.get(), 1, "still up after 15 minutes");
    assert_eq!(peers.stats.sessions_expired.get(), 0);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    let injected = cmds
        .iter()
        .filter(|c| matches!(c, MediaCmd::Dtmf { .. }))
        .count();
    assert_eq!(injected, digits);
    // The gateway saw an INVITE with an offer and an ACK, nothing else.
    assert_eq!(gateway_saw.len(), 2, "{gateway_saw:?}");
    assert!(gateway_saw[0].contains("m=audio 20000 RTP/AVP 0 8 9 101\r\n"));
    assert!(gateway_saw[1].starts_with("ACK "));
    for m in &gateway_saw {
        for word in ["timer", "100rel", "Session-Expires", "Min-SE"] {
            assert!(!m.contains(word), "{word} reached the gateway:\n{m}");
        }
    }
}

#[test]
fn toward_a_carrier_without_update_we_refresh_with_a_reinvite() {
    let mut peers = shielded();
    let inv = with_body(
        &invite("ri1", "ri1")
            .replace("10.0.1.10:5060;branch", "203.0.113.10:5060;branch")
            .replace("10.0.0.100:5060", "203.0.113.50:5080"),
        GW_SDP,
    );
    let sent = peers.send(Side::Public, GATEWAY, &inv);
    let to_carrier = sent
        .iter()
        .find(|(s, ..)| *s == Side::Private)
        .unwrap()
        .2
        .clone();
    let ok = with_body(&answer(&to_carrier, 200, "ca9", false), CARRIER_SDP).replace(
        "Content-Type:",
        "Session-Expires: 90;refresher=uac\r\nAllow: INVITE, ACK, BYE\r\nContent-Type:",
    );
    peers.send(Side::Private, CARRIER, &ok);
    let refresh = peers.advance(45_000);
    assert_eq!(refresh.len(), 1, "{refresh:?}");
    let reinvite = &refresh[0].2;
    assert!(reinvite.starts_with("INVITE "), "{reinvite}");
    assert_eq!(header(reinvite, "CSeq"), Some("2 INVITE"));
    assert_eq!(header(reinvite, "Content-Type"), Some("application/sdp"));
    assert!(reinvite.contains("c=IN IP4 10.0.0.100\r\n"), "{reinvite}");
    assert!(
        reinvite.contains("m=audio 10000 RTP/AVP 0 101\r\n"),
        "{reinvite}"
    );
    let mut relay = RelayTable::new(10000, 20100);
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds.drain(..) {
        relay.apply(c, |_| {});
    }
    let gw_src = "203.0.113.10:30000";
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, gw_src),
        "10.0.1.10:40000".parse().ok()
    );
    // Resent until answered; the 200 gets our ACK, its copy another. The
    // carrier's answer moves its media: the relay follows, the gateway hears
    // nothing of it.
    assert_eq!(peers.advance(500).len(), 1);
    let moved = CARRIER_SDP
        .replace("40000", "40002")
        .replace("o=- 1 1", "o=- 1 2");
    let ok = with_body(&answer(reinvite, 200, "x", false), &moved).replace(
        &format!("To: {};tag=x", header(reinvite, "To").unwrap()),
        &format!("To: {}", header(reinvite, "To").unwrap()),
    );
    for _ in 0..2 {
        let acks = peers.send(Side::Private, CARRIER, &ok);
        assert_eq!(acks.len(), 1, "{acks:?}");
        assert!(acks[0].2.starts_with("ACK "), "{}", acks[0].2);
        assert_eq!(header(&acks[0].2, "CSeq"), Some("2 ACK"));
    }
    assert_eq!(peers.stats.local_answers.get(), 1);
    peers.engine.take_media_commands(&mut cmds);
    for c in cmds.drain(..) {
        relay.apply(c, |_| {});
    }
    assert_eq!(
        relay_to(&mut relay, Side::Public, 20000, gw_src),
        "10.0.1.10:40002".parse().ok()
    );
    assert!(peers.advance(10_000).is_empty());
}
