//! Counters the engines bump and the control plane reads, without locks.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

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

/// How a call attempt ended, for per-tenant call statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallResult {
    Answered,
    Failed,
    Cancelled,
    Rejected,
    LimitExceeded,
    /// Answered, then ended by the SBC because its media stopped.
    MediaTimeout,
}

impl CallResult {
    pub fn name(self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Failed => "failed",
            CallResult::Cancelled => "cancelled",
            CallResult::Rejected => "rejected",
            CallResult::LimitExceeded => "limit_exceeded",
            CallResult::MediaTimeout => "media_timeout",
        }
    }
}

/// One call outcome, sent from the engine to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEvent {
    pub tenant: Option<String>,
    pub result: CallResult,
}

/// SIP engine counters, and the ring of call outcomes.
#[derive(Debug)]
pub struct EngineStats {
    pub call_events: ArrayQueue<CallEvent>,
    pub call_events_dropped: Counter,
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

/// I/O backend counters.
#[derive(Debug, Default)]
pub struct IoStats {
    pub rx_packets: Counter,
    pub tx_packets: Counter,
    pub rx_ring_full: Counter,
    pub rx_truncated: Counter,
    pub tx_errors: Counter,
}

/// Media relay counters.
#[derive(Debug, Default)]
pub struct MediaStats {
    pub relayed: Counter,
    pub dropped_unknown_port: Counter,
    pub dropped_wrong_source: Counter,
    pub dropped_no_destination: Counter,
    pub streams: Counter,
    pub sockets: Counter,
    pub bind_errors: Counter,
    pub tx_errors: Counter,
    pub commands_dropped: Counter,
}
