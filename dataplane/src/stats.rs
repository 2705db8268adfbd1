//! Counters the engines bump and the control plane reads, without locks
//! (relaxed atomics: each value is exact, a set of them is not a snapshot).
//! Each group lists its counters once with their API names, so the status
//! endpoint and metrics read the same list.

use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_queue::ArrayQueue;

use crate::call::{
    ActiveCall, CallEvent, CallRecord, CallStep, Captured, LiveMedia, MediaCall, RtcpCopy,
    RTCP_COPY,
};
use crate::health::HealthReport;
use crate::net::Reason;
use crate::side::BySide;
use crate::time::Ms;

/// How full one of the bounded rings between threads is now, for
/// `GET /api/v1/status` and `sbc_ring_*` metrics (a full ring is a counted
/// drop; a ring near full says a consumer falls behind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingFill {
    /// The ring's name (`rx`, `media_cmds`, `call_events`, ...).
    pub name: &'static str,
    /// Entries in it now.
    pub len: usize,
    /// Entries it holds at most.
    pub capacity: usize,
}

impl RingFill {
    /// The fill of `ring` under `name`.
    pub fn of<T>(name: &'static str, ring: &ArrayQueue<T>) -> RingFill {
        RingFill {
            name,
            len: ring.len(),
            capacity: ring.capacity(),
        }
    }
}

/// Now, in µs since the Unix epoch (0 if the clock is before it): the
/// stamp of captured packets.
fn wall_clock_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// One monotonically increasing (or gauge) counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Takes one away, never below zero.
    pub fn dec(&self) {
        // A gauge never goes below zero, even if an end is counted twice.
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| v.checked_sub(1));
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Sets a gauge (or a copy of someone else's counter).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Media packets a capture can hold in flight (and pool buffers).
pub const MEDIA_CAPTURE: usize = 8_192;
/// The size of a media capture buffer: a whole Ethernet-MTU datagram.
pub const MEDIA_CAPTURE_BUF: usize = 1_600;

/// A callback another thread runs to wake whoever reads a ring (it must
/// not block).
pub struct Waker(pub Box<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for Waker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waker")
    }
}

