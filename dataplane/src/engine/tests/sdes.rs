//! SRTP toward gateways (SDES, RFC 4568): keys offered and answered on the
//! gateway leg only, the relay told at each answer, `require` enforced.

use super::*;
use crate::media::sdes::{Crypto, Suite};
use crate::media::sdp::SdpRepr;
use crate::media::{MediaCmd, SrtpKeys};
use crate::routing::MediaEncryption;

/// An engine relaying media whose gateway wants `mode`; `srtp`: the relay can key.
pub(super) fn lab(mode: MediaEncryption, srtp: bool) -> Peers {
    let mut snap = snapshot();
    snap.gateways[0].media_encryption = mode;
    lab_with(snap, srtp)
}

/// [`lab`] routing with `snap`.
pub(super) fn lab_with(snap: RouteSnapshot, srtp: bool) -> Peers {
    let mut peers = Peers::new();
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
    cfg.srtp = srtp;
    peers.engine = SipEngine::new(cfg, Arc::new(snap), peers.stats.clone());
    peers
}

/// `msg` with its body replaced by `sdp` (`application/sdp`).
pub(super) fn with_sdp(msg: &str, sdp: &str) -> String {
    let head = msg.split("\r\n\r\n").next().unwrap();
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.starts_with("Content-Length") && !l.starts_with("Content-Type"))
        .collect();
    format!(
        "{}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head.join("\r\n"),
        sdp.len()
    )
}

pub(super) const CARRIER_SDP: &str = "v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

pub(super) fn gateway_sdp(proto: &str, crypto: &[&Crypto]) -> String {
    let mut s = format!("v=0\r\nc=IN IP4 203.0.113.10\r\nm=audio 30000 {proto} 8\r\n");
    for c in crypto {
        s.push_str(&format!("a=crypto:{}\r\n", c.to_value()));
    }
    s
}

pub(super) fn body(msg: &str) -> SdpRepr {
    SdpRepr::parse(msg.split("\r\n\r\n").nth(1).unwrap().as_bytes()).unwrap()
}

fn srtp_cmds(peers: &mut Peers) -> Vec<(Side, u16, Option<SrtpKeys>)> {
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    cmds.into_iter()
        .filter_map(|c| match c {
            MediaCmd::Srtp { side, port, keys } => Some((side, port, keys.map(|k| *k))),
            _ => None,
        })
        .collect()
}

/// The carrier's INVITE, forwarded: what the gateway got.
pub(super) fn call(peers: &mut Peers) -> String {
    let inv = with_sdp(&invite("s1", "s1"), CARRIER_SDP);
    let sent = peers.send(Side::Private, CARRIER, &inv);
    sent.into_iter()
        .find(|(s, ..)| *s == Side::Public)
        .unwrap()
        .2
}

