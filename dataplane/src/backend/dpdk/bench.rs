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
    }
}
