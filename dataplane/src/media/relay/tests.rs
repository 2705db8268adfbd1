//! The relay table on its own: latching, drops by reason, hold and
//! re-INVITE, RTP statistics, lanes, release with the call record, idle streams,
//! RFC 4733 events (marker bit, payload type per side).

use super::*;
use crate::media::ports::PortPairs;

fn addr(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn rtp(seq: u16, ts: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend([0; 4]);
    p.extend([0xd5; 160]);
    p
}

/// Carrier 10.0.1.10:40000 <-> SBC priv:10000 | SBC pub:20000 <-> gateway 203.0.113.10:30000
fn table() -> (RelayTable, u32) {
    let mut t = RelayTable::new(10000, 60000);
    let s = Stream {
        ends: [
            End::new(Side::Private, 10000, Some(addr("10.0.1.10:40000"))),
            End::new(Side::Public, 20000, Some(addr("203.0.113.10:30000"))),
        ],
        rtcp: false,
        last_active: 0,
    };
    let id = t.install(s).unwrap();
    (t, id)
}

#[test]
fn relays_both_ways_and_latches() {
    let (mut t, _) = table();
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(1, 160),
        0,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Public,
            lane: 0,
            port: 20000,
            to: addr("203.0.113.10:30000")
        }
    );
    // The gateway sends from another port (NAT-like): latched there, and used as destination.
    let v = t.verdict(
        (Side::Public, 0, 20000),
        addr("203.0.113.10:31000"),
        &mut rtp(7, 0),
        20,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Private,
            lane: 0,
            port: 10000,
            to: addr("10.0.1.10:40000")
        }
    );
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(2, 320),
        20,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Public,
            lane: 0,
            port: 20000,
            to: addr("203.0.113.10:31000")
        }
    );
}

#[test]
fn spoofed_and_unknown_sources_are_dropped_and_counted() {
    let (mut t, _) = table();
    // Before latching: only the SDP address is accepted.
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.66:40000"),
        &mut rtp(1, 0),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::WrongSource));
    t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(1, 0),
        0,
    );
    // After latching: strict, even from the same IP.
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40002"),
        &mut rtp(2, 0),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::WrongSource));
    let v = t.verdict(
        (Side::Private, 0, 10002),
        addr("10.0.1.10:40000"),
        &mut rtp(2, 0),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::UnknownPort));
    assert_eq!(t.drops, [1, 2, 0, 0]);
    assert_eq!(t.relayed, 1);
}

#[test]
fn hold_and_reinvite_move_the_peer() {
    let (mut t, id) = table();
    t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(1, 0),
        0,
    );
    t.update_peer(id, Side::Public, Some(addr("0.0.0.0:30000")));
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(2, 0),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::NoDestination));
    t.update_peer(id, Side::Public, Some(addr("203.0.113.11:32000")));
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(3, 0),
        0,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Public,
            lane: 0,
            port: 20000,
            to: addr("203.0.113.11:32000")
        }
    );
}

#[test]
fn a_port_only_move_relatches_on_the_new_port_despite_stragglers() {
    let (mut t, id) = table();
    let from_carrier = |t: &mut RelayTable, src: &str, seq: u16| {
        t.verdict(
            (Side::Private, 0, 10000),
            addr(src),
            &mut rtp(seq, u32::from(seq) * 160),
            0,
        )
    };
    assert!(matches!(
        from_carrier(&mut t, "10.0.1.10:40000", 1),
        Verdict::Relay { .. }
    ));
    // The answer commits m=audio 40002 (same c=): the latch restarts.
    t.update_peer(id, Side::Private, Some(addr("10.0.1.10:40002")));
    // A packet still in flight from the old port latches there first...
    assert!(matches!(
        from_carrier(&mut t, "10.0.1.10:40000", 2),
        Verdict::Relay { .. }
    ));
    // ...but the SDP's own address takes the latch over, for good.
    for seq in 3..93 {
        assert!(
            matches!(
                from_carrier(&mut t, "10.0.1.10:40002", seq),
                Verdict::Relay { .. }
            ),
            "packet {seq} from the new port"
        );
    }
    assert_eq!(
        from_carrier(&mut t, "10.0.1.10:40000", 93),
        Verdict::Drop(DropReason::WrongSource)
    );
    // The gateway's audio goes to the new port.
    let v = t.verdict(
        (Side::Public, 0, 20000),
        addr("203.0.113.10:30000"),
        &mut rtp(1, 0),
        0,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Private,
            lane: 0,
            port: 10000,
            to: addr("10.0.1.10:40002")
        }
    );
}