/// SIP engine counters, and the rings of call outcomes and records.
#[derive(Debug)]
pub struct EngineStats {
    /// One outcome per call attempt, for per-tenant statistics (65,536 deep).
    pub call_events: ArrayQueue<CallEvent>,
    /// Outcomes lost to a full `call_events` ring.
    pub call_events_dropped: Counter,
    /// Finished calls with their media, for the control plane (16,384 deep).
    pub call_records: ArrayQueue<CallRecord>,
    /// Records lost to a full `call_records` ring.
    pub call_records_dropped: Counter,
    /// INVITEs refused over a tenant's CPS or concurrency limit.
    pub calls_limited: Counter,
    /// Cluster-wide admission asks toward the control plane, in order
    /// ([`AdmissionAsk`](crate::call::AdmissionAsk); 16,384 deep).
    pub admission_asks: ArrayQueue<crate::call::AdmissionAsk>,
    /// Asks lost to a full `admission_asks` ring (the node's share decided).
    pub admission_asks_dropped: Counter,
    /// INVITEs the node's share admitted or refused because the cluster's
    /// store did not answer (unreachable, late, or too many waiting).
    pub admission_by_share: Counter,
    /// INVITEs whose cluster verdict came after the deadline.
    pub admission_late: Counter,
    /// Live cluster nodes as last seen in the store (1 alone): the
    /// divisor of the node's share.
    pub cluster_nodes: Counter,
    /// Set by the control plane: the engine pushes its live calls per
    /// tenant as `AdmissionAsk::Counts` and clears it.
    pub admission_resync: std::sync::atomic::AtomicBool,
    /// Called by the engine thread after it pushed admission asks (it must
    /// not block: wake a task).
    pub admission_waker: std::sync::OnceLock<Waker>,
    /// INVITEs sent on to the next gateway (failover code or timer).
    pub failovers: Counter,
    /// Answered calls ended because their media stopped.
    pub media_timeouts: Counter,
    /// Silence reports for held media lines, which do not end the call
    /// (until the hold timeout, if one is set).
    pub media_timeouts_held: Counter,
    /// SDP offers refused or left unanswered (a non-2xx to the re-INVITE or
    /// UPDATE carrying them, a CANCEL): rolled back, the session unchanged.
    pub offers_rolled_back: Counter,
    /// 2xx answers whose SDP the relay could not anchor: the call was ended
    /// (502 with a Warning to the requester, BYEs of ours).
    pub answers_refused: Counter,
    /// Media lines keyed for SRTP toward a gateway: an answer committed
    /// with SDES keys on them (a call's line, and again at each rekey).
    pub srtp_lines: Counter,
    /// New INVITEs and OPTIONS answered 503 while draining for a shutdown.
    pub drain_refused: Counter,
    /// New INVITEs answered 503 while the engine was overloaded (its input
    /// ring past the high-water mark).
    pub overload_refused: Counter,
    /// Times the engine went into overload.
    pub overloads: Counter,
    /// Messages the flood guard dropped before parsing, by
    /// [`crate::guard::GuardDrop`].
    pub guard_drops: [Counter; crate::guard::GUARD_DROPS],
    /// Sources the guard banned so far.
    pub bans_total: Counter,
    /// Bans in force.
    pub bans_active: Counter,
    /// Set by the control plane to ask for the bans in force, cleared by
    /// the engine thread.
    pub bans_wanted: std::sync::atomic::AtomicBool,
    /// The engine thread's answer: the bans in force (the latest only).
    pub bans: ArrayQueue<(Ms, Vec<crate::guard::Ban>)>,
    /// Addresses whose ban an operator lifts (`sbcctl ban remove`).
    pub unban: ArrayQueue<std::net::Ipv4Addr>,
    /// Session refreshes (RFC 4028) of shielded calls answered at the
    /// carrier's edge, without the gateway.
    pub refreshes_answered: Counter,
    /// Shielded calls ended because no session refresh came.
    pub sessions_expired: Counter,
    /// DTMF digits from the carrier's SIP INFO sent to a `livekit` gateway
    /// as RFC 4733 telephone events.
    pub info_dtmf: Counter,
    /// SIP datagrams handed to the engine.
    pub rx_messages: Counter,
    /// SIP datagrams the engine sent.
    pub tx_messages: Counter,
    /// Datagrams that did not parse as SIP (requests answered 400 and kin).
    pub parse_errors: Counter,
    /// Request retransmissions answered from the server transaction.
    pub retransmissions_absorbed: Counter,
    /// Responses matching none of our client transactions.
    pub stray_responses: Counter,
    /// Requests the SBC originated itself (the BYEs of a media timeout),
    /// each with its client transaction (RFC 3261 17.1.2).
    pub local_requests: Counter,
    /// Final answers to those requests.
    pub local_answers: Counter,
    /// Those requests given up unanswered after 64·T1 (Timer F).
    pub local_timeouts: Counter,
    /// Requests ended by a transport error: the TCP/TLS connection to
    /// their destination could not be had or broke (RFC 3261 8.1.3.1).
    pub transport_errors: Counter,
    /// Dialogs created by an INVITE.
    pub calls_total: Counter,
    /// Calls that got a 2xx.
    pub calls_answered: Counter,
    /// Calls that ended unanswered (not cancelled).
    pub calls_failed: Counter,
    /// INVITEs refused by routing (unknown source, no route).
    pub calls_rejected: Counter,
    /// Answered calls in progress (gauge).
    pub calls_up: Counter,
    /// 2xx answers to INVITEs no transaction or call of ours knew (sent
    /// before a restart) that the SBC acknowledged and ended (ACK, BYE).
    pub orphan_2xx_ended: Counter,
    /// Answered calls put back from the call journal after a restart.
    pub calls_restored: Counter,
    /// Calls of the journal that could not be put back (a port taken, a
    /// Call-ID in use, an image that does not decode).
    pub restore_failed: Counter,
    /// What the call journal must keep or forget, for the control plane's
    /// writer (65,536 deep; see `engine::journal`).
    pub journal: ArrayQueue<crate::engine::JournalOp>,
    /// A journal writer drains `journal` (set by the control plane); off,
    /// the engine thread queues nothing there.
    pub journal_on: std::sync::atomic::AtomicBool,
    /// Journal operations lost to a full `journal` ring: the journal may
    /// keep a call that ended, or miss a change, until the next one.
    pub journal_dropped: Counter,
    /// Dialogs in the engine (gauge).
    pub dialogs: Counter,
    /// Transactions in the engine (gauge).
    pub transactions: Counter,
    /// Version of the routing snapshot the engine uses (gauge).
    pub snapshot_version: Counter,
    /// Wall-clock time (ms since the Unix epoch) of engine time 0: a call
    /// record's `started_ms` plus this is when its INVITE arrived.
    pub epoch_unix_ms: Counter,
    /// Gateway challenges (401/407 to an INVITE) answered with the
    /// gateway's credentials.
    pub auth_answered: Counter,
    /// Gateway challenges that failed the attempt: a second one after our
    /// answer (a wrong password), or none we could answer.
    pub auth_refused: Counter,
    /// Health probes (SIP OPTIONS) sent to gateways and host carriers.
    pub probes_sent: Counter,
    /// Final answers to them.
    pub probe_answers: Counter,
    /// New calls none of whose gateways was up: tried in order anyway (the
    /// disabled ones left out).
    pub calls_no_gateway_up: Counter,
    /// New calls answered 503 because the media relay had no port pair left
    /// on a side, or `[media] max_sessions` lines were anchored already.
    pub calls_no_media_ports: Counter,
    /// Steps of calls for the log (routed, failed over, answered; 65,536
    /// deep).
    pub call_steps: ArrayQueue<CallStep>,
    /// Steps lost to a full `call_steps` ring.
    pub call_steps_dropped: Counter,
    /// Set by the control plane to ask the engine for its calls in
    /// progress (`active_calls`), cleared by the engine.
    pub active_wanted: std::sync::atomic::AtomicBool,
    /// The engine's answer: its calls in progress (the latest only).
    pub active_calls: ArrayQueue<(Ms, Vec<ActiveCall>)>,
    /// Set to ask the relay for what its streams received so far
    /// (`live_media`), cleared by the relay at its next once-a-second scan.
    pub media_wanted: std::sync::atomic::AtomicBool,
    /// The relay's answer (the latest only).
    pub live_media: ArrayQueue<Vec<LiveMedia>>,
    /// Whether the engine thread copies every SIP datagram into
    /// `sip_capture` (HEP export, a pcap capture running).
    pub capture_on: std::sync::atomic::AtomicBool,
    /// SIP datagrams in and out, while `capture_on` (16,384 deep).
    pub sip_capture: ArrayQueue<Captured>,
    /// Captured datagrams lost to a full `sip_capture` ring.
    pub capture_dropped: Counter,
    /// Whether the relay copies every media packet it relays into
    /// `media_capture` (a pcap capture of RTP running).
    pub media_capture_on: std::sync::atomic::AtomicBool,
    /// Media packets in and out while `media_capture_on`, in buffers taken
    /// from `media_pool` (the relay allocates nothing).
    pub media_capture: ArrayQueue<Captured>,
    /// Empty buffers for `media_capture` (1,600 bytes each), filled by the
    /// control plane when a capture starts and given back after use.
    pub media_pool: ArrayQueue<Vec<u8>>,
    /// Whether the relay copies the RTCP it receives into `rtcp_copies` and
    /// the engine names each call's relay ports in `media_calls` (a HEP
    /// collector is set).
    pub rtcp_on: std::sync::atomic::AtomicBool,
    /// RTCP packets received, while `rtcp_on` (1,024 deep).
    pub rtcp_copies: ArrayQueue<RtcpCopy>,
    /// The calls of new relay ports, while `rtcp_on` (4,096 deep).
    pub media_calls: ArrayQueue<MediaCall>,
    /// Health reports (probe results, changes of state) for the control
    /// plane (4,096 deep).
    pub health_reports: ArrayQueue<HealthReport>,
    /// Reports lost to a full `health_reports` ring.
    pub health_reports_dropped: Counter,
}

