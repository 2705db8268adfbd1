//! The call journal: an answered call's image, put back into a new engine
//! (a restart), keeps its ports, media, SRTP keys and routing of in-dialog
//! requests; early dialogs are not journaled; an image is refused whole.

use super::sdes::{body, call, gateway_sdp, lab, with_sdp, CARRIER_SDP};
use super::*;
use crate::engine::{CallImage, JournalOp, RestoreError};
use crate::media::sdes::{Crypto, Suite};
use crate::media::{MediaCmd, SrtpKeys};
use crate::routing::MediaEncryption;

fn journal(peers: &mut Peers) -> Vec<JournalOp> {
    let mut ops = Vec::new();
    peers.engine.take_journal(&mut ops);
    ops
}

fn media_cmds(peers: &mut Peers) -> Vec<MediaCmd> {
    let mut cmds = Vec::new();
    peers.engine.take_media_commands(&mut cmds);
    cmds
}

const FROM: &str = "\"Carrier\" <sip:alice@10.0.1.10:5060>;tag=ca1";
const TO: &str = "<sip:+15551234@10.0.0.100:5060>;tag=gw1";

#[test]
fn an_answered_call_comes_back_after_a_restart() {
    // Before: engine time 0 is wall-clock 1,000,000 ms; the call is answered at 5 s.
    let mut before = lab(MediaEncryption::Require, true);
    before.engine.set_epoch(1_000_000);
    before.now = 5_000;
    let fwd = call(&mut before);
    assert!(
        journal(&mut before).is_empty(),
        "an early dialog is not kept"
    );
    let offer = body(&fwd);
    let theirs = Crypto::generate(2, Suite::AesCm128HmacSha1_80).unwrap();
    let ok = with_sdp(
        &answer(&fwd, 200, "gw1", false),
        &gateway_sdp("RTP/SAVP", &[&theirs]),
    );
    before.send(Side::Public, GATEWAY, &ok);
    let image = journal(&mut before)
        .into_iter()
        .filter_map(|op| match op {
            JournalOp::Up(image) => Some(image),
            JournalOp::Down(_) => None,
        })
        .last()
        .expect("the answered call is journaled");
    let bytes = image.to_bytes();

    // After: a new engine whose time 0 is 50 s earlier by the wall clock,
    // now 100 s on its clock (wall-clock 1,050,000: 45 s after the answer).
    let mut after = lab(MediaEncryption::Require, true);
    after.engine.set_epoch(950_000);
    after.now = 100_000;
    let free = after.engine.free_port_pairs();
    let restored = CallImage::from_bytes(&bytes).unwrap();
    assert_eq!(restored.call(), image.call());
    after.engine.restore(restored, after.now).unwrap();
    assert_eq!(after.stats.calls_restored.get(), 1);
    assert_eq!(after.stats.calls_up.get(), 1);
    assert_eq!(after.engine.dialog_count(), 1);
    assert_eq!(
        after.engine.free_port_pairs(),
        (free.0 - 1, free.1 - 1),
        "its ports are taken again"
    );
    // The relay gets both streams on the same ports, the keys, then both peers.
    let cmds = media_cmds(&mut after);
    let installs: Vec<[(Side, u16); 2]> = cmds
        .iter()
        .filter_map(|c| match c {
            MediaCmd::Install(s) => Some(s.ends.map(|e| (e.side, e.port))),
            _ => None,
        })
        .collect();
    assert_eq!(
        installs,
        vec![
            [(Side::Private, 10000), (Side::Public, 20000)],
            [(Side::Private, 10001), (Side::Public, 20001)]
        ]
    );
    let keys = cmds.iter().find_map(|c| match c {
        MediaCmd::Srtp { side, port, keys } => Some((*side, *port, keys.clone())),
        _ => None,
    });
    assert_eq!(
        keys,
        Some((
            Side::Public,
            20000,
            Some(Box::new(SrtpKeys {
                inbound: theirs,
                outbound: offer.media[0].crypto[1].clone()
            }))
        ))
    );
    let srtp_at = cmds
        .iter()
        .position(|c| matches!(c, MediaCmd::Srtp { .. }))
        .unwrap();
    let peers: Vec<(Side, u16, Option<std::net::SocketAddrV4>)> = cmds
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            MediaCmd::Peer { side, port, peer } => {
                assert!(i > srtp_at, "keys before peers");
                Some((*side, *port, *peer))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        peers,
        vec![
            (
                Side::Private,
                10000,
                Some("10.0.1.10:40000".parse().unwrap())
            ),
            (
                Side::Private,
                10001,
                Some("10.0.1.10:40001".parse().unwrap())
            ),
            (
                Side::Public,
                20000,
                Some("203.0.113.10:30000".parse().unwrap())
            ),
            (
                Side::Public,
                20001,
                Some("203.0.113.10:30001".parse().unwrap())
            ),
        ]
    );
    // The same call again is refused whole.
    assert_eq!(
        after
            .engine
            .restore(CallImage::from_bytes(&bytes).unwrap(), after.now),
        Err(RestoreError::Duplicate)
    );

    // The carrier's BYE still reaches the gateway, on the gateway leg's Call-ID.
    let bye = in_dialog(
        "BYE",
        "sip:sbc@10.0.0.100:5060",
        "s1@10.0.1.10",
        FROM,
        TO,
        "b1",
        2,
    );
    let sent = after.send(Side::Private, CARRIER, &bye);
    let (_, dst, to_gw) = sent
        .iter()
        .find(|(s, ..)| *s == Side::Public)
        .expect("the BYE is relayed");
    assert!(
        to_gw.starts_with("BYE sip:lk@203.0.113.10:5060 SIP/2.0"),
        "{to_gw}"
    );
    assert_eq!(*dst, addr(GATEWAY));
    assert_eq!(header(to_gw, "Call-ID"), header(&fwd, "Call-ID"));
    assert!(!to_gw.contains("10.0.1.10"), "{to_gw}");
    let back = after.send(Side::Public, GATEWAY, &answer(to_gw, 200, "gw1", false));
    let to_carrier = &back.iter().find(|(s, ..)| *s == Side::Private).unwrap().2;
    assert_eq!(status(to_carrier), 200);
    assert!(matches!(
        journal(&mut after).as_slice(),
        [JournalOp::Down(c)] if *c == image.call()
    ));
    // Its record: answered at 1,005,000 wall-clock, 55 s on the new clock; 45 s long.
    let record = media_cmds(&mut after)
        .into_iter()
        .find_map(|c| match c {
            MediaCmd::Release { record, .. } => Some(record),
            _ => None,
        })
        .unwrap();
    assert_eq!((record.started_ms, record.duration_ms), (55_000, 45_000));
    assert_eq!(after.engine.free_port_pairs(), free);
}

