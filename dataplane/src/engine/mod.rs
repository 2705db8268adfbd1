//! The SIP engine: a transaction-stateful, dialog-aware proxy between the
//! private (carrier) side and the public (gateway) side, with topology hiding.
//!
//! Pure protocol logic: [`SipEngine::handle`] takes one datagram with the
//! time and the side it arrived on and pushes the datagrams to send into
//! `out`; [`SipEngine::tick`] fires the RFC 3261 timers. No I/O, no clock, no
//! threads, so tests drive it on a virtual clock.
//!
//! Every request that crosses the SBC is re-written for the side it goes to:
//! one Via of ours (the sender's Vias are kept in the transaction and put back
//! on the responses), one Record-Route of ours, our Contact, the leg's own
//! Call-ID and From/To values, and every other header and the body copied
//! through `hide::Hider`, so nothing of one side's addresses reaches the
//! other side.

mod admission;
mod calls;
mod config;
mod dialog;
mod hide;
mod ids;
mod invite;
mod journal;
mod local;
mod media;
mod probe;
mod request;
mod response;
mod rewrite;
mod sdes;
mod shield;
mod slab;
mod timer;
mod txn;

pub use crate::call::{AdmissionAsk, Verdict};
pub use config::{EngineConfig, MediaSettings, Policy};
pub use journal::{CallImage, JournalOp, RestoreError};

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use crate::health::HealthTable;
use crate::media::{MediaCmd, PortPairs};
use crate::rng;
use crate::routing::RouteSnapshot;
use crate::side::{BySide, Side};
use crate::sip::SipMessage;
use crate::stats::EngineStats;
pub use crate::time::Ms;
use crate::transport::Transport;
use admission::{ClusterAdmission, TenantLoad};
use dialog::Dialog;
use hide::Hider;
use local::error_response;
use slab::{Id, Slab};
use txn::Txn;

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The side to send on, from our SIP address there.
    pub side: Side,
    /// Where to send it.
    pub dst: SocketAddr,
    /// How: UDP from our SIP address on `side`, or the TCP/TLS connection
    /// to `dst` (the one it came in on, else a new one; the control plane's
    /// stream layer owns those).
    pub transport: Transport,
    /// The whole SIP message: one UDP payload, or one framed message on a stream.
    pub data: Vec<u8>,
}

/// The header that carries the tenant to LiveKit (and may name it to us).
const TENANT_HEADER: &str = "X-Tenant-ID";

/// One received message with where and when it arrived.
#[derive(Debug, Clone, Copy)]
struct Incoming<'m, 'a> {
    now: Ms,
    side: Side,
    src: SocketAddr,
    /// The transport it came over: answers go back over it.
    transport: Transport,
    msg: &'m SipMessage<'a>,
}

/// A leg's side and Call-ID: how a dialog is found.
type CallKey = (Side, Box<[u8]>);

/// The proxy core.
#[derive(Debug)]
pub struct SipEngine {
    cfg: EngineConfig,
    snapshot: Arc<RouteSnapshot>,
    stats: Arc<EngineStats>,
    txns: Slab<Txn>,
    server_index: HashMap<Box<[u8]>, Id>,
    dialogs: Slab<Dialog>,
    dialog_index: HashMap<CallKey, Id>,
    timers: BinaryHeap<Reverse<(Ms, u32, u32)>>,
    /// Deadlines of dialogs (time, dialog id): session timers and reliable
    /// provisionals, checked against the dialog's own when due.
    dialog_timers: BinaryHeap<Reverse<(Ms, u32, u32)>>,
    rng: u64,
    /// Live calls and CPS tokens per tenant.
    loads: HashMap<String, TenantLoad>,
    /// INVITEs waiting for the cluster's admission verdict.
    cluster: ClusterAdmission,
    /// Free RTP/RTCP port pairs per side.
    ports: Option<BySide<PortPairs>>,
    /// Stream changes for the media relay, drained by the backend.
    media_cmds: Vec<MediaCmd>,
    /// The dialog behind each caller-side RTP port.
    media_index: HashMap<(Side, u16), Id>,
    /// Per-boot salt in our branches, so responses to an earlier run never match.
    salt: u32,
    /// The time of the latest `handle` or `tick`.
    now: Ms,
    /// The number the next call gets.
    next_call: u64,
    /// Calls whose INVITE the far side challenged (401/407): (caller side,
    /// caller Call-ID) -> (our Call-ID toward the challenger, until when it
    /// is kept), so the INVITE re-sent with credentials reuses it.
    challenged: HashMap<CallKey, (Vec<u8>, Ms)>,
    /// The health of the gateways (and host carriers): routing skips the
    /// ones down.
    health: HealthTable,
    /// Probes in flight, by probe number.
    probes: HashMap<u64, probe::Probe>,
    /// The side each probed destination is probed from.
    probe_sides: HashMap<SocketAddrV4, (Side, Transport)>,
    /// Shutting down ([`SipEngine::set_draining`]): new calls and OPTIONS
    /// get 503, calls in progress go on.
    draining: bool,
    /// Overloaded ([`SipEngine::set_overloaded`]): new calls get 503.
    overloaded: bool,
    /// What the call journal must keep or forget, drained by the backend
    /// ([`SipEngine::take_journal`]).
    journal: Vec<JournalOp>,
    /// Wall-clock ms of engine time 0 ([`SipEngine::set_epoch`]), stamped on
    /// journal images.
    epoch_unix_ms: u64,
}