impl Default for EngineStats {
    fn default() -> Self {
        EngineStats {
            call_events: ArrayQueue::new(65_536),
            call_events_dropped: Counter::default(),
            call_records: ArrayQueue::new(16_384),
            call_records_dropped: Counter::default(),
            calls_limited: Counter::default(),
            admission_asks: ArrayQueue::new(16_384),
            admission_asks_dropped: Counter::default(),
            admission_by_share: Counter::default(),
            admission_late: Counter::default(),
            cluster_nodes: Counter::default(),
            admission_resync: std::sync::atomic::AtomicBool::new(false),
            admission_waker: std::sync::OnceLock::new(),
            failovers: Counter::default(),
            media_timeouts: Counter::default(),
            media_timeouts_held: Counter::default(),
            offers_rolled_back: Counter::default(),
            answers_refused: Counter::default(),
            srtp_lines: Counter::default(),
            drain_refused: Counter::default(),
            overload_refused: Counter::default(),
            overloads: Counter::default(),
            guard_drops: Default::default(),
            bans_total: Counter::default(),
            bans_active: Counter::default(),
            bans_wanted: std::sync::atomic::AtomicBool::new(false),
            bans: ArrayQueue::new(1),
            unban: ArrayQueue::new(64),
            refreshes_answered: Counter::default(),
            sessions_expired: Counter::default(),
            info_dtmf: Counter::default(),
            rx_messages: Counter::default(),
            tx_messages: Counter::default(),
            parse_errors: Counter::default(),
            retransmissions_absorbed: Counter::default(),
            stray_responses: Counter::default(),
            local_requests: Counter::default(),
            local_answers: Counter::default(),
            local_timeouts: Counter::default(),
            transport_errors: Counter::default(),
            calls_total: Counter::default(),
            calls_answered: Counter::default(),
            calls_failed: Counter::default(),
            calls_rejected: Counter::default(),
            calls_up: Counter::default(),
            orphan_2xx_ended: Counter::default(),
            calls_restored: Counter::default(),
            restore_failed: Counter::default(),
            journal: ArrayQueue::new(65_536),
            journal_on: std::sync::atomic::AtomicBool::new(false),
            journal_dropped: Counter::default(),
            dialogs: Counter::default(),
            transactions: Counter::default(),
            snapshot_version: Counter::default(),
            epoch_unix_ms: Counter::default(),
            auth_answered: Counter::default(),
            auth_refused: Counter::default(),
            probes_sent: Counter::default(),
            probe_answers: Counter::default(),
            calls_no_gateway_up: Counter::default(),
            calls_no_media_ports: Counter::default(),
            active_wanted: std::sync::atomic::AtomicBool::new(false),
            active_calls: ArrayQueue::new(1),
            media_wanted: std::sync::atomic::AtomicBool::new(false),
            live_media: ArrayQueue::new(1),
            capture_on: std::sync::atomic::AtomicBool::new(false),
            media_capture_on: std::sync::atomic::AtomicBool::new(false),
            media_capture: ArrayQueue::new(MEDIA_CAPTURE),
            media_pool: ArrayQueue::new(MEDIA_CAPTURE),
            sip_capture: ArrayQueue::new(16_384),
            capture_dropped: Counter::default(),
            call_steps: ArrayQueue::new(65_536),
            call_steps_dropped: Counter::default(),
            rtcp_on: std::sync::atomic::AtomicBool::new(false),
            rtcp_copies: ArrayQueue::new(1_024),
            media_calls: ArrayQueue::new(4_096),
            health_reports: ArrayQueue::new(4_096),
            health_reports_dropped: Counter::default(),
        }
    }
}