#[test]
fn loss_and_jitter_from_rtp_headers() {
    let (mut t, id) = table();
    for (i, seq) in [65534u16, 65535, 0, 2, 3].iter().enumerate() {
        let now = i as u64 * 20;
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut rtp(*seq, now as u32 * 8),
            now,
        );
    }
    let rx = t.get(id).unwrap().ends[0].rx;
    assert_eq!(rx.packets, 5);
    assert_eq!(rx.lost(), 1, "sequence 1 is missing across the wrap");
    assert_eq!(rx.jitter, 0.0);
}

#[test]
fn a_new_ssrc_restarts_the_sequence_and_keeps_earlier_loss() {
    let (mut t, id) = table();
    let mut p = rtp(100, 0);
    for seq in [100u16, 102] {
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut p,
            0,
        );
    }
    // The answer's source: other SSRC, sequence far away, timestamp near the wrap.
    let mut q = rtp(40_000, u32::MAX - 100);
    q[8..12].copy_from_slice(&7u32.to_be_bytes());
    for (seq, ts) in [(40_000u16, u32::MAX - 100), (40_001, 60)] {
        q[2..4].copy_from_slice(&seq.to_be_bytes());
        q[4..8].copy_from_slice(&ts.to_be_bytes());
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut q,
            20,
        );
    }
    let rx = t.get(id).unwrap().ends[0].rx;
    assert_eq!(rx.packets, 4);
    assert_eq!(rx.lost(), 1, "seq 101 of the first source only");
    assert!(
        rx.jitter < 20.0,
        "no jump across the timestamp wrap: {}",
        rx.jitter
    );
}

#[test]
fn install_over_a_stale_stream_replaces_it() {
    let (mut t, _) = table();
    let s = Stream {
        ends: [
            End::new(Side::Private, 10000, Some(addr("10.0.1.11:40000"))),
            End::new(Side::Public, 20000, Some(addr("203.0.113.11:30000"))),
        ],
        rtcp: false,
        last_active: 0,
    };
    t.apply(MediaCmd::Install(s), |_| {});
    assert_eq!(t.replaced, 1);
    assert_eq!(t.len(), 1);
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.11:40000"),
        &mut rtp(1, 0),
        0,
    );
    assert!(matches!(v, Verdict::Relay { .. }), "{v:?}");
}

#[test]
fn removal_frees_the_ports_and_pairs_are_even() {
    let (mut t, id) = table();
    assert!(t.install(t.get(id).unwrap()).is_none(), "ports taken");
    t.remove(id).unwrap();
    assert!(t.is_empty());
    assert_eq!(
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut rtp(1, 0),
            0
        ),
        Verdict::Drop(DropReason::UnknownPort)
    );
    let mut pairs = PortPairs::new(10001, 10010);
    let got: Vec<u16> = std::iter::from_fn(|| pairs.take()).collect();
    assert_eq!(got, vec![10002, 10004, 10006, 10008]);
    pairs.give(10004);
    pairs.give(10004);
    pairs.give(10005);
    assert_eq!(pairs.available(), 1);
}

