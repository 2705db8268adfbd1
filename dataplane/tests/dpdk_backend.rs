//! The DPDK backend's poll loop on a real EAL (`--no-huge --no-pci`, two
//! lcores) with `net_pcap` ports: the private port replays frames we wrote
//! (an ARP request for our address, a ping, an OPTIONS, a frame for another
//! host, a frame with a broken checksum) and every frame the SBC sends lands
//! in a pcap we then read. One EAL per process: one test.
#![cfg(feature = "dpdk")]

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sbc_dataplane::backend::dpdk::{start, DpdkConfig};
use sbc_dataplane::engine::MediaSettings;
use sbc_dataplane::net::{self, Kind};
use sbc_dataplane::{BySide, EngineConfig, RouteSnapshot};

const CARRIER_MAC: [u8; 6] = [2, 0, 0, 0, 1, 10];

fn sa(s: &str) -> SocketAddrV4 {
    s.parse().unwrap()
}

fn frames_of(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let n = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(pcap[at + 16..at + 16 + n].to_vec());
        at += 16 + n;
    }
    out
}

fn udp(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = net::build_udp(
        &mut buf,
        CARRIER_MAC,
        net::BROADCAST,
        sa(src),
        sa(dst),
        payload,
        1,
    )
    .unwrap();
    buf.truncate(n);
    buf
}

fn ping() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 20 + 16];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&CARRIER_MAC);
    f[12..14].copy_from_slice(&[8, 0]);
    let ip = &mut f[14..];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&36u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 1;
    ip[12..16].copy_from_slice(&[10, 0, 1, 10]);
    ip[16..20].copy_from_slice(&[10, 0, 0, 100]);
    let c = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip[20] = 8;
    ip[24..36].copy_from_slice(b"sbc-ping-012");
    let c = checksum(&ip[20..36]);
    ip[22..24].copy_from_slice(&c.to_be_bytes());
    f
}

