//! Counters the engines bump and the control plane reads, without locks.

use std::sync::atomic::{AtomicU64, Ordering};

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

/// SIP engine counters.
#[derive(Debug, Default)]
pub struct EngineStats {
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

/// I/O backend counters.
#[derive(Debug, Default)]
pub struct IoStats {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    pub rx_ring_full: Counter,
    pub rx_truncated: Counter,
    pub tx_errors: Counter,
}
