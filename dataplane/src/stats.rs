//! Counters the engines bump and the control plane reads, without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::call::{CallEvent, CallRecord};
use crate::side::BySide;

/// One monotonically increasing (or gauge) counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        // A gauge never goes below zero, even if an end is counted twice.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// SIP engine counters, and the ring of call outcomes.
#[derive(Debug)]
pub struct EngineStats {
    pub call_events: ArrayQueue<CallEvent>,
    pub call_events_dropped: Counter,
    /// Finished calls with their media, for the control plane.
    pub call_records: ArrayQueue<CallRecord>,
    pub call_records_dropped: Counter,
    pub calls_limited: Counter,
    pub failovers: Counter,
    pub media_timeouts: Counter,
    pub rx_messages: Counter,
    pub tx_messages: Counter,
    pub parse_errors: Counter,
    pub retransmissions_absorbed: Counter,
    pub stray_responses: Counter,
    pub calls_total: Counter,
    pub calls_answered: Counter,
    pub calls_failed: Counter,
    pub calls_rejected: Counter,
    pub calls_up: Counter,
    pub dialogs: Counter,
    pub transactions: Counter,
    pub snapshot_version: Counter,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            call_events: ArrayQueue::new(65_536),
            call_events_dropped: Counter::default(),
            call_records: ArrayQueue::new(16_384),
            call_records_dropped: Counter::default(),
            calls_limited: Counter::default(),
            failovers: Counter::default(),
            media_timeouts: Counter::default(),
            rx_messages: Counter::default(),
            tx_messages: Counter::default(),
            parse_errors: Counter::default(),
            retransmissions_absorbed: Counter::default(),
            stray_responses: Counter::default(),
            calls_total: Counter::default(),
            calls_answered: Counter::default(),
            calls_failed: Counter::default(),
            calls_rejected: Counter::default(),
            calls_up: Counter::default(),
            dialogs: Counter::default(),
            transactions: Counter::default(),
            snapshot_version: Counter::default(),
        }
    }
}

impl EngineStats {
    /// Hands a finished call to the control plane (counted if the ring is full).
    pub fn record(&self, record: CallRecord) {
        if self.call_records.push(record).is_err() {
            self.call_records_dropped.inc();
        }
    }
}

/// I/O backend counters (the L2/L3 ones are the DPDK backend's; zero on
/// the socket backend, where the kernel does that work).
#[derive(Debug, Default)]
pub struct IoStats {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    pub rx_ring_full: Counter,
    pub rx_truncated: Counter,
    pub tx_errors: Counter,
    pub arp_replies: Counter,
    pub arp_requests: Counter,
    pub icmp_echo_replies: Counter,
    /// Frames dropped by [`crate::net::Reason`]: truncated, not for us,
    /// bad checksum, unsupported.
    pub dropped: [Counter; crate::net::REASONS],
    /// IPv4 datagrams for our SIP port put back together from fragments,
    /// and reassembled datagrams for anything else (dropped).
    pub reassembled: Counter,
    pub fragments_dropped: Counter,
    /// Packets dropped because the next hop's MAC was unknown.
    pub arp_unresolved: Counter,
    /// Poll-loop iterations that found work, and all of them.
    pub busy_polls: Counter,
    pub polls: Counter,
    /// The driver's counters of the private and the public port (DPDK),
    /// copied once a second.
    pub ports: BySide<PortCounters>,
}

/// One DPDK port's driver counters.
#[derive(Debug, Default)]
pub struct PortCounters {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    pub rx_missed: Counter,
    pub rx_errors: Counter,
    pub tx_errors: Counter,
    pub rx_no_mbuf: Counter,
}

/// Media relay counters.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub relayed: Counter,
    pub dropped_unknown_port: Counter,
    pub dropped_wrong_source: Counter,
    pub dropped_no_destination: Counter,
    pub streams: Counter,
    /// Relay sockets carrying a stream.
    pub sockets: Counter,
    /// Relay sockets kept bound between calls.
    pub sockets_idle: Counter,
    pub bind_errors: Counter,
    pub tx_errors: Counter,
    pub commands_dropped: Counter,
}
