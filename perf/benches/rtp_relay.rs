//! Per-packet relay verdict with 1k, 25k and 100k installed streams, against
//! a std HashMap lookup of the same keys as the in-run reference. 25k RTP
//! streams (even ports) fill a 10000-60000 range on one media address per
//! side; 100k use four addresses ("lanes") per side.
//!
//! `cargo bench -p sbc-perf --bench rtp_relay`

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{criterion_group, criterion_main, Criterion};
use sbc_dataplane::media::relay::{End, RelayTable, Stream};
use sbc_dataplane::Side;

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend(seq.to_be_bytes());
    p.extend(160u32.wrapping_mul(u32::from(seq)).to_be_bytes());
    p.extend([0; 4]);
    p.extend([0xd5; 160]);
    p
}

fn carrier(i: u32) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(0x0a00_0100 + (i % 250)),
        20_000 + (i % 20_000) as u16,
    )
}

const PER_LANE: u32 = 25_000;

/// Stream i's lane and port.
fn place(i: u32) -> (u8, u16) {
    ((i / PER_LANE) as u8, 10_000 + 2 * (i % PER_LANE) as u16)
}

fn table(n: u32) -> RelayTable {
    let mut t = RelayTable::with_lanes(n.div_ceil(PER_LANE) as u8, 10_000, 60_000);
    for i in 0..n {
        let (lane, port) = place(i);
        let s = Stream {
            ends: [
                End::on_lane(Side::Private, lane, port, Some(carrier(i))),
                End::on_lane(
                    Side::Public,
                    lane,
                    port,
                    Some(SocketAddrV4::new(Ipv4Addr::new(203, 0, 113, 10), 30_000)),
                ),
            ],
            rtcp: false,
            last_active: 0,
        };
        t.install(s).expect("ports free");
    }
    t
}

fn benches(c: &mut Criterion) {
    let mut pkt = rtp(1);
    let mut g = c.benchmark_group("relay_verdict");
    for n in [1_000u32, 25_000, 100_000] {
        let mut t = table(n);
        // The table's memory: one stream slot per stream, one u32 per port
        // of each (side, lane).
        let lanes = n.div_ceil(PER_LANE) as usize;
        let bytes = n as usize * std::mem::size_of::<Option<Stream>>() + 2 * lanes * 50_001 * 4;
        eprintln!(
            "{n} streams: {} bytes per stream slot, about {:.1} MiB in all",
            std::mem::size_of::<Option<Stream>>(),
            bytes as f64 / (1 << 20) as f64
        );
        let mut i = 0u32;
        g.bench_function(format!("ours/{n}"), |b| {
            b.iter(|| {
                i = (i.wrapping_mul(2_654_435_761).wrapping_add(1)) % n;
                let (lane, port) = place(i);
                black_box(t.verdict(
                    (Side::Private, lane, port),
                    carrier(i),
                    black_box(&mut pkt),
                    0,
                ))
            })
        });
        let map: HashMap<(u8, u16), u32> = (0..n).map(|i| (place(i), i)).collect();
        let mut j = 0u32;
        g.bench_function(format!("hashmap_lookup_only (reference)/{n}"), |b| {
            b.iter(|| {
                j = (j.wrapping_mul(2_654_435_761).wrapping_add(1)) % n;
                black_box(map.get(&place(j)))
            })
        });
    }
    g.finish();
}

criterion_group!(relay, benches);
criterion_main!(relay);