/// Splits a UDP frame into two IPv4 fragments.
fn fragments(frame: &[u8]) -> Vec<Vec<u8>> {
    let body = &frame[34..];
    let cut = 1480;
    [(0, &body[..cut], true), (cut, &body[cut..], false)]
        .iter()
        .map(|&(off, chunk, more)| {
            let mut f = frame[..34].to_vec();
            f.extend_from_slice(chunk);
            let ip = &mut f[14..];
            ip[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
            let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
            ip[6..8].copy_from_slice(&flags.to_be_bytes());
            ip[10..12].fill(0);
            let c = checksum(&ip[..20]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            f
        })
        .collect()
}

fn checksum(b: &[u8]) -> u16 {
    let mut acc: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

#[test]
fn poll_loop_answers_arp_ping_and_sip_and_drops_the_rest() {
    let dir = std::env::temp_dir().join(format!("sbc-dpdk-backend-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut arp = vec![0u8; 60];
    net::arp_request(
        &mut arp,
        CARRIER_MAC,
        "10.0.1.10".parse().unwrap(),
        "10.0.0.100".parse().unwrap(),
    )
    .unwrap();
    let options = b"OPTIONS sip:10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.1.10:5060;branch=z9hG4bK-dp1\r\nMax-Forwards: 70\r\nFrom: <sip:c@10.0.1.10>;tag=a\r\nTo: <sip:10.0.0.100>\r\nCall-ID: dp1@10.0.1.10\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let mut broken = udp("10.0.1.10:5060", "10.0.0.100:5060", options);
    let last = broken.len() - 1;
    broken[last] ^= 0xff; // the UDP checksum no longer matches
                          // An OPTIONS larger than the MTU, in two fragments (the second first); its
                          // Via, echoed in the 200, makes the answer leave in fragments too.
    let big = String::from_utf8_lossy(options).replace(
        "branch=z9hG4bK-dp1",
        &format!("branch=z9hG4bK-dp1;x-pad={}", "p".repeat(1800)),
    );
    let big = big.replace("dp1@", "dp2@");
    let mut frags = fragments(&udp("10.0.1.10:5060", "10.0.0.100:5060", big.as_bytes()));
    frags.reverse();
    let mut rx = vec![
        arp,
        ping(),
        udp("10.0.1.10:5060", "10.0.0.100:5060", options),
        udp("10.0.1.10:5060", "10.0.0.99:5060", options), // another host's
        broken,
    ];
    rx.extend(frags);
    let (priv_rx, pub_rx) = (dir.join("priv_rx.pcap"), dir.join("pub_rx.pcap"));
    let (priv_tx, pub_tx) = (dir.join("priv_tx.pcap"), dir.join("pub_tx.pcap"));
    std::fs::write(&priv_rx, net::pcap_file(&rx)).unwrap();
    std::fs::write(&pub_rx, net::pcap_file(std::iter::empty::<&[u8]>())).unwrap();
    let mut engine = EngineConfig::new(sa("10.0.0.100:5060"), sa("203.0.113.50:5080"));
    engine.media = Some(MediaSettings {
        ip: BySide::new(
            "10.0.0.100".parse().unwrap(),
            "203.0.113.50".parse().unwrap(),
        ),
        ports: BySide::new((10000, 20000), (10000, 20000)),
        timeout: 60_000,
        hold_timeout: None,
        max_sessions: None,
    });
    let settings = DpdkConfig {
        eal_args: [
            "--no-huge",
            "--no-pci",
            "-m",
            "256",
            "--no-shconf",
            &format!("--file-prefix=sbc-bk-{}", std::process::id()),
            "-l",
            "0,1",
            &format!(
                "--vdev=net_pcap0,rx_pcap={},tx_pcap={}",
                priv_rx.display(),
                priv_tx.display()
            ),
            &format!(
                "--vdev=net_pcap1,rx_pcap={},tx_pcap={}",
                pub_rx.display(),
                pub_tx.display()
            ),
            "--log-level=*:warning",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        ports: BySide::new(0, 1),
        prefixes: BySide::new(16, 24),
        next_hops: BySide::new(None, None),
        idle_sleep_us: 0,
        exception_iface: None,
        engine,
        sip_core: None,
        ring_size: 256,
    };
    let started = Instant::now();
    let backend = start(settings, Arc::new(RouteSnapshot::default())).unwrap();
    let io = backend.io();
    let deadline = Instant::now() + Duration::from_secs(5);
    while io.tx_packets.get() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    backend.stop();
    // The poll lcore's busy time: some, and less than it ran.
    let ran_us = started.elapsed().as_micros() as u64;
    assert!(io.busy_polls.get() >= 1);
    assert!(
        io.busy_us.get() > 0 && io.busy_us.get() < ran_us,
        "busy_us {} of {ran_us} us",
        io.busy_us.get()
    );

    let sent = frames_of(&std::fs::read(&priv_tx).unwrap());
    let carrier = "10.0.1.10".parse().unwrap();
    let kinds: Vec<Kind> = sent.iter().map(|f| net::classify(f, &[carrier])).collect();
    assert_eq!(
        sent.len(),
        5,
        "ARP reply, echo reply, 200 OK, 200 OK in two fragments: {kinds:?}"
    );
    assert!(
        matches!(
            kinds[0],
            Kind::Arp { request: false, sender_ip, target_ip, .. }
                if sender_ip == "10.0.0.100".parse::<std::net::Ipv4Addr>().unwrap() && target_ip == carrier
        ),
        "{:?}",
        kinds[0]
    );
    assert_eq!(&sent[0][0..6], &CARRIER_MAC);
    // The echo reply goes back to the carrier (classify sees it as not an echo request).
    assert_eq!(&sent[1][0..6], &CARRIER_MAC);
    assert_eq!(sent[1][14 + 20], 0, "ICMP echo reply");
    assert!(sent[1].ends_with(b"sbc-ping-012"));
    let Kind::Udp {
        src,
        dst,
        payload: (off, len),
        ..
    } = kinds[2]
    else {
        panic!("{:?}", kinds[2]);
    };
    assert_eq!((src, dst), (sa("10.0.0.100:5060"), sa("10.0.1.10:5060")));
    let reply = String::from_utf8_lossy(&sent[2][off..off + len]).into_owned();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
    assert_eq!(
        &sent[2][0..6],
        &CARRIER_MAC,
        "learnt from its ARP request to us"
    );
    assert!(frames_of(&std::fs::read(&pub_tx).unwrap()).is_empty());
    assert_eq!(io.arp_replies.get(), 1);
    assert_eq!(io.icmp_echo_replies.get(), 1);
    assert_eq!(io.dropped(net::Reason::NotForUs).get(), 1);
    assert_eq!(io.dropped(net::Reason::BadChecksum).get(), 1);
    // The fragments' IPv4 payloads (20-byte headers) joined: the UDP datagram.
    let ip_payload = |f: &[u8]| {
        let total = usize::from(u16::from_be_bytes([f[16], f[17]]));
        f[34..14 + total].to_vec()
    };
    assert_eq!(sent[3][20] & 0x20, 0x20, "more fragments");
    let datagram = [ip_payload(&sent[3]), ip_payload(&sent[4])].concat();
    let reply = String::from_utf8_lossy(&datagram[8..]).into_owned();
    assert!(
        reply.starts_with("SIP/2.0 200") && reply.contains("dp2@") && reply.contains("x-pad=ppp"),
        "{reply}"
    );
    assert_eq!(io.tx_fragmented.get(), 1);
    assert_eq!(io.reassembled.get(), 1);
    assert_eq!(backend.stats.rx_messages.get(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}
