//! What the engine tells about calls: the outcome of each attempt
//! ([`CallEvent`], for per-tenant statistics) and the record of each
//! finished call with its media figures ([`CallRecord`]).
//!
//! These are messages, not counters: the engine writes them, the relay adds
//! each media line's RTP figures when it releases the call's streams, and the
//! control plane reads them from the engine statistics rings.

use std::net::SocketAddr;

use crate::side::Side;
use crate::time::Ms;

/// How a call attempt ended, for per-tenant call statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CallResult {
    /// A 2xx answered the INVITE (the event is sent when the dialog is confirmed); in a
    /// [`CallRecord`], an answered call that did not end by media timeout.
    Answered,
    /// The attempt ended without an answer: a non-2xx final response relayed, or our own (408 on
    /// a timeout, 503 when no gateway is left).
    Failed,
    /// The INVITE was cancelled before an answer: by the caller's CANCEL, or by us when it rang
    /// longer than Timer C.
    Cancelled,
    /// Routing refused the INVITE (403 for an unknown source, 503 for no destination); no dialog is
    /// made, so no [`CallRecord`] follows.
    Rejected,
    /// The tenant's `max_cps` or `max_concurrent` limit refused the INVITE; no [`CallRecord`]
    /// follows.
    LimitExceeded,
    /// Answered, then ended by the SBC because its media stopped.
    MediaTimeout,
}

impl CallResult {
    /// The snake_case name under which the control plane reports this result (`answered`, `failed`,
    /// `cancelled`, `rejected`, `limit_exceeded`, `media_timeout`).
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
    /// The tenant the call was routed for; `None` when routing identified none.
    pub tenant: Option<String>,
    /// The side the caller's INVITE arrived on (private: an inbound call
    /// from a carrier).
    pub caller_side: Option<Side>,
    /// How the attempt ended.
    pub result: CallResult,
}

/// RTP figures of one direction of one media line (RFC 3550 A.3, A.8).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpSummary {
    /// Datagrams accepted from the source (RTP version 2 or not).
    pub packets: u64,
    /// Their bytes: the UDP payload, RTP header included.
    pub bytes: u64,
    /// Expected from the sequence numbers minus received.
    pub lost: u64,
    /// Interarrival jitter in milliseconds (8 kHz clock assumed).
    pub jitter_ms: f64,
    /// RFC 4733 telephone events (DTMF digits) seen: counted, never the digits.
    pub dtmf_events: u64,
}

/// What one relayed media line carried each way.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MediaLine {
    /// What the caller sent (received on our caller-side port).
    pub from_caller: RtpSummary,
    /// What the callee sent (received on our callee-side port).
    pub from_callee: RtpSummary,
}

/// A step of a call's life for the log (one line each): the control plane
/// writes them with `tracing`, and the end from the [`CallRecord`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallStep {
    /// A new call was routed: its INVITE goes to `to`.
    Routed {
        /// The engine's call number.
        call: u64,
        /// The caller's Call-ID.
        call_id: String,
        /// Our leg's Call-ID toward the callee.
        callee_call_id: String,
        /// The tenant identified, if any.
        tenant: Option<String>,
        /// The side the caller is on.
        caller_side: Side,
        /// Where the INVITE goes first.
        to: SocketAddr,
    },
    /// The INVITE moves on from `from` (it answered `code`; 408: no answer
    /// in time) to `to`.
    FailedOver {
        /// The engine's call number.
        call: u64,
        /// The destination given up.
        from: SocketAddr,
        /// Its answer, 408 for none.
        code: u16,
        /// The next destination.
        to: SocketAddr,
    },
    /// The callee answered after `setup_ms`.
    Answered {
        /// The engine's call number.
        call: u64,
        /// Time from the INVITE to the 2xx.
        setup_ms: Ms,
    },
}

/// Bytes of an RTCP packet kept for capture ([`RtcpCopy`]); the rest of a
/// longer compound packet is left out.
pub const RTCP_COPY: usize = 512;

/// An RTCP packet the relay received, copied for HEP while a collector is
/// set (`EngineStats::rtcp_on`), in a fixed buffer: the relay allocates
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpCopy {
    /// When it was received, µs since the Unix epoch.
    pub ts_us: u64,
    /// The side it arrived on.
    pub side: Side,
    /// Our port it arrived at (RTP + 1, or the RTP port itself with
    /// rtcp-mux).
    pub port: u16,
    /// Its sender.
    pub src: std::net::SocketAddrV4,
    /// Our address it arrived at.
    pub dst: std::net::SocketAddrV4,
    /// How many bytes of `data` are the packet.
    pub len: u16,
    /// The packet's first [`RTCP_COPY`] bytes.
    pub data: [u8; RTCP_COPY],
}

/// Which call a media line's relay ports belong to, for correlating its
/// RTCP with the call's SIP in Homer: sent by the engine when it opens the
/// ports, while `EngineStats::rtcp_on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaCall {
    /// Our RTP port on each side: the caller's end, the callee's.
    pub ports: [(Side, u16); 2],
    /// The Call-ID of the caller's leg (HEP's correlation id of the call).
    pub call_id: String,
}

/// One datagram as it crossed the wire, for HEP and pcap capture: SIP
/// copied on the engine thread, relayed media by the relay, only while a
/// capture is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// When it was received or sent, µs since the Unix epoch.
    pub ts_us: u64,
    /// Its source (ours for what we sent).
    pub src: SocketAddr,
    /// Its destination (ours for what we received).
    pub dst: SocketAddr,
    /// The UDP payload.
    pub data: Vec<u8>,
    /// For SIP: the Call-ID of the call's caller leg, the same for the
    /// messages of both legs (HEP's correlation id); `None` for media.
    pub correlation: Option<String>,
}