#[test]
fn a_reinvite_updates_the_image_and_a_port_in_use_refuses_it() {
    let mut peers = lab(MediaEncryption::Disable, false);
    let fwd = call(&mut peers);
    peers.send(
        Side::Public,
        GATEWAY,
        &with_sdp(
            &answer(&fwd, 200, "gw1", false),
            &gateway_sdp("RTP/AVP", &[]),
        ),
    );
    peers.send(
        Side::Private,
        CARRIER,
        &in_dialog(
            "ACK",
            "sip:sbc@10.0.0.100:5060",
            "s1@10.0.1.10",
            FROM,
            TO,
            "a1",
            1,
        ),
    );
    journal(&mut peers);
    // The carrier moves its media: the image that follows has the new SDP.
    let moved = CARRIER_SDP.replace("40000", "40100");
    let reinv = with_sdp(
        &in_dialog(
            "INVITE",
            "sip:sbc@10.0.0.100:5060",
            "s1@10.0.1.10",
            FROM,
            TO,
            "r1",
            2,
        ),
        &moved,
    );
    let sent = peers.send(Side::Private, CARRIER, &reinv);
    let fwd2 = &sent.iter().find(|(s, ..)| *s == Side::Public).unwrap().2;
    peers.send(
        Side::Public,
        GATEWAY,
        &with_sdp(
            &answer(fwd2, 200, "gw1", false),
            &gateway_sdp("RTP/AVP", &[]),
        ),
    );
    let last = journal(&mut peers)
        .into_iter()
        .filter_map(|op| match op {
            JournalOp::Up(i) => Some(i),
            JournalOp::Down(_) => None,
        })
        .last()
        .unwrap();
    let mut after = lab(MediaEncryption::Disable, false);
    after.engine.restore(*last.clone(), 0).unwrap();
    let moved_peer = media_cmds(&mut after).into_iter().any(|c| {
        c == MediaCmd::Peer {
            side: Side::Private,
            port: 10000,
            peer: Some("10.0.1.10:40100".parse().unwrap()),
        }
    });
    assert!(moved_peer, "the carrier's new address");
    // An engine whose port 10000 is taken by a call of its own refuses it,
    // and keeps nothing of it.
    // (Another seed, as at every start: other Call-IDs of ours.)
    let mut busy = lab(MediaEncryption::Disable, false);
    let mut cfg = busy.engine.config().clone();
    cfg.seed = 99;
    busy.engine = SipEngine::new(cfg, busy.engine.snapshot().clone(), busy.stats.clone());
    busy.send(
        Side::Private,
        CARRIER,
        &with_sdp(&invite("other", "o1"), CARRIER_SDP),
    );
    let free = busy.engine.free_port_pairs();
    assert_eq!(
        busy.engine.restore(*last, 0),
        Err(RestoreError::Port(10000))
    );
    assert_eq!(busy.engine.free_port_pairs(), free);
    assert_eq!(busy.engine.dialog_count(), 1);
    assert!(matches!(
        CallImage::from_bytes(b"\x02junk"),
        Err(RestoreError::Decode(_))
    ));
}

