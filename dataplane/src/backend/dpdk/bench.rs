//! The relay ceiling benchmark's harness (feature `bench`), used by
//! `perf/src/bin/dpdk_relay.rs`: the real poll loop over two started ports
//! with a table of streams installed and static neighbours, counting what it
//! received, relayed, sent, and every reason it did not.

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::side_io::SideIo;
use super::{Poller, Shared};
use crate::dpdk::{Mempool, Port};
use crate::media::{RelayTable, Stream};
use crate::net::{self, ArpCache, Mac};
use crate::side::BySide;
use crate::time::Ms;

/// What [`bench_relay`] measured, with every reason a received frame was
/// not relayed (all zero when the run relayed everything it received).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayRun {
    /// Frames received on both ports.
    pub received: u64,
    /// Frames sent on both ports.
    pub sent: u64,
    /// Wall-clock seconds the poll loop ran.
    pub seconds: f64,
    /// Poll-loop iterations.
    pub polls: u64,
    /// Poll-loop iterations that found work.
    pub busy_polls: u64,
    /// Packets the relay table gave a relay verdict.
    pub relayed: u64,
    /// Frames dropped before the relay, by [`net::Reason`].
    pub dropped: [u64; net::REASONS],
    /// Packets the relay table refused: unknown port, wrong source, no destination.
    pub relay_drops: [u64; crate::media::relay::DROP_REASONS],
    /// Packets dropped because the next hop's MAC was unknown.
    pub arp_unresolved: u64,
    /// Packets that could not be sent (full TX ring, no mbuf).
    pub tx_errors: u64,
    /// Added latency of the relayed packets: from the start of the poll
    /// iteration that received them (before its RX burst) to the end of its
    /// TX bursts, in nanoseconds, at the quantiles 0.5, 0.9, 0.99, 0.999 and
    /// 1 (CLOCK_MONOTONIC, which Linux reads from the TSC through the vDSO).
    pub latency_ns: [(f64, u64); 5],
}

/// Width of one [`AddedLatency`] bucket, in nanoseconds.
const BUCKET_NS: u64 = 25;
/// Buckets: 25 ns wide up to 100 µs; the last one holds everything longer.
const BUCKETS: usize = 4_000;

/// A histogram of added per-packet latency with 25 ns buckets up to 100 µs
/// (the last bucket holds everything longer), filled by the poll loop of
/// [`bench_relay`] once per busy iteration with the count of packets it
/// relayed: no allocation after [`AddedLatency::new`].
#[derive(Debug, Clone)]
pub struct AddedLatency {
    counts: Vec<u64>,
    max_ns: u64,
}

impl Default for AddedLatency {
    fn default() -> Self {
        Self::new()
    }
}

impl AddedLatency {
    /// An empty histogram.
    pub fn new() -> AddedLatency {
        AddedLatency {
            counts: vec![0; BUCKETS],
            max_ns: 0,
        }
    }

    /// `packets` packets waited `ns` nanoseconds.
    pub fn record(&mut self, ns: u64, packets: u64) {
        let i = usize::try_from(ns / BUCKET_NS).map_or(BUCKETS - 1, |i| i.min(BUCKETS - 1));
        if let Some(c) = self.counts.get_mut(i) {
            *c += packets;
        }
        self.max_ns = self.max_ns.max(ns);
    }

    /// The upper edge (ns) of the bucket holding quantile `q` (0..=1) of the
    /// packets; the longest seen for `q` = 1 or past the last bucket; 0 when
    /// empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total: u64 = self.counts.iter().sum();
        if total == 0 {
            return 0;
        }
        if q >= 1.0 {
            return self.max_ns;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return if i == BUCKETS - 1 {
                    self.max_ns
                } else {
                    (i as u64 + 1) * BUCKET_NS
                };
            }
        }
        self.max_ns
    }
}

/// Addresses, MACs and static neighbours of one side for [`bench_relay`].
#[derive(Debug, Clone)]
pub struct BenchSide {
    /// The MAC the side answers to; `None`: the port's own. A replayed
    /// capture's frames are addressed to a MAC the vdev may not have.
    pub mac: Option<Mac>,
    /// The port's addresses: lane i is `ips[i]`.
    pub ips: Vec<Ipv4Addr>,
    /// Prefix length of the side's subnet, in bits.
    pub prefix: u8,
    /// Next hops known without ARP.
    pub neighbours: Vec<(Ipv4Addr, Mac)>,
}

/// The relay ceiling benchmark's harness (`perf/src/bin/dpdk_relay.rs`):
/// the poll loop itself, on the calling lcore, over two started ports, with
/// `streams` installed in a table of `lanes` addresses per side, until
/// `seconds` have passed.
pub fn bench_relay(
    ports: BySide<Port>,
    pool: Mempool,
    sides: BySide<BenchSide>,
    lanes: u8,
    port_range: (u16, u16),
    streams: Vec<Stream>,
    seconds: f64,
) -> RelayRun {
    let shared = Arc::new(Shared::new(1024));
    let mut table = RelayTable::with_lanes(lanes, port_range.0, port_range.1);
    for s in streams {
        table.install(s);
    }
    let sides = BySide::from_fn(|side| {
        let s = &sides[side];
        let mut arp = ArpCache::new(s.neighbours.len() * 2 + 8, Ms::MAX);
        for (ip, m) in &s.neighbours {
            arp.learn(*ip, *m, 0);
        }
        let mac = s
            .mac
            .unwrap_or_else(|| ports[side].mac().unwrap_or_default());
        SideIo::new(s.ips.clone(), 5060, s.prefix, None, mac, arp)
    });
    let mut poller = Poller::new(ports, pool, shared.clone(), sides, table);
    poller.latency = Some(AddedLatency::new());
    let stopper = shared.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        stopper.quit.store(true, Ordering::Relaxed);
    });
    let start = Instant::now();
    poller.run();
    let elapsed = start.elapsed().as_secs_f64();
    let _ = timer.join();
    let io = &shared.io;
    RelayRun {
        received: io.rx_packets.get(),
        sent: io.tx_packets.get(),
        seconds: elapsed,
        polls: io.polls.get(),
        busy_polls: io.busy_polls.get(),
        relayed: poller.table.relayed,
        dropped: [
            net::Reason::Truncated,
            net::Reason::NotForUs,
            net::Reason::BadChecksum,
            net::Reason::Unsupported,
        ]
        .map(|r| io.dropped(r).get()),
        relay_drops: poller.table.drops,
        arp_unresolved: io.arp_unresolved.get(),
        tx_errors: io.tx_errors.get(),
        latency_ns: [0.5, 0.9, 0.99, 0.999, 1.0]
            .map(|q| (q, poller.latency.as_ref().map_or(0, |l| l.quantile(q)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_bucket_edges() {
        let mut l = AddedLatency::new();
        assert_eq!(l.quantile(0.5), 0);
        l.record(10, 90); // bucket 0: up to 25 ns
        l.record(1_000, 9); // bucket 40: up to 1,025 ns
        l.record(1_000_000, 1); // past the last bucket
        assert_eq!(l.quantile(0.5), 25);
        assert_eq!(l.quantile(0.9), 25);
        assert_eq!(l.quantile(0.95), 1_025);
        assert_eq!(l.quantile(0.99), 1_025);
        assert_eq!(l.quantile(0.999), 1_000_000);
        assert_eq!(l.quantile(1.0), 1_000_000);
    }
}
