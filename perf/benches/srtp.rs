//! SRTP per packet: the relay's libsrtp2 sessions (`sbc_dataplane::srtp`,
//! in place, no allocation) against webrtc-srtp's `Context` (pure Rust,
//! a new `Bytes` per packet), protecting and unprotecting the same 20 ms
//! G.711 packet (12-byte header, 160-byte payload) with
//! AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM. `cargo bench -p sbc-perf
//! --features srtp --bench srtp`; the ratio between the two in one run is
//! the figure (perf/README.md).
//!
//! `srtp_relay_path`: what the DPDK lcore does per relayed frame toward an
//! SRTP gateway (`RelayTable::relay_packet` on the frame's payload with room
//! for the tag, `net::payload_resized`, `net::readdress`) against the same
//! frame through a stream without keys, in the same run.

use std::net::SocketAddrV4;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sbc_dataplane::media::relay::{End, RelayTable, Stream};
use sbc_dataplane::media::sdes::{Crypto, Suite};
use sbc_dataplane::media::{MediaCmd, SrtpKeys, Verdict};
use sbc_dataplane::net;
use sbc_dataplane::srtp::{Role, SrtpSession};
use sbc_dataplane::Side;
use webrtc_srtp::context::Context;
use webrtc_srtp::protection_profile::ProtectionProfile;

fn packet(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00, 0, 0, 0, 0, 0, 160, 0x12, 0x34, 0x56, 0x78];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend(std::iter::repeat_n(0xd5u8, 160));
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("srtp_protect");
    g.throughput(Throughput::Elements(1));
    for (suite, profile) in [
        (
            Suite::AesCm128HmacSha1_80,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ),
        (Suite::AeadAes128Gcm, ProtectionProfile::AeadAes128Gcm),
    ] {
        let key: Vec<u8> = (0..suite.key_len() as u8).collect();
        let (master, salt) = key.split_at(16);
        let mut ours = SrtpSession::new(suite, &key, Role::Protect).unwrap();
        let mut buf = vec![0u8; 256];
        let mut seq = 0u16;
        g.bench_function(format!("libsrtp/{}", suite.name()), |b| {
            b.iter_batched(
                || {
                    seq = seq.wrapping_add(1);
                    packet(seq)
                },
                |p| {
                    buf[..p.len()].copy_from_slice(&p);
                    ours.protect_rtp(&mut buf, p.len()).unwrap()
                },
                BatchSize::SmallInput,
            )
        });
        let mut theirs = Context::new(master, salt, profile, None, None).unwrap();
        let mut seq = 0u16;
        g.bench_function(format!("webrtc-srtp/{}", suite.name()), |b| {
            b.iter_batched(
                || {
                    seq = seq.wrapping_add(1);
                    packet(seq)
                },
                |p| theirs.encrypt_rtp(&p).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A relay table with one stream: carrier 10.0.1.10:40000 at our private
/// 10000, gateway 203.0.113.10:30000 at our public 20000, keyed for `suite`
/// on the public end when given.
fn relay_table(suite: Option<Suite>) -> RelayTable {
    let sa = |s: &str| s.parse::<SocketAddrV4>().unwrap();
    let mut t = RelayTable::new(10_000, 30_000);
    t.install(Stream {
        ends: [
            End::new(Side::Private, 10_000, Some(sa("10.0.1.10:40000"))),
            End::new(Side::Public, 20_000, Some(sa("203.0.113.10:30000"))),
        ],
        rtcp: false,
        last_active: 0,
    })
    .unwrap();
    if let Some(suite) = suite {
        let key = |b: u8| Crypto {
            tag: 1,
            suite,
            key: vec![b; suite.key_len()],
        };
        t.apply(
            MediaCmd::Srtp {
                side: Side::Public,
                port: 20_000,
                keys: Some(Box::new(SrtpKeys {
                    inbound: key(1),
                    outbound: key(2),
                })),
            },
            |_| {},
        );
    }
    t
}

fn relay_path(c: &mut Criterion) {
    let sa = |s: &str| s.parse::<SocketAddrV4>().unwrap();
    let (carrier, ours) = (sa("10.0.1.10:40000"), sa("10.0.0.100:10000"));
    let mut frame = vec![0u8; 2048];
    let n = net::build_udp(
        &mut frame,
        [2, 0, 0, 0, 1, 1],
        [2, 0, 0, 0, 0, 1],
        carrier,
        ours,
        &packet(0),
        1,
    )
    .unwrap();
    let off = n - packet(0).len();
    let len = n - off;
    let mut g = c.benchmark_group("srtp_relay_path");
    g.throughput(Throughput::Elements(1));
    for (name, suite) in [
        ("plain", None),
        ("AES_CM_128_HMAC_SHA1_80", Some(Suite::AesCm128HmacSha1_80)),
        ("AEAD_AES_128_GCM", Some(Suite::AeadAes128Gcm)),
    ] {
        let mut t = relay_table(suite);
        let mut buf = frame.clone();
        let mut seq = 0u16;
        g.bench_function(name, |b| {
            b.iter(|| {
                seq = seq.wrapping_add(1);
                buf[..n].copy_from_slice(&frame[..n]);
                buf[off + 2..off + 4].copy_from_slice(&seq.to_be_bytes());
                let pkt = &mut buf[off..off + len + Suite::MAX_OVERHEAD];
                let (v, m) = t.relay_packet((Side::Private, 0, 10_000), carrier, pkt, len, 0);
                let Verdict::Relay { to, port, .. } = v else {
                    panic!("{v:?}");
                };
                if m != len {
                    assert!(net::payload_resized(&mut buf, off, m));
                }
                net::readdress(
                    &mut buf,
                    [2, 0, 0, 0, 0, 2],
                    [2, 0, 0, 0, 2, 10],
                    SocketAddrV4::new("203.0.113.50".parse().unwrap(), port),
                    to,
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, relay_path);
criterion_main!(benches);