#[test]
fn a_2xx_from_before_the_restart_is_acknowledged_and_ended() {
    let mut before = lab(MediaEncryption::Disable, false);
    let fwd = call(&mut before);
    // Restarted (another seed and salt) before the gateway answered.
    let mut after = lab(MediaEncryption::Disable, false);
    let mut cfg = after.engine.config().clone();
    cfg.seed = 7;
    after.engine = SipEngine::new(cfg, after.engine.snapshot().clone(), after.stats.clone());
    let ok = with_sdp(
        &answer(&fwd, 200, "gw1", false),
        &gateway_sdp("RTP/AVP", &[]),
    );
    let sent = after.send(Side::Public, GATEWAY, &ok);
    let methods: Vec<&str> = sent
        .iter()
        .map(|(.., m)| m.split(' ').next().unwrap())
        .collect();
    assert_eq!(methods, vec!["ACK", "BYE"], "{sent:?}");
    for (side, dst, m) in &sent {
        assert_eq!((*side, *dst), (Side::Public, addr(GATEWAY)));
        assert!(m.contains(" sip:lk@203.0.113.10:5060 SIP/2.0\r\n"), "{m}");
        assert_eq!(header(m, "Call-ID"), header(&fwd, "Call-ID"));
        assert_eq!(header(m, "From"), header(&fwd, "From"));
        assert!(header(m, "To").unwrap().ends_with(";tag=gw1"), "{m}");
        assert!(!m.contains("10.0.1.10"), "nothing of the carrier: {m}");
    }
    assert_eq!(header(&sent[0].2, "CSeq"), Some("1 ACK"));
    assert_eq!(header(&sent[1].2, "CSeq"), Some("2 BYE"));
    assert!(!sent.iter().any(|(s, ..)| *s == Side::Private));
    assert_eq!(after.stats.orphan_2xx_ended.get(), 1);
    // A 2xx from a source that is neither gateway nor carrier gets nothing.
    assert!(after
        .send(Side::Public, "198.51.100.7:5060", &ok)
        .is_empty());
    assert_eq!(after.stats.orphan_2xx_ended.get(), 1);
}