impl EngineStats {
    /// Copies one SIP datagram for capture when capture is on (counted if
    /// the ring is full).
    pub fn capture(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        data: &[u8],
        correlation: Option<String>,
    ) {
        if !self.capture_on.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let ts_us = wall_clock_us();
        let c = Captured {
            ts_us,
            src,
            dst,
            data: data.to_vec(),
            correlation,
        };
        if self.sip_capture.push(c).is_err() {
            self.capture_dropped.inc();
        }
    }

    /// The relay's answer to `media_wanted`, when it was asked: its
    /// streams' figures so far.
    pub fn answer_media(&self, table: &crate::media::RelayTable) {
        if self
            .media_wanted
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let _ = self.live_media.force_push(table.figures());
        }
    }

    /// Copies one relayed media packet for a capture when one is running:
    /// into a pooled buffer, never allocating (a packet that finds no free
    /// buffer or no room in the ring is counted in `capture_dropped`).
    pub fn capture_media(&self, src: SocketAddrV4, dst: SocketAddrV4, pkt: &[u8]) {
        if !self
            .media_capture_on
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let Some(mut data) = self.media_pool.pop() else {
            self.capture_dropped.inc();
            return;
        };
        data.clear();
        let n = pkt.len().min(data.capacity());
        data.extend_from_slice(pkt.get(..n).unwrap_or_default());
        let ts_us = wall_clock_us();
        let c = Captured {
            ts_us,
            src: SocketAddr::V4(src),
            dst: SocketAddr::V4(dst),
            data,
            correlation: None,
        };
        if let Err(c) = self.media_capture.push(c) {
            self.capture_dropped.inc();
            let _ = self.media_pool.push(c.data);
        }
    }

    /// Copies an RTCP packet the relay received at our `port` on `side`
    /// for HEP, while `rtcp_on`; RTP and anything else is left alone (one
    /// relaxed load when off, no allocation; counted in `capture_dropped`
    /// when the ring is full).
    pub fn capture_rtcp(
        &self,
        side: crate::side::Side,
        src: SocketAddrV4,
        dst: SocketAddrV4,
        pkt: &[u8],
    ) {
        if !self.rtcp_on.load(std::sync::atomic::Ordering::Relaxed)
            || !crate::media::rtcp::is_rtcp(pkt)
        {
            return;
        }
        let n = pkt.len().min(RTCP_COPY);
        let mut data = [0; RTCP_COPY];
        if let (Some(to), Some(from)) = (data.get_mut(..n), pkt.get(..n)) {
            to.copy_from_slice(from);
        }
        let ts_us = wall_clock_us();
        let copy = RtcpCopy {
            ts_us,
            side,
            port: dst.port(),
            src,
            dst,
            len: n as u16,
            data,
        };
        if self.rtcp_copies.push(copy).is_err() {
            self.capture_dropped.inc();
        }
    }

    /// Names the call of a media line's relay ports for RTCP correlation,
    /// while `rtcp_on` (counted in `capture_dropped` when the ring is full).
    pub fn media_call(&self, ports: [(crate::side::Side, u16); 2], call_id: &[u8]) {
        if !self.rtcp_on.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let call = MediaCall {
            ports,
            call_id: String::from_utf8_lossy(call_id).into_owned(),
        };
        if self.media_calls.push(call).is_err() {
            self.capture_dropped.inc();
        }
    }

    /// How full the engine's rings toward the control plane are.
    pub fn rings(&self) -> Vec<RingFill> {
        vec![
            RingFill::of("call_events", &self.call_events),
            RingFill::of("call_records", &self.call_records),
            RingFill::of("call_steps", &self.call_steps),
            RingFill::of("health_reports", &self.health_reports),
            RingFill::of("sip_capture", &self.sip_capture),
            RingFill::of("media_capture", &self.media_capture),
            RingFill::of("rtcp_copies", &self.rtcp_copies),
            RingFill::of("media_calls", &self.media_calls),
            RingFill::of("journal", &self.journal),
            RingFill::of("admission_asks", &self.admission_asks),
        ]
    }

    /// Hands a step of a call to the control plane's log (counted if the
    /// ring is full).
    pub fn step(&self, step: CallStep) {
        if self.call_steps.push(step).is_err() {
            self.call_steps_dropped.inc();
        }
    }

    /// Hands a finished call to the control plane (counted if the ring is full).
    pub fn record(&self, record: CallRecord) {
        if self.call_records.push(record).is_err() {
            self.call_records_dropped.inc();
        }
    }

    /// The SIP counters as `GET /api/v1/status` names them under `sip` (and
    /// metrics export them): the one list of them.
    pub fn sip_counters(&self) -> [(&'static str, &Counter); 54] {
        [
            ("calls_total", &self.calls_total),
            ("calls_answered", &self.calls_answered),
            ("calls_failed", &self.calls_failed),
            ("calls_rejected", &self.calls_rejected),
            ("dialogs", &self.dialogs),
            ("transactions", &self.transactions),
            ("rx_messages", &self.rx_messages),
            ("tx_messages", &self.tx_messages),
            ("parse_errors", &self.parse_errors),
            ("retransmissions_absorbed", &self.retransmissions_absorbed),
            ("stray_responses", &self.stray_responses),
            ("local_requests", &self.local_requests),
            ("local_answers", &self.local_answers),
            ("local_timeouts", &self.local_timeouts),
            ("transport_errors", &self.transport_errors),
            ("failovers", &self.failovers),
            ("calls_limited", &self.calls_limited),
            ("admission_by_share", &self.admission_by_share),
            ("admission_late", &self.admission_late),
            ("admission_asks_dropped", &self.admission_asks_dropped),
            ("media_timeouts", &self.media_timeouts),
            ("media_timeouts_held", &self.media_timeouts_held),
            ("offers_rolled_back", &self.offers_rolled_back),
            ("answers_refused", &self.answers_refused),
            ("srtp_lines", &self.srtp_lines),
            ("drain_refused", &self.drain_refused),
            ("overload_refused", &self.overload_refused),
            ("overloads", &self.overloads),
            ("dropped_too_large", &self.guard_drops[0]),
            ("dropped_banned", &self.guard_drops[1]),
            ("dropped_scanner", &self.guard_drops[2]),
            ("dropped_flood", &self.guard_drops[3]),
            ("dropped_too_many_sources", &self.guard_drops[4]),
            ("dropped_not_allowed", &self.guard_drops[5]),
            ("bans", &self.bans_total),
            ("bans_active", &self.bans_active),
            ("refreshes_answered", &self.refreshes_answered),
            ("sessions_expired", &self.sessions_expired),
            ("info_dtmf", &self.info_dtmf),
            ("auth_answered", &self.auth_answered),
            ("auth_refused", &self.auth_refused),
            ("probes_sent", &self.probes_sent),
            ("probe_answers", &self.probe_answers),
            ("calls_no_gateway_up", &self.calls_no_gateway_up),
            ("calls_no_media_ports", &self.calls_no_media_ports),
            ("call_events_dropped", &self.call_events_dropped),
            ("call_records_dropped", &self.call_records_dropped),
            ("call_steps_dropped", &self.call_steps_dropped),
            ("health_reports_dropped", &self.health_reports_dropped),
            ("capture_dropped", &self.capture_dropped),
            ("calls_restored", &self.calls_restored),
            ("orphan_2xx_ended", &self.orphan_2xx_ended),
            ("restore_failed", &self.restore_failed),
            ("journal_dropped", &self.journal_dropped),
        ]
    }
}