#[test]
fn lanes_keep_equal_ports_of_different_addresses_apart() {
    let mut t = RelayTable::with_lanes(2, 10000, 10010);
    let stream = |lane, peer: &str| Stream {
        ends: [
            End::on_lane(Side::Private, lane, 10000, Some(addr(peer))),
            End::on_lane(Side::Public, lane, 10000, Some(addr("203.0.113.10:30000"))),
        ],
        rtcp: false,
        last_active: 0,
    };
    t.install(stream(0, "10.0.1.10:40000")).unwrap();
    t.install(stream(1, "10.0.1.11:40000")).unwrap();
    assert!(
        t.install(stream(2, "10.0.1.12:40000")).is_none(),
        "no lane 2"
    );
    let v = t.verdict(
        (Side::Private, 1, 10000),
        addr("10.0.1.11:40000"),
        &mut rtp(1, 0),
        0,
    );
    assert_eq!(
        v,
        Verdict::Relay {
            side: Side::Public,
            lane: 1,
            port: 10000,
            to: addr("203.0.113.10:30000")
        }
    );
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.11:40000"),
        &mut rtp(1, 0),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::WrongSource));
}

#[test]
fn release_removes_both_streams_and_fills_the_record() {
    let (mut t, _) = table();
    let rtcp = Stream {
        ends: [
            End::new(Side::Private, 10001, Some(addr("10.0.1.10:40001"))),
            End::new(Side::Public, 20001, Some(addr("203.0.113.10:30001"))),
        ],
        rtcp: true,
        last_active: 0,
    };
    t.install(rtcp).unwrap();
    for seq in [1u16, 2, 4] {
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut rtp(seq, 0),
            0,
        );
    }
    t.verdict(
        (Side::Public, 0, 20000),
        addr("203.0.113.10:30000"),
        &mut rtp(9, 0),
        0,
    );
    let record = CallRecord {
        call: 7,
        tenant: None,
        result: crate::call::CallResult::Answered,
        caller_side: Side::Private,
        caller_call_id: String::new(),
        callee_call_id: String::new(),
        setup_ms: Some(10),
        duration_ms: 1000,
        started_ms: 0,
        ended_ms: 1010,
        caller_addr: "10.0.1.10:5060".parse().unwrap(),
        callee_addr: "203.0.113.10:5060".parse().unwrap(),
        final_code: 200,
        ended_by: None,
        attempts: 1,
        media: Vec::new(),
    };
    let mut gone = Vec::new();
    let done = t
        .apply(
            MediaCmd::Release {
                rtp_ports: vec![(Side::Private, 10000)],
                record: Box::new(record),
            },
            |s| gone.push(s.rtcp),
        )
        .unwrap();
    assert_eq!(gone, vec![false, true]);
    assert!(t.is_empty());
    let [line] = done.media.as_slice() else {
        panic!("{:?}", done.media)
    };
    assert_eq!(line.from_caller.packets, 3);
    assert_eq!(line.from_caller.bytes, 3 * 172);
    assert_eq!(line.from_caller.lost, 1);
    assert_eq!(line.from_callee.packets, 1);
}

#[test]
fn idle_streams_are_reported_once_per_timeout() {
    let (mut t, _) = table();
    let mut seen = Vec::new();
    t.idle(59_999, 60_000, |side, port| seen.push((side, port)));
    assert!(seen.is_empty());
    t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut rtp(1, 0),
        30_000,
    );
    t.idle(60_000, 60_000, |side, port| seen.push((side, port)));
    assert!(seen.is_empty(), "media at 30 s keeps it alive");
    t.idle(90_000, 60_000, |side, port| seen.push((side, port)));
    assert_eq!(seen, vec![(Side::Private, 10000)]);
    t.idle(91_000, 60_000, |side, port| seen.push((side, port)));
    assert_eq!(seen.len(), 1);
}