impl SipEngine {
    /// An engine with no transactions or dialogs yet. `cfg.seed` seeds its branches, tags and
    /// Call-IDs; with `cfg.media` set it keeps a pool of RTP/RTCP port pairs per side. Records
    /// `snapshot.version` in `stats`.
    pub fn new(
        cfg: EngineConfig,
        snapshot: Arc<RouteSnapshot>,
        stats: Arc<EngineStats>,
    ) -> SipEngine {
        let mut rng = cfg.seed | 1;
        let salt = (rng::next(&mut rng) >> 32) as u32;
        stats.snapshot_version.set(snapshot.version);
        let ports = cfg.media.map(|m| {
            m.ports
                .map(|(min, max)| PortPairs::new(min, max).limited(m.max_sessions))
        });
        let health = HealthTable::new(cfg.health.clone());
        let mut engine = SipEngine {
            cfg,
            snapshot,
            stats,
            txns: Slab::default(),
            server_index: HashMap::new(),
            dialogs: Slab::default(),
            dialog_index: HashMap::new(),
            timers: BinaryHeap::new(),
            dialog_timers: BinaryHeap::new(),
            rng,
            loads: HashMap::new(),
            cluster: ClusterAdmission::default(),
            ports,
            media_cmds: Vec::new(),
            media_index: HashMap::new(),
            salt,
            now: 0,
            next_call: 1,
            challenged: HashMap::new(),
            health,
            probes: HashMap::new(),
            probe_sides: HashMap::new(),
            draining: false,
            overloaded: false,
            journal: Vec::new(),
            epoch_unix_ms: 0,
        };
        engine.probe_destinations();
        engine
    }

    /// Draining for a shutdown (`true`): a new INVITE is answered 503 with
    /// `Retry-After` (RFC 3261 §21.5.4) and an OPTIONS outside a dialog 503
    /// too, so upstream probes move away, while every request and response
    /// of calls in progress is handled as before. Counted in `sip.drain_refused`.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// Overloaded (`true`, the engine thread's input ring past its high-water
    /// mark): a new INVITE is answered 503 with `Retry-After` at once (RFC
    /// 3261 §21.5.4), before routing, while every message of calls in
    /// progress (ACK, BYE, CANCEL, re-INVITE, responses) is handled as
    /// before. Counted in `sip.overload_refused`.
    pub fn set_overloaded(&mut self, on: bool) {
        self.overloaded = on;
    }

    /// Swaps in a new routing snapshot; calls in progress keep their legs.
    pub fn set_snapshot(&mut self, snapshot: Arc<RouteSnapshot>) {
        self.stats.snapshot_version.set(snapshot.version);
        self.snapshot = snapshot;
        self.probe_destinations();
    }

    /// Our SIP address on `side`.
    pub fn sip_addr(&self, side: Side) -> SocketAddrV4 {
        self.cfg.addr(side)
    }

    /// The Call-ID of the caller's leg of the call a SIP message on `side`
    /// belongs to (its own Call-ID when it is the caller's leg or no call
    /// of ours): the correlation id of SIP capture. `None` when it does not
    /// parse. For capture only: it parses the message again.
    pub fn caller_call_id(&self, side: Side, bytes: &[u8]) -> Option<String> {
        let msg = SipMessage::parse(bytes).ok()?;
        let caller = self
            .dialog_index
            .get(&(side, Box::from(msg.call_id)))
            .and_then(|&did| self.dialogs.get(did))
            .map_or(msg.call_id, |d| d.caller.call_id.as_slice());
        Some(String::from_utf8_lossy(caller).into_owned())
    }

    /// The settings the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The routing snapshot in force.
    pub fn snapshot(&self) -> &Arc<RouteSnapshot> {
        &self.snapshot
    }

