//! Properties over generated input (proptest): nothing the network sends
//! makes the SIP scanner, the engine, the flood guard, the frame
//! classifier, reassembly, the RTCP reader or the HEP reader panic; what we
//! write, we read back (SDP rewrite, SDES keys, HEP). The RFC 4475 torture messages, mutated,
//! seed the SIP cases when `../shared/rfc4475` is there.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use proptest::prelude::*;
use sbc_dataplane::engine::MediaSettings;
use sbc_dataplane::guard::{Guard, GuardConfig};
use sbc_dataplane::media::sdes::{Crypto, Suite};
use sbc_dataplane::media::sdp::{rewrite, SdpRepr};
use sbc_dataplane::net;
use sbc_dataplane::sip::SipMessage;
use sbc_dataplane::stats::EngineStats;
use sbc_dataplane::{BySide, EngineConfig, RouteSnapshot, Side, SipEngine};

/// The RFC 4475 messages, when the corpus is beside the repository.
fn torture() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/rfc4475");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "dat"))
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// A SIP-looking message: a start line, some headers, a body; or bytes.
fn sip_message() -> impl Strategy<Value = Vec<u8>> {
    let header = prop_oneof![
        Just("Via: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK1".to_string()),
        Just("Call-ID: a@b".to_string()),
        Just("CSeq: 1 INVITE".to_string()),
        Just("From: <sip:a@10.0.1.10>;tag=1".to_string()),
        Just("To: <sip:b@10.0.0.100>".to_string()),
        Just("Content-Length: 5".to_string()),
        Just("Max-Forwards: 0".to_string()),
        Just("Content-Type: application/sdp".to_string()),
        "[A-Za-z-]{1,12}: [ -~]{0,40}",
    ];
    let start = prop_oneof![
        Just("INVITE sip:1@10.0.0.100 SIP/2.0".to_string()),
        Just("SIP/2.0 200 OK".to_string()),
        Just("ACK sip:1@10.0.0.100 SIP/2.0".to_string()),
        Just("BYE sip:1@10.0.0.100 SIP/2.0".to_string()),
        "[ -~]{0,40}",
    ];
    prop_oneof![
        (
            start,
            prop::collection::vec(header, 0..12),
            "[ -~\r\n]{0,80}"
        )
            .prop_map(
                |(s, hs, body)| format!("{s}\r\n{}\r\n\r\n{body}", hs.join("\r\n")).into_bytes()
            ),
        prop::collection::vec(any::<u8>(), 0..600),
    ]
}

