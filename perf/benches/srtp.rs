//! SRTP per packet: the relay's libsrtp2 sessions (`sbc_dataplane::srtp`,
//! in place, no allocation) against webrtc-srtp's `Context` (pure Rust,
//! a new `Bytes` per packet), protecting and unprotecting the same 20 ms
//! G.711 packet (12-byte header, 160-byte payload) with
//! AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM. `cargo bench -p sbc-perf
//! --features srtp --bench srtp`; the ratio between the two in one run is
//! the figure (perf/README.md).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sbc_dataplane::media::sdes::Suite;
use sbc_dataplane::srtp::{Role, SrtpSession};
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

criterion_group!(benches, bench);
criterion_main!(benches);