#[test]
fn require_offers_keys_to_the_gateway_and_plain_rtp_to_the_carrier() {
    let mut peers = lab(MediaEncryption::Require, true);
    let fwd = call(&mut peers);
    let offer = body(&fwd);
    let m = &offer.media[0];
    assert_eq!(m.proto, "RTP/SAVP", "{fwd}");
    let suites: Vec<(u32, Suite)> = m.crypto.iter().map(|c| (c.tag, c.suite)).collect();
    assert_eq!(
        suites,
        vec![(1, Suite::AeadAes128Gcm), (2, Suite::AesCm128HmacSha1_80)]
    );
    assert!(fwd.contains("a=rtpmap:101 telephone-event/8000\r\n"));
    // The gateway takes tag 2 and gives its own key.
    let theirs = Crypto::generate(2, Suite::AesCm128HmacSha1_80).unwrap();
    let ok = with_sdp(
        &answer(&fwd, 200, "gw1", false),
        &gateway_sdp("RTP/SAVP", &[&theirs]),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let to_carrier = &back.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert_eq!(status(to_carrier), 200);
    assert!(
        to_carrier.contains("m=audio 10000 RTP/AVP 8\r\n"),
        "{to_carrier}"
    );
    assert!(!to_carrier.contains("crypto"), "{to_carrier}");
    let cmds = srtp_cmds(&mut peers);
    assert_eq!(
        cmds,
        vec![(
            Side::Public,
            20000,
            Some(SrtpKeys {
                inbound: theirs.clone(),
                outbound: m.crypto[1].clone()
            })
        )]
    );
    assert_eq!(peers.stats.srtp_lines.get(), 1);
    peers.send(
        Side::Private,
        CARRIER,
        &in_dialog(
            "ACK",
            "sip:sbc@10.0.0.100:5060",
            "s1@10.0.1.10",
            "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
            "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
            "a1",
            1,
        ),
    );
    // A re-INVITE of the carrier's (hold): new keys of ours (a rekey); the
    // gateway keeps its own, which the relay keeps its session for.
    let hold = CARRIER_SDP.replace(
        "telephone-event/8000\r\n",
        "telephone-event/8000\r\na=sendonly\r\n",
    );
    let reinv = with_sdp(
        &in_dialog(
            "INVITE",
            "sip:sbc@10.0.0.100:5060",
            "s1@10.0.1.10",
            "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
            "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
            "r1",
            2,
        )
        .replace(
            "Content-Length: 0",
            "Contact: <sip:alice@10.0.1.10:5060>\r\nContent-Length: 0",
        ),
        &hold,
    );
    let sent = peers.send(Side::Private, CARRIER, &reinv);
    let fwd2 = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    let offer2 = body(fwd2);
    assert_eq!(offer2.media[0].crypto.len(), 2);
    assert_ne!(offer2.media[0].crypto[1].key, m.crypto[1].key, "new keys");
    let ok2 = with_sdp(
        &answer(fwd2, 200, "gw1", false),
        &gateway_sdp("RTP/SAVP", &[&theirs]).replace("8\r\n", "8\r\na=recvonly\r\n"),
    );
    peers.send(Side::Public, GATEWAY, &ok2);
    let cmds = srtp_cmds(&mut peers);
    assert_eq!(cmds.len(), 1);
    let keys = cmds[0].2.clone().unwrap();
    assert_eq!(
        (keys.inbound, keys.outbound),
        (theirs, offer2.media[0].crypto[1].clone())
    );
}

#[test]
fn require_refuses_a_gateway_answer_without_our_key() {
    let mut peers = lab(MediaEncryption::Require, true);
    let fwd = call(&mut peers);
    let ok = with_sdp(
        &answer(&fwd, 200, "gw1", false),
        &gateway_sdp("RTP/AVP", &[]),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let to_carrier = &back.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert_eq!(status(to_carrier), 502, "{to_carrier}");
    assert!(to_carrier.contains("requires them"), "{to_carrier}");
    let to_gateway: Vec<&str> = back
        .iter()
        .filter(|(s, ..)| *s == Side::Public)
        .map(|(.., m)| m.split(' ').next().unwrap())
        .collect();
    assert_eq!(to_gateway, vec!["ACK", "BYE"]);
    assert!(srtp_cmds(&mut peers).is_empty());
    assert_eq!(peers.stats.answers_refused.get(), 1);
}

#[test]
fn allow_falls_back_to_plain_rtp_when_the_gateway_takes_no_key() {
    let mut peers = lab(MediaEncryption::Allow, true);
    let fwd = call(&mut peers);
    let m = &body(&fwd).media[0];
    assert_eq!(
        (m.proto.as_str(), m.crypto.len()),
        ("RTP/AVP", 2),
        "best effort"
    );
    let ok = with_sdp(
        &answer(&fwd, 200, "gw1", false),
        &gateway_sdp("RTP/AVP", &[]),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    assert!(back
        .iter()
        .any(|(s, _, m)| *s == Side::Private && status(m) == 200));
    assert!(srtp_cmds(&mut peers).is_empty());
    assert_eq!(peers.stats.calls_up.get(), 1);
}

#[test]
fn disable_or_no_srtp_offers_no_keys() {
    for (mode, srtp) in [
        (MediaEncryption::Disable, true),
        (MediaEncryption::Require, false),
    ] {
        let mut peers = lab(mode, srtp);
        let fwd = call(&mut peers);
        let m = &body(&fwd).media[0];
        assert_eq!(
            (m.proto.as_str(), m.crypto.len()),
            ("RTP/AVP", 0),
            "{mode:?}"
        );
    }
}

/// A gateway's own offer with a key (its re-INVITE), in a call whose
/// gateway is `mode`: what the carrier gets, and what the gateway gets back.
fn gateway_offers(
    mode: MediaEncryption,
    srtp: bool,
    sdp: &str,
) -> (Peers, Vec<(Side, SocketAddr, String)>) {
    let mut peers = lab(mode, srtp);
    let fwd = call(&mut peers);
    // Plain answer (allowed unless `require`), then the gateway re-offers.
    let answered = match mode {
        MediaEncryption::Require => {
            let c = body(&fwd).media[0].crypto[0].clone();
            gateway_sdp("RTP/SAVP", &[&Crypto::generate(c.tag, c.suite).unwrap()])
        }
        _ => gateway_sdp("RTP/AVP", &[]),
    };
    peers.send(
        Side::Public,
        GATEWAY,
        &with_sdp(&answer(&fwd, 200, "gw1", false), &answered),
    );
    srtp_cmds(&mut peers);
    let reinv = with_sdp(
        &in_dialog(
            "INVITE",
            "sip:sbc@203.0.113.50:5080",
            header(&fwd, "Call-ID").unwrap(),
            &format!("{};tag=gw1", header(&fwd, "To").unwrap()),
            header(&fwd, "From").unwrap(),
            "g1",
            1,
        )
        .replace(
            "Content-Length: 0",
            "Contact: <sip:lk@203.0.113.10:5060>\r\nContent-Length: 0",
        ),
        sdp,
    );
    let sent = peers.send(Side::Public, GATEWAY, &reinv);
    (peers, sent)
}

#[test]
fn a_gateway_offer_with_a_key_is_answered_with_ours_and_reaches_the_carrier_plain() {
    let theirs = Crypto {
        tag: 7,
        suite: Suite::AesCm128HmacSha1_80,
        key: (0..30).collect(),
    };
    let unknown =
        "a=crypto:3 AES_CM_128_HMAC_SHA1_32 inline:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd\r\n";
    let offer = gateway_sdp("RTP/SAVP", &[&theirs]).replace("8\r\n", &format!("8\r\n{unknown}"));
    let (mut peers, sent) = gateway_offers(MediaEncryption::Disable, true, &offer);
    let to_carrier = &sent.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert!(to_carrier.starts_with("INVITE "), "{to_carrier}");
    assert!(
        to_carrier.contains(" RTP/AVP 8\r\n") && !to_carrier.contains("crypto"),
        "{to_carrier}"
    );
    let ok = with_sdp(&answer(to_carrier, 200, "ca1", false), CARRIER_SDP);
    let back = peers.send(Side::Private, CARRIER, &ok);
    let to_gateway = &back.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    let m = &body(to_gateway).media[0];
    assert_eq!(m.proto, "RTP/SAVP", "{to_gateway}");
    assert_eq!(m.crypto.len(), 1);
    assert!(m.crypto[0].same_slot(&theirs));
    assert_ne!(m.crypto[0].key, theirs.key);
    let cmds = srtp_cmds(&mut peers);
    assert_eq!(
        cmds,
        vec![(
            Side::Public,
            20000,
            Some(SrtpKeys {
                inbound: theirs,
                outbound: m.crypto[0].clone()
            })
        )]
    );
}

#[test]
fn offers_the_relay_cannot_key_are_refused_488() {
    // No SRTP in this build or backend.
    let theirs = Crypto::generate(1, Suite::AeadAes128Gcm).unwrap();
    let (_, sent) = gateway_offers(
        MediaEncryption::Disable,
        false,
        &gateway_sdp("RTP/SAVP", &[&theirs]),
    );
    assert_eq!(status(&sent[0].2), 488, "{}", sent[0].2);
    // No suite we take.
    let (_, sent) = gateway_offers(
        MediaEncryption::Disable,
        true,
        &gateway_sdp("RTP/SAVP", &[]),
    );
    assert_eq!(status(&sent[0].2), 488);
    // `require`: a plain offer from the gateway.
    let (_, sent) = gateway_offers(MediaEncryption::Require, true, &gateway_sdp("RTP/AVP", &[]));
    assert_eq!(status(&sent[0].2), 488);
    assert!(sent[0].2.contains("requires them"), "{}", sent[0].2);
}

#[test]
fn a_delayed_offer_is_keyed_by_our_own_offer_and_the_carriers_ack() {
    let mut peers = lab(MediaEncryption::Require, true);
    let mut snap = snapshot();
    snap.gateways[0].media_encryption = MediaEncryption::Require;
    snap.gateways[0].profile = crate::routing::Profile::Livekit;
    peers.engine.set_snapshot(Arc::new(snap));
    let inv = invite("d1", "d1");
    let head = inv.split("\r\n\r\n").next().unwrap().replace(
        "Content-Type: application/sdp\r\nContent-Length: 55",
        "Content-Length: 0",
    );
    let sent = peers.send(Side::Private, CARRIER, &format!("{head}\r\n\r\n"));
    let fwd = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    let ours = body(fwd).media[0].crypto.clone();
    assert_eq!(
        (body(fwd).media[0].proto.as_str(), ours.len()),
        ("RTP/SAVP", 2),
        "{fwd}"
    );
    let theirs = Crypto::generate(1, Suite::AeadAes128Gcm).unwrap();
    let ok = with_sdp(
        &answer(fwd, 200, "gw1", false),
        &gateway_sdp("RTP/SAVP", &[&theirs]),
    );
    let back = peers.send(Side::Public, GATEWAY, &ok);
    let to_carrier = &back.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert_eq!(status(to_carrier), 200);
    assert!(
        !to_carrier.contains("crypto") && to_carrier.contains(" RTP/AVP "),
        "{to_carrier}"
    );
    let ack = with_sdp(
        &in_dialog(
            "ACK",
            "sip:sbc@10.0.0.100:5060",
            "d1@10.0.1.10",
            "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1",
            "<sip:+15551234@10.0.0.100:5060>;tag=gw1",
            "a1",
            1,
        ),
        CARRIER_SDP,
    );
    peers.send(Side::Private, CARRIER, &ack);
    let cmds = srtp_cmds(&mut peers);
    assert_eq!(
        cmds,
        vec![(
            Side::Public,
            20000,
            Some(SrtpKeys {
                inbound: theirs,
                outbound: ours[0].clone()
            })
        )]
    );
}

#[test]
fn failover_keys_the_offer_for_the_next_gateway() {
    // .10 (priority 2) requires SRTP and answers 503; .11 takes plain RTP.
    let mut snap = snapshot_multi(100, 100);
    snap.gateways[0].media_encryption = MediaEncryption::Require;
    let mut peers = lab_with(snap, true);
    let fwd = call(&mut peers);
    assert_eq!(body(&fwd).media[0].crypto.len(), 2, "{fwd}");
    let sent = peers.send(Side::Public, GATEWAY, &answer(&fwd, 503, "gw1", false));
    let next = &sent
        .iter()
        .find(|(s, _, m)| *s == Side::Public && m.starts_with("INVITE "))
        .unwrap()
        .2;
    let m = &body(next).media[0];
    assert_eq!((m.proto.as_str(), m.crypto.len()), ("RTP/AVP", 0), "{next}");
}