#[test]
fn telephone_events_get_their_marker_and_are_counted() {
    let (mut t, id) = table();
    t.apply(
        MediaCmd::Negotiated {
            side: Side::Private,
            port: 10000,
            receives: true,
            telephone_event: Some(101),
        },
        |_| {},
    );
    let event = |seq: u16, ts: u32, marker: bool| {
        let mut p = rtp(seq, ts);
        p[1] = 101 | if marker { 0x80 } else { 0 };
        p.truncate(16);
        p
    };
    // A carrier that never sets the marker: the first packet of each event gets it.
    let mut sent = Vec::new();
    for (seq, ts) in [(1, 800), (2, 800), (3, 800), (4, 2400), (5, 2400)] {
        let mut p = event(seq, ts, false);
        t.verdict(
            (Side::Private, 0, 10000),
            addr("10.0.1.10:40000"),
            &mut p,
            0,
        );
        sent.push(p[1] & 0x80 != 0);
    }
    assert_eq!(sent, [true, false, false, true, false]);
    // Audio is left alone.
    let mut p = rtp(6, 4000);
    t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut p,
        0,
    );
    assert_eq!(p[1], 8);
    assert_eq!(t.get(id).unwrap().ends[0].rx.summary().dtmf_events, 2);
    // Nothing goes toward a peer that does not receive.
    t.apply(
        MediaCmd::Negotiated {
            side: Side::Public,
            port: 20000,
            receives: false,
            telephone_event: None,
        },
        |_| {},
    );
    let mut p = rtp(7, 4160);
    let v = t.verdict(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut p,
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::NoDestination));
}

#[test]
fn telephone_events_leave_with_the_receivers_payload_type() {
    let (mut t, _) = table();
    for (side, port, pt) in [(Side::Private, 10000, 101), (Side::Public, 20000, 96)] {
        t.apply(
            MediaCmd::Negotiated {
                side,
                port,
                receives: true,
                telephone_event: Some(pt),
            },
            |_| {},
        );
    }
    let send = |t: &mut RelayTable, from: (Side, u16, &str), seq: u16, ts: u32, byte1: u8| {
        let mut p = rtp(seq, ts);
        p[1] = byte1;
        p.truncate(16);
        let v = t.verdict((from.0, 0, from.1), addr(from.2), &mut p, 0);
        assert!(matches!(v, Verdict::Relay { .. }), "{v:?}");
        p[1]
    };
    let carrier = (Side::Private, 10000, "10.0.1.10:40000");
    let gateway = (Side::Public, 20000, "203.0.113.10:30000");
    // The carrier's own number (101) leaves as the gateway's (96), marker on the first packet.
    assert_eq!(send(&mut t, carrier, 1, 800, 101), 0x80 | 96);
    assert_eq!(send(&mut t, carrier, 2, 800, 101), 96);
    assert_eq!(send(&mut t, carrier, 3, 800, 0x80 | 101), 0x80 | 96);
    // A carrier that already uses the receiver's number is left alone (and counted).
    assert_eq!(send(&mut t, carrier, 4, 2400, 96), 0x80 | 96);
    // The other way: the gateway's 96 reaches the carrier as its 101.
    assert_eq!(send(&mut t, gateway, 1, 160, 0x80 | 96), 0x80 | 101);
    assert_eq!(send(&mut t, gateway, 2, 160, 96), 101);
    // Audio keeps its payload type.
    assert_eq!(send(&mut t, carrier, 5, 4000, 8), 8);
    assert_eq!(send(&mut t, gateway, 3, 320, 0), 0);
    let s = t.get(0).unwrap();
    assert_eq!(s.ends[0].rx.summary().dtmf_events, 2);
    assert_eq!(s.ends[1].rx.summary().dtmf_events, 1);
}

/// SRTP keys for the gateway's end at 20000: the gateway's and ours.
fn srtp_keys(suite: crate::media::sdes::Suite) -> super::super::SrtpKeys {
    use crate::media::sdes::Crypto;
    super::super::SrtpKeys {
        inbound: Crypto {
            tag: 1,
            suite,
            key: vec![0x11; suite.key_len()],
        },
        outbound: Crypto {
            tag: 1,
            suite,
            key: vec![0x22; suite.key_len()],
        },
    }
}