fn engine() -> SipEngine {
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
    cfg.srtp = true;
    SipEngine::new(
        cfg,
        Arc::new(RouteSnapshot::default()),
        Arc::new(EngineStats::default()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_scanner_and_the_engine_take_anything(
        msgs in prop::collection::vec((sip_message(), any::<bool>(), 0u64..200_000), 1..8)
    ) {
        let mut e = engine();
        let mut out = Vec::new();
        for (bytes, public, dt) in msgs {
            let _ = SipMessage::parse(&bytes);
            let side = if public { Side::Public } else { Side::Private };
            let src = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 1, 10), 5060));
            e.handle(dt, side, src, &bytes, &mut out);
            e.tick(dt + 1, &mut out);
        }
    }

    #[test]
    fn mutated_torture_messages_never_panic(pick in any::<prop::sample::Index>(), flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8)) {
        let corpus = torture();
        if corpus.is_empty() {
            return Ok(());
        }
        let mut m = pick.get(&corpus).clone();
        for (at, b) in flips {
            let i = at.index(m.len());
            m[i] = b;
        }
        let _ = SipMessage::parse(&m);
        let mut e = engine();
        let mut out = Vec::new();
        e.handle(0, Side::Private, "10.0.1.10:5060".parse().unwrap(), &m, &mut out);
    }

    #[test]
    fn the_guard_takes_anything(bytes in prop::collection::vec(any::<u8>(), 0..2000), ip in any::<u32>(), now in any::<u32>()) {
        let mut g = Guard::new(GuardConfig::default());
        let _ = g.check(Side::Private, Ipv4Addr::from(ip), &bytes, u64::from(now));
    }

    #[test]
    fn frames_classify_reassemble_and_readdress_without_panic(frame in prop::collection::vec(any::<u8>(), 0..1600)) {
        let ours = [Ipv4Addr::new(10, 0, 0, 100)];
        let _ = net::classify(&frame, &ours);
        let mut r = net::Reassembler::new(4, 1000);
        let _ = r.push(&frame, 0);
        let mut f = frame.clone();
        let _ = net::readdress(&mut f, [2; 6], [3; 6], "10.0.0.100:10000".parse().unwrap(), "10.0.1.10:4000".parse().unwrap());
        let mut f = frame.clone();
        let _ = net::payload_resized(&mut f, 42, frame.len().saturating_sub(42));
        let _ = sbc_dataplane::media::rtcp::report(&frame);
    }

    /// Readdressing in place (both checksums updated incrementally, RFC 1624)
    /// gives the frame a fresh build with the new addresses would: same bytes,
    /// checksums right, whatever the addresses, ports, payload and IP id.
    #[test]
    fn readdress_equals_a_fresh_build(
        a in any::<[u32; 4]>(), p in any::<[u16; 4]>(), id in any::<u16>(),
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let sa = |ip: u32, port: u16| SocketAddrV4::new(Ipv4Addr::from(ip), port);
        let (from, to) = ((sa(a[0], p[0]), sa(a[1], p[1])), (sa(a[2], p[2]), sa(a[3], p[3])));
        let mut frame = vec![0u8; 1600];
        let n = net::build_udp(&mut frame, [1; 6], [2; 6], from.0, from.1, &payload, id).unwrap();
        frame.truncate(n);
        prop_assert!(net::readdress(&mut frame, [3; 6], [4; 6], to.0, to.1));
        let mut fresh = vec![0u8; 1600];
        let m = net::build_udp(&mut fresh, [3; 6], [4; 6], to.0, to.1, &payload, id).unwrap();
        prop_assert_eq!(&frame[..], &fresh[..m]);
        prop_assert!(net::udp_checksum_ok(&frame));
    }

    #[test]
    fn sdp_rewrite_reads_back(ports in prop::collection::vec(1u16..60000, 1..4), hold in any::<bool>()) {
        let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 10.0.1.10\r\ns=-\r\nc=IN IP4 10.0.1.10\r\nt=0 0\r\n");
        for p in &ports {
            sdp.push_str(&format!("m=audio {p} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"));
            if hold {
                sdp.push_str("a=sendonly\r\n");
            }
        }
        let ours: Vec<u16> = ports.iter().map(|p| p.wrapping_add(7) | 1).collect();
        let out = rewrite(sdp.as_bytes(), Ipv4Addr::new(203, 0, 113, 50), &ours).unwrap();
        let back = SdpRepr::parse(&out).unwrap();
        prop_assert_eq!(back.media.len(), ports.len());
        for (m, p) in back.media.iter().zip(&ours) {
            prop_assert_eq!(m.port, *p);
            prop_assert_eq!(m.addr, Ipv4Addr::new(203, 0, 113, 50));
            prop_assert_eq!(m.telephone_event, Some(101));
            prop_assert_eq!(m.on_hold(), hold);
        }
    }

    #[test]
    fn sdes_values_read_back(tag in 1u32..=999_999_999, gcm in any::<bool>(), key in prop::collection::vec(any::<u8>(), 30)) {
        let suite = if gcm { Suite::AeadAes128Gcm } else { Suite::AesCm128HmacSha1_80 };
        let c = Crypto { tag, suite, key: key[..suite.key_len()].to_vec() };
        prop_assert_eq!(Crypto::parse(c.to_value().as_bytes()), Ok(c));
    }

    #[test]
    fn hep_reads_back(
        src in any::<(u32, u16)>(),
        dst in any::<(u32, u16)>(),
        ts_us in 0u64..(u64::from(u32::MAX) * 1_000_000),
        proto in any::<u8>(),
        node_id in any::<u32>(),
        password in proptest::option::of(".{0,20}"),
        correlation in proptest::option::of(".{0,60}"),
        node_name in proptest::option::of("[a-z0-9.-]{0,64}"),
        payload in prop::collection::vec(any::<u8>(), 0..3000),
    ) {
        let v4 = |(ip, port): (u32, u16)| SocketAddrV4::new(Ipv4Addr::from(ip), port);
        let m = net::hep::HepMessage {
            src: v4(src), dst: v4(dst), ts_us, proto, node_id, password, correlation, node_name, payload,
        };
        let bytes = net::hep::encode(&m).unwrap();
        prop_assert_eq!(net::hep::decode(&bytes), Some(m));
    }

    #[test]
    fn hep_takes_any_bytes(data in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut framed = b"HEP3".to_vec();
        framed.extend_from_slice(&((data.len() + 6) as u16).to_be_bytes());
        framed.extend_from_slice(&data);
        for bytes in [&data, &framed] {
            if let Some(m) = net::hep::decode(bytes) {
                if let Some(again) = net::hep::encode(&m) {
                    prop_assert_eq!(net::hep::decode(&again), Some(m));
                }
            }
        }
    }
}