/// I/O backend counters (the L2/L3 ones are the DPDK backend's; zero on
/// the socket backend, where the kernel does that work).
#[derive(Debug, Default)]
pub struct IoStats {
    /// Packets received (SIP datagrams on sockets; every frame on DPDK).
    pub rx_packets: Counter,
    /// Packets sent.
    pub tx_packets: Counter,
    /// SIP datagrams dropped because their lane toward the engine was full.
    pub rx_ring_full: Counter,
    /// SIP datagrams dropped because their source already had its share of
    /// the engine's intake waiting (`backend::intake`).
    pub rx_share_drops: Counter,
    /// Datagrams larger than the receive buffer (64 KiB), dropped.
    pub rx_truncated: Counter,
    /// Packets that could not be sent (full socket buffer or TX ring, no mbuf).
    pub tx_errors: Counter,
    /// SIP messages for TCP/TLS the engine could not hand to the stream
    /// layer (its ring full, or no TCP/TLS configured).
    pub stream_dropped: Counter,
    /// Frames of the public port handed to the kernel's exception
    /// interface (DPDK: TCP, ICMP errors, ARP replies, other protocols).
    pub exception_in: Counter,
    /// Frames the kernel sent out of the public port through it.
    pub exception_out: Counter,
    /// ARP requests for our addresses answered.
    pub arp_replies: Counter,
    /// ARP requests we sent for a next hop.
    pub arp_requests: Counter,
    /// ICMP echo requests answered.
    pub icmp_echo_replies: Counter,
    dropped_truncated: Counter,
    dropped_not_for_us: Counter,
    dropped_bad_checksum: Counter,
    dropped_unsupported: Counter,
    /// IPv4 datagrams for our SIP port put back together from fragments.
    pub reassembled: Counter,
    /// SIP datagrams we sent larger than the 1,500-byte MTU, so in IPv4
    /// fragments (by the kernel on sockets, by the poll loop on DPDK).
    pub tx_fragmented: Counter,
    /// Reassembled datagrams for anything but our SIP port (dropped).
    pub fragments_dropped: Counter,
    /// Packets dropped because the next hop's MAC was unknown.
    pub arp_unresolved: Counter,
    /// Poll-loop iterations that found work.
    pub busy_polls: Counter,
    /// Poll-loop iterations.
    pub polls: Counter,
    /// Microseconds of the poll lcore's time spent in iterations that found
    /// work (from one iteration's start to the next's): the lcore's real
    /// load, where its CPU time is always 100 % (perf/compare reads it).
    pub busy_us: Counter,
    /// The driver's counters of each side's port (DPDK), copied once a second.
    pub ports: BySide<PortCounters>,
}