#[cfg(feature = "srtp")]
#[test]
fn srtp_toward_the_gateway_plain_rtp_toward_the_carrier() {
    use crate::media::sdes::Suite;
    use crate::srtp::{Role, SrtpSession};
    for suite in Suite::ALL {
        let (mut t, _) = table();
        let keys = srtp_keys(suite);
        t.apply(
            MediaCmd::Srtp {
                side: Side::Public,
                port: 20000,
                keys: Some(Box::new(keys.clone())),
            },
            |_| {},
        );
        // The gateway's view: it decrypts with our key, encrypts with its own.
        let mut gw_rx = SrtpSession::new(suite, &keys.outbound.key, Role::Unprotect).unwrap();
        let mut gw_tx = SrtpSession::new(suite, &keys.inbound.key, Role::Protect).unwrap();
        let carrier = addr("10.0.1.10:40000");
        let gateway = addr("203.0.113.10:30000");
        for seq in 1..=3u16 {
            // Carrier -> gateway: leaves encrypted, a tag longer.
            let plain = rtp(seq, u32::from(seq) * 160);
            let mut buf = plain.clone();
            buf.resize(2048, 0);
            let (v, n) =
                t.relay_packet((Side::Private, 0, 10000), carrier, &mut buf, plain.len(), 0);
            assert!(matches!(v, Verdict::Relay { port: 20000, .. }), "{v:?}");
            assert_eq!(n, plain.len() + suite.rtp_overhead());
            assert_ne!(&buf[12..plain.len()], &plain[12..], "payload in clear");
            assert_eq!(gw_rx.unprotect_rtp(&mut buf, n).unwrap(), plain.len());
            assert_eq!(&buf[..plain.len()], &plain[..]);
            // Gateway -> carrier: arrives encrypted, leaves plain.
            let mut buf = plain.clone();
            buf.resize(2048, 0);
            let n = gw_tx.protect_rtp(&mut buf, plain.len()).unwrap();
            let sent = buf.clone();
            let (v, m) = t.relay_packet((Side::Public, 0, 20000), gateway, &mut buf, n, 0);
            assert!(matches!(v, Verdict::Relay { port: 10000, .. }), "{v:?}");
            assert_eq!(&buf[..m], &plain[..]);
            // The same packet again is a replay; a changed byte does not verify.
            let mut again = sent.clone();
            let (v, _) = t.relay_packet((Side::Public, 0, 20000), gateway, &mut again, n, 0);
            assert_eq!(v, Verdict::Drop(DropReason::Srtp));
            let _ = sent;
            let fresh = rtp(seq + 100, 0);
            let mut forged = fresh.clone();
            forged.resize(2048, 0);
            let n = gw_tx.protect_rtp(&mut forged, fresh.len()).unwrap();
            forged[20] ^= 0x40;
            let (v, _) = t.relay_packet((Side::Public, 0, 20000), gateway, &mut forged, n, 0);
            assert_eq!(v, Verdict::Drop(DropReason::Srtp));
        }
        assert_eq!((t.drops[DropReason::Srtp as usize], t.srtp_replays), (6, 3));
        assert_eq!(t.relayed, 6);
        // A rekey of ours (a re-INVITE): the gateway's unchanged key keeps
        // its session (an old packet is still a replay), ours is new.
        let mut rekeyed = keys.clone();
        rekeyed.outbound.key = vec![0x33; suite.key_len()];
        t.apply(
            MediaCmd::Srtp {
                side: Side::Public,
                port: 20000,
                keys: Some(Box::new(rekeyed.clone())),
            },
            |_| {},
        );
        let old = rtp(2, 320);
        let mut buf = old.clone();
        buf.resize(2048, 0);
        let mut gw_tx2 = SrtpSession::new(suite, &keys.inbound.key, Role::Protect).unwrap();
        let n = gw_tx2.protect_rtp(&mut buf, old.len()).unwrap();
        let (v, _) = t.relay_packet((Side::Public, 0, 20000), gateway, &mut buf, n, 0);
        assert_eq!(v, Verdict::Drop(DropReason::Srtp), "replay list kept");
        let mut gw_rx2 = SrtpSession::new(suite, &rekeyed.outbound.key, Role::Unprotect).unwrap();
        let plain = rtp(4, 4 * 160);
        let mut buf = plain.clone();
        buf.resize(2048, 0);
        let (_, n) = t.relay_packet((Side::Private, 0, 10000), carrier, &mut buf, plain.len(), 0);
        assert_eq!(
            gw_rx2.unprotect_rtp(&mut buf, n).unwrap(),
            plain.len(),
            "new key"
        );
        t.drops[DropReason::Srtp as usize] -= 1;
        t.srtp_replays -= 1;
        t.relayed -= 1;
        // No room for the tag: dropped, never sent in clear.
        let plain = rtp(9, 9 * 160);
        let mut tight = plain.clone();
        let (v, _) = t.relay_packet(
            (Side::Private, 0, 10000),
            carrier,
            &mut tight,
            plain.len(),
            0,
        );
        assert_eq!(v, Verdict::Drop(DropReason::Srtp));
        // SRTP off again (a re-INVITE to RTP/AVP): plain both ways.
        t.apply(
            MediaCmd::Srtp {
                side: Side::Public,
                port: 20000,
                keys: None,
            },
            |_| {},
        );
        let mut buf = plain.clone();
        buf.resize(2048, 0);
        let (v, n) = t.relay_packet((Side::Private, 0, 10000), carrier, &mut buf, plain.len(), 0);
        assert!(matches!(v, Verdict::Relay { .. }));
        assert_eq!(&buf[..n], &plain[..]);
    }
}