/// A call in progress as `GET /api/v1/calls/active` shows it (the
/// engine's part; the relay adds the RTP figures by port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCall {
    /// The engine's call number.
    pub call: u64,
    /// The tenant, if any.
    pub tenant: Option<String>,
    /// The side the caller is on.
    pub caller_side: Side,
    /// The caller's Call-ID.
    pub call_id: String,
    /// The caller's address.
    pub caller_addr: SocketAddr,
    /// The callee leg's address (the gateway of an inbound call).
    pub callee_addr: SocketAddr,
    /// Answered (a 2xx seen) or still ringing.
    pub answered: bool,
    /// Engine time of its INVITE (ms).
    pub started_ms: Ms,
    /// Our relay ports per media line: the caller's side, the callee's.
    pub ports: Vec<[u16; 2]>,
}

/// What one stream's two ends received so far, by the caller-side port of
/// its RTP (`RelayTable::figures`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LiveMedia {
    /// The side of the caller's end.
    pub side: Side,
    /// Our RTP port there.
    pub port: u16,
    /// What the caller sent and what the callee sent.
    pub line: MediaLine,
}

/// Who ended a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EndedBy {
    /// The caller: its BYE or CANCEL.
    Caller,
    /// The callee: its BYE, or a final failure answer to the INVITE.
    Callee,
    /// The SBC itself: a media timeout, an expired session, an answer it
    /// could not anchor, no answer in time, no gateway left.
    Sbc,
}

impl EndedBy {
    /// `caller`, `callee` or `sbc`, as call records and the API name it.
    pub fn name(self) -> &'static str {
        match self {
            EndedBy::Caller => "caller",
            EndedBy::Callee => "callee",
            EndedBy::Sbc => "sbc",
        }
    }
}

/// One finished call (a dialog): who, how it ended, how long, and its media.
/// The engine writes all but `media`, which the relay fills when it removes
/// the call's streams; the record then goes to the control plane.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// The engine's call number, unique for the life of the process.
    pub call: u64,
    /// The tenant the call was routed for, if one was identified.
    pub tenant: Option<String>,
    /// How the call ended: [`CallResult::Answered`] or [`CallResult::MediaTimeout`] once answered,
    /// [`CallResult::Failed`] or [`CallResult::Cancelled`] otherwise.
    pub result: CallResult,
    /// The side the caller's INVITE arrived on (the callee is on the other).
    pub caller_side: Side,
    /// Call-ID of the caller's leg, as the caller sent it.
    pub caller_call_id: String,
    /// Our leg toward the callee.
    pub callee_call_id: String,
    /// Time from the INVITE to the 2xx, if answered.
    pub setup_ms: Option<Ms>,
    /// Time from the 2xx to the end (0 if never answered).
    pub duration_ms: Ms,
    /// Engine time of the INVITE (ms since the engine started: the control
    /// plane turns it into wall-clock time with `EngineStats::epoch_unix_ms`).
    pub started_ms: Ms,
    /// Engine time of the end.
    pub ended_ms: Ms,
    /// The caller's address (a carrier's for an inbound call).
    pub caller_addr: SocketAddr,
    /// The address of the callee leg: the last gateway (or carrier) the
    /// INVITE went to.
    pub callee_addr: SocketAddr,
    /// The final status the caller got for its INVITE: 200 when answered;
    /// 0 when none was sent (the caller gave up first).
    pub final_code: u16,
    /// Who ended the call; `None` when unknown.
    pub ended_by: Option<EndedBy>,
    /// INVITEs sent toward the callee side: 1, plus one per failover.
    pub attempts: u32,
    /// One entry per relayed media line (`m=` line with a port), in SDP order; empty when no media
    /// was relayed.
    pub media: Vec<MediaLine>,
}

/// What the engine asks of the control plane about cluster-wide tenant
/// limits, in the order it needs them done (one ring, read in order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdmissionAsk {
    /// May a new call of `tenant` start? Take a slot and a CPS token
    /// across the cluster if so; answer `token` with a [`Verdict`].
    Admit {
        /// Names the INVITE put aside; echoed in the verdict.
        token: u64,
        /// The tenant's id.
        tenant: String,
        /// The tenant's limits in the engine's snapshot.
        max_concurrent: u32,
        /// Calls per second, across the cluster.
        max_cps: u32,
    },
    /// A call of `tenant` this node counted has ended: give its slot back.
    Release {
        /// The tenant's id.
        tenant: String,
    },
    /// A call of `tenant` that the node's share admitted after the store's
    /// answer came too late (and refused it): count its slot in the store
    /// after all, so the release that follows balances.
    Take {
        /// The tenant's id.
        tenant: String,
    },
    /// The engine's live calls per limited tenant, for the store to take as
    /// this node's count (asked for by [`EngineStats::admission_resync`](crate::stats::EngineStats::admission_resync) when
    /// the store is reached again after an outage or at start).
    Counts(Vec<(String, u32)>),
}

/// The control plane's answer to [`AdmissionAsk::Admit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Slot and token taken across the cluster: the call may start.
    Granted,
    /// Over the tenant's cluster-wide limit: refused.
    Refused,
    /// The store could not be reached: the node's share decides.
    Unreachable,
}