impl IoStats {
    /// Frames dropped by the L2/L3 checks for `reason`.
    pub fn dropped(&self, reason: Reason) -> &Counter {
        match reason {
            Reason::Truncated => &self.dropped_truncated,
            Reason::NotForUs => &self.dropped_not_for_us,
            Reason::BadChecksum => &self.dropped_bad_checksum,
            Reason::Unsupported => &self.dropped_unsupported,
        }
    }

    /// The counters of the backend in use: all of them for DPDK (which does
    /// L2/L3 itself), for sockets only those the socket backend counts
    /// (the kernel does ARP, ICMP, checksums and fragments there).
    pub fn counters_of(&self, dpdk: bool) -> Vec<(&'static str, &Counter)> {
        const SOCKET: &[&str] = &[
            "rx_packets",
            "tx_packets",
            "rx_ring_full",
            "rx_share_drops",
            "rx_truncated",
            "tx_errors",
            "tx_fragmented",
            "stream_dropped",
        ];
        self.counters()
            .into_iter()
            .filter(|(name, _)| dpdk || SOCKET.contains(name))
            .collect()
    }

    /// The counters as `GET /api/v1/status` names them under `io` (ports
    /// apart): the one list of them.
    pub fn counters(&self) -> [(&'static str, &Counter); 23] {
        [
            ("rx_packets", &self.rx_packets),
            ("tx_packets", &self.tx_packets),
            ("rx_ring_full", &self.rx_ring_full),
            ("rx_share_drops", &self.rx_share_drops),
            ("rx_truncated", &self.rx_truncated),
            ("tx_errors", &self.tx_errors),
            ("stream_dropped", &self.stream_dropped),
            ("exception_in", &self.exception_in),
            ("exception_out", &self.exception_out),
            ("arp_replies", &self.arp_replies),
            ("arp_requests", &self.arp_requests),
            ("arp_unresolved", &self.arp_unresolved),
            ("icmp_echo_replies", &self.icmp_echo_replies),
            ("dropped_truncated", &self.dropped_truncated),
            ("dropped_not_for_us", &self.dropped_not_for_us),
            ("dropped_bad_checksum", &self.dropped_bad_checksum),
            ("dropped_unsupported", &self.dropped_unsupported),
            ("reassembled", &self.reassembled),
            ("tx_fragmented", &self.tx_fragmented),
            ("fragments_dropped", &self.fragments_dropped),
            ("polls", &self.polls),
            ("busy_polls", &self.busy_polls),
            ("busy_us", &self.busy_us),
        ]
    }
}

/// One DPDK port's driver counters (`rte_eth_stats`).
#[derive(Debug, Default)]
pub struct PortCounters {
    /// `ipackets`.
    pub rx_packets: Counter,
    /// `opackets`.
    pub tx_packets: Counter,
    /// `imissed`: frames the NIC dropped for lack of RX descriptors.
    pub rx_missed: Counter,
    /// `ierrors`.
    pub rx_errors: Counter,
    /// `oerrors`.
    pub tx_errors: Counter,
    /// `rx_nombuf`: RX failures for lack of an mbuf.
    pub rx_no_mbuf: Counter,
}

impl PortCounters {
    /// The counters as the status names them in each `io.ports` entry.
    pub fn counters(&self) -> [(&'static str, &Counter); 6] {
        [
            ("rx_packets", &self.rx_packets),
            ("tx_packets", &self.tx_packets),
            ("rx_missed", &self.rx_missed),
            ("rx_errors", &self.rx_errors),
            ("tx_errors", &self.tx_errors),
            ("rx_no_mbuf", &self.rx_no_mbuf),
        ]
    }
}

/// Media relay counters.
#[derive(Debug, Default)]
pub struct MediaStats {
    /// RTP/RTCP packets relayed.
    pub relayed: Counter,
    /// Packets to a port with no stream.
    pub dropped_unknown_port: Counter,
    /// Packets from a source other than the peer's (before latching: its
    /// SDP address; after: the latched address and port).
    pub dropped_wrong_source: Counter,
    /// Packets whose other end has nowhere to send (hold, no SDP yet).
    pub dropped_no_destination: Counter,
    /// Packets SRTP refused (tag not verified, replayed, no room), RFC 3711.
    pub dropped_srtp: Counter,
    /// Of those, the replays.
    pub srtp_replays: Counter,
    /// Streams installed (gauge).
    pub streams: Counter,
    /// Relay sockets carrying a stream (socket backend; gauge).
    pub sockets: Counter,
    /// Relay sockets kept bound between calls (socket backend; gauge).
    pub sockets_idle: Counter,
    /// Relay ports that could not be bound.
    pub bind_errors: Counter,
    /// Relayed packets the socket would not take.
    pub tx_errors: Counter,
    /// Engine-relay commands or idle reports lost to a full ring.
    pub commands_dropped: Counter,
    /// RFC 4733 telephone-event packets the relay sent itself (DTMF from
    /// SIP INFO toward a `livekit` gateway).
    pub dtmf_injected: Counter,
}

impl MediaStats {
    /// The counters as `GET /api/v1/status` names them under `media`: the
    /// one list of them.
    pub fn counters(&self) -> [(&'static str, &Counter); 13] {
        [
            ("streams", &self.streams),
            ("sockets", &self.sockets),
            ("sockets_idle", &self.sockets_idle),
            ("relayed", &self.relayed),
            ("dropped_unknown_port", &self.dropped_unknown_port),
            ("dropped_wrong_source", &self.dropped_wrong_source),
            ("dropped_no_destination", &self.dropped_no_destination),
            ("dropped_srtp", &self.dropped_srtp),
            ("srtp_replays", &self.srtp_replays),
            ("bind_errors", &self.bind_errors),
            ("tx_errors", &self.tx_errors),
            ("commands_dropped", &self.commands_dropped),
            ("dtmf_injected", &self.dtmf_injected),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_captured_into_pooled_buffers_only_while_asked() {
        let s = EngineStats::default();
        let (a, b) = (
            "10.0.1.10:40000".parse().unwrap(),
            "10.0.0.100:10000".parse().unwrap(),
        );
        s.capture_media(a, b, b"rtp");
        assert!(s.media_capture.is_empty(), "off: nothing copied");
        s.media_capture_on.store(true, Ordering::Relaxed);
        let _ = s.media_pool.push(Vec::with_capacity(MEDIA_CAPTURE_BUF));
        s.capture_media(a, b, b"first");
        s.capture_media(a, b, b"second");
        let c = s.media_capture.pop().unwrap();
        assert_eq!(
            (c.src, c.dst, c.data.as_slice()),
            (SocketAddr::V4(a), SocketAddr::V4(b), &b"first"[..])
        );
        assert_eq!(
            c.data.capacity(),
            MEDIA_CAPTURE_BUF,
            "the pooled buffer, not a new one"
        );
        assert!(s.media_capture.is_empty());
        assert_eq!(s.capture_dropped.get(), 1, "no buffer left for the second");
    }
}