#[cfg(not(feature = "srtp"))]
#[test]
fn srtp_asked_of_a_relay_without_it_drops_rather_than_send_in_clear() {
    let (mut t, _) = table();
    t.apply(
        MediaCmd::Srtp {
            side: Side::Public,
            port: 20000,
            keys: Some(Box::new(srtp_keys(
                crate::media::sdes::Suite::AesCm128HmacSha1_80,
            ))),
        },
        |_| {},
    );
    let plain = rtp(1, 160);
    let mut buf = plain.clone();
    buf.resize(2048, 0);
    let (v, _) = t.relay_packet(
        (Side::Private, 0, 10000),
        addr("10.0.1.10:40000"),
        &mut buf,
        plain.len(),
        0,
    );
    assert_eq!(v, Verdict::Drop(DropReason::Srtp));
}

#[test]
fn a_packet_touches_two_cache_lines_known_from_the_index() {
    // The slot (both ends' addressing) and one end's statistics: one line each.
    assert_eq!(std::mem::size_of::<Option<Slot>>(), 64);
    assert_eq!(std::mem::align_of::<Slot>(), 64);
    assert_eq!(std::mem::size_of::<EndStats>(), 64);
    assert_eq!(RelayTable::STREAM_BYTES, 192);
    let (mut t, id) = table();
    let hints = |t: &RelayTable, side, port| {
        let seen = std::cell::RefCell::new(Vec::new());
        t.prefetch_index(side, 0, port, |p| seen.borrow_mut().push(p as usize));
        t.prefetch_stream(side, 0, port, |p| seen.borrow_mut().push(p as usize));
        seen.into_inner()
    };
    // Index entry, slot, the arriving end's statistics; each end its own line.
    let from_carrier = hints(&t, Side::Private, 10000);
    let from_gateway = hints(&t, Side::Public, 20000);
    assert_eq!((from_carrier.len(), from_gateway.len()), (3, 3));
    assert_eq!(from_carrier[1], from_gateway[1], "one slot");
    assert_eq!(from_gateway[2] - from_carrier[2], 64, "an end's line each");
    // A port nobody owns: the index entry only; outside the range: nothing.
    assert_eq!(hints(&t, Side::Private, 10002).len(), 1);
    assert!(hints(&t, Side::Private, 9000).is_empty());
    // Each end's packets land in that end's statistics.
    t.verdict(
        (Side::Public, 0, 20000),
        addr("203.0.113.10:30000"),
        &mut rtp(1, 160),
        0,
    );
    let s = t.get(id).unwrap();
    assert_eq!((s.ends[0].rx.packets, s.ends[1].rx.packets), (0, 1));
    assert!(!t.outgrows_cache());
}