    /// Dialogs held: early (INVITE forwarded, no 2xx yet) and confirmed.
    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Proxy transactions held (each a server transaction paired with its client transaction, RFC
    /// 3261 §16, §17), completed ones included until their timers free them.
    pub fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// Moves the pending media relay commands into `into`.
    pub fn take_media_commands(&mut self, into: &mut Vec<MediaCmd>) {
        into.append(&mut self.media_cmds);
    }

    /// Free port pairs on (private, public).
    pub fn free_port_pairs(&self) -> (usize, usize) {
        self.ports.as_ref().map_or((0, 0), |p| {
            (p[Side::Private].available(), p[Side::Public].available())
        })
    }

    /// The earliest pending timer (health probes included).
    pub fn next_timer(&self) -> Option<Ms> {
        [&self.timers, &self.dialog_timers]
            .into_iter()
            .filter_map(|h| h.peek().map(|Reverse((t, _, _))| *t))
            .chain(self.next_probe_event())
            .chain(self.next_admission_deadline())
            .min()
    }

    /// Handles one datagram that arrived over UDP on `side` from `src`.
    pub fn handle(
        &mut self,
        now: Ms,
        side: Side,
        src: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        self.handle_on(now, (side, Transport::Udp), src, bytes, out);
    }

    /// Handles one message that arrived on `side` over `transport` from
    /// `src` (for TCP and TLS, the connection's peer address: answers go
    /// back to it over the same transport, RFC 3261 §18.2.2).
    pub fn handle_on(
        &mut self,
        now: Ms,
        (side, transport): (Side, Transport),
        src: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        self.stats.rx_messages.inc();
        self.now = now;
        let before = out.len();
        match SipMessage::parse(bytes) {
            Ok(msg) => self.dispatch(now, (side, transport), src, &msg, out),
            Err(e) => {
                self.stats.parse_errors.inc();
                // A broken response is dropped, and so is a broken ACK (an
                // ACK never gets a response, RFC 3261 §17.2.1); any other
                // broken request is answered.
                if !bytes.starts_with(b"SIP/") && !bytes.starts_with(b"ACK ") {
                    if let Some(resp) = error_response(bytes, e.code, e.reason, self.next_u64()) {
                        out.push(Outgoing {
                            side,
                            dst: src,
                            transport,
                            data: resp,
                        });
                    }
                }
            }
        }
        self.stats.tx_messages.add((out.len() - before) as u64);
    }

    /// Handles a request put aside (an INVITE awaiting its admission
    /// verdict) again: not counted as received a second time; what it
    /// sends is counted by the caller.
    fn handle_again(
        &mut self,
        now: Ms,
        (side, transport): (Side, Transport),
        src: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        self.now = now;
        if let Ok(msg) = SipMessage::parse(bytes) {
            self.dispatch(now, (side, transport), src, &msg, out);
        }
    }

    /// A parsed message to its handler: requests and responses.
    fn dispatch(
        &mut self,
        now: Ms,
        (side, transport): (Side, Transport),
        src: SocketAddr,
        msg: &SipMessage<'_>,
        out: &mut Vec<Outgoing>,
    ) {
        let rx = Incoming {
            now,
            side,
            src,
            transport,
            msg,
        };
        if msg.is_request() {
            self.on_request(&rx, out);
        } else {
            self.on_response(&rx, out);
        }
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Ms, out: &mut Vec<Outgoing>) {
        self.now = now;
        let before = out.len();
        while let Some(&Reverse((when, idx, gen))) = self.timers.peek() {
            if when > now {
                break;
            }
            self.timers.pop();
            self.service(Id { idx, gen }, now, out);
        }
        self.dialog_tick(now, out);
        self.probe_tick(now, out);
        self.admission_tick(now, out);
        self.stats.tx_messages.add((out.len() - before) as u64);
    }

    // ----- requests -------------------------------------------------------

    // ----- responses ------------------------------------------------------

    // ----- timers and state changes ----------------------------------------

    // ----- media --------------------------------------------------------

    // ----- identifiers ----------------------------------------------------

    /// Our address on `side` over `transport` ([`EngineConfig::addr_on`]).
    fn ours(&self, side: Side, transport: Transport) -> rewrite::Ours {
        rewrite::Ours {
            addr: self.cfg.addr_on(side, transport),
            transport,
        }
    }

    fn hider(&self, toward: Side, source: Ipv4Addr) -> Hider<'_> {
        Hider {
            toward,
            ours: *self.cfg.addr(toward).ip(),
            theirs: *self.cfg.addr(toward.other()).ip(),
            sip_ports: (
                self.cfg.addr(toward).port(),
                self.cfg.addr(toward.other()).port(),
            ),
            source,
            snapshot: &self.snapshot,
        }
    }
}

pub(super) fn ipv4_of(addr: SocketAddr) -> Ipv4Addr {
    match addr {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

#[cfg(test)]
mod tests;
