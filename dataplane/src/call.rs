//! What the engine tells about calls: the outcome of each attempt
//! ([`CallEvent`], for per-tenant statistics) and the record of each
//! finished call with its media figures ([`CallRecord`]).
//!
//! These are messages, not counters: the engine writes them, the relay adds
//! each media line's RTP figures when it releases the call's streams, and the
//! control plane reads them from the engine statistics rings.

use crate::side::Side;
use crate::time::Ms;

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

/// RTP figures of one direction of one media line (RFC 3550 A.3, A.8).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpSummary {
    pub packets: u64,
    pub bytes: u64,
    /// Expected from the sequence numbers minus received.
    pub lost: u64,
    /// Interarrival jitter in milliseconds (8 kHz clock assumed).
    pub jitter_ms: f64,
}

/// What one relayed media line carried each way.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaLine {
    pub from_caller: RtpSummary,
    pub from_callee: RtpSummary,
}

/// One finished call (a dialog): who, how it ended, how long, and its media.
/// The engine writes all but `media`, which the relay fills when it removes
/// the call's streams; the record then goes to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The engine's call number, unique for the life of the process.
    pub call: u64,
    pub tenant: Option<String>,
    pub result: CallResult,
    /// The caller's leg as it saw the call.
    pub caller_side: Side,
    pub caller_call_id: String,
    /// Our leg toward the callee.
    pub callee_call_id: String,
    /// Time from the INVITE to the 2xx, if answered.
    pub setup_ms: Option<Ms>,
    /// Time from the 2xx to the end (0 if never answered).
    pub duration_ms: Ms,
    pub media: Vec<MediaLine>,
}
