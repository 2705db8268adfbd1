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
//! through [`hide::Hider`], so nothing of one side's addresses reaches the
//! other side.

pub mod dialog;
pub mod hide;
pub mod slab;
pub mod txn;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::Arc;

use crate::call::{CallEvent, CallRecord, CallResult};
use crate::media::sdp::{self, SdpRepr};
use crate::media::{End, MediaCmd, PortPairs, Stream};
use crate::rng;
use crate::routing::{Decision, RouteRequest, RouteSnapshot, Target};
use crate::side::{BySide, Side};
use crate::sip::build::{reason, Builder};
use crate::sip::grammar::{self, NameAddr, SipUri, Via};
use crate::sip::{HeaderName, Method, SipMessage, StartLine};
use crate::stats::EngineStats;
pub use crate::time::Ms;
use dialog::{Dialog, DialogState, Leg, LegRef};
use hide::Hider;
use slab::{Id, Slab};
use txn::{CancelState, Outbound, Phase, RouteState, Txn};

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub side: Side,
    pub dst: SocketAddr,
    pub data: Vec<u8>,
}

/// Static settings of the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Our SIP address on each side.
    pub sip: BySide<SocketAddrV4>,
    /// RFC 3261 T1 (RTT estimate), 500 ms by default.
    pub t1: Ms,
    /// RFC 3261 T2 (cap of non-INVITE retransmissions), 4 s by default.
    pub t2: Ms,
    /// Timer C: how long an INVITE may ring before it is cancelled.
    pub timer_c: Ms,
    /// Seeds branch, tag and Call-ID generation.
    pub seed: u64,
    pub policy: Policy,
    /// The media relay: our media address and port range per side. `None`:
    /// SDP addresses are only hidden and media does not cross the SBC.
    pub media: Option<MediaSettings>,
}

/// Where the media relay listens on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaSettings {
    /// Our media address on each side.
    pub ip: BySide<Ipv4Addr>,
    /// Port range of each side, `[min, max)`.
    pub ports: BySide<(u16, u16)>,
    /// An answered call whose media stops this long is ended (ms).
    pub timeout: Ms,
}

impl MediaSettings {
    /// The lowest and highest port of both sides' ranges (the relay's table).
    pub fn port_span(&self) -> (u16, u16) {
        let [(a, b), (c, d)] = self.ports.0;
        (a.min(c), b.max(d))
    }
}

impl EngineConfig {
    pub fn new(private: SocketAddrV4, public: SocketAddrV4) -> EngineConfig {
        EngineConfig {
            sip: BySide::new(private, public),
            t1: 500,
            t2: 4000,
            timer_c: 180_000,
            seed: 0x5bc0_5bc0,
            policy: Policy::default(),
            media: None,
        }
    }

    /// Our SIP address on `side`.
    pub fn addr(&self, side: Side) -> SocketAddrV4 {
        self.sip[side]
    }
}

const BRANCH_PREFIX: &[u8] = b"z9hG4bKsbc";
const TENANT_HEADER: &str = "X-Tenant-ID";
const ALLOW: &[u8] = b"INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, PRACK";

/// Admission state of one tenant.
#[derive(Debug, Clone, Copy)]
struct TenantLoad {
    tokens: f64,
    last: Ms,
    active: u32,
}

/// The routing policy knobs of the contract.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Final responses from a gateway that make the INVITE try the next one.
    pub failover_codes: Vec<u16>,
    /// How long a gateway may stay silent before the next one is tried (only
    /// while another candidate is left; the last one gets Timer B).
    pub fr_timer: Ms,
    /// Answer to an INVITE over its tenant's CPS or concurrency limit.
    pub limit_code: u16,
    pub retry_after_s: u32,
    /// Drop INVITEs from unknown sources silently instead of answering 403.
    pub drop_unknown_sources: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            failover_codes: vec![408, 500, 502, 503, 504],
            fr_timer: 5_000,
            limit_code: 503,
            retry_after_s: 1,
            drop_unknown_sources: false,
        }
    }
}

/// One received message with where and when it arrived.
#[derive(Debug, Clone, Copy)]
struct Rx<'m, 'a> {
    now: Ms,
    side: Side,
    src: SocketAddr,
    msg: &'m SipMessage<'a>,
}

/// The proxy core.
#[derive(Debug)]
pub struct SipEngine {
    cfg: EngineConfig,
    snapshot: Arc<RouteSnapshot>,
    stats: Arc<EngineStats>,
    txns: Slab<Txn>,
    server_index: HashMap<Box<[u8]>, Id>,
    dialogs: Slab<Dialog>,
    dialog_index: HashMap<(Side, Box<[u8]>), Id>,
    timers: BinaryHeap<Reverse<(Ms, u32, u32)>>,
    rng: u64,
    /// Live calls and CPS tokens per tenant.
    loads: HashMap<String, TenantLoad>,
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
}

impl SipEngine {
    pub fn new(
        cfg: EngineConfig,
        snapshot: Arc<RouteSnapshot>,
        stats: Arc<EngineStats>,
    ) -> SipEngine {
        let mut rng = cfg.seed | 1;
        let salt = (rng::next(&mut rng) >> 32) as u32;
        stats.snapshot_version.set(snapshot.version);
        let ports = cfg
            .media
            .map(|m| m.ports.map(|(min, max)| PortPairs::new(min, max)));
        SipEngine {
            cfg,
            snapshot,
            stats,
            txns: Slab::default(),
            server_index: HashMap::new(),
            dialogs: Slab::default(),
            dialog_index: HashMap::new(),
            timers: BinaryHeap::new(),
            rng,
            loads: HashMap::new(),
            ports,
            media_cmds: Vec::new(),
            media_index: HashMap::new(),
            salt,
            now: 0,
            next_call: 1,
        }
    }

    /// Swaps in a new routing snapshot; calls in progress keep their legs.
    pub fn set_snapshot(&mut self, snapshot: Arc<RouteSnapshot>) {
        self.stats.snapshot_version.set(snapshot.version);
        self.snapshot = snapshot;
    }

    pub fn snapshot(&self) -> &Arc<RouteSnapshot> {
        &self.snapshot
    }

    pub fn dialog_count(&self) -> usize {
        self.dialogs.len()
    }

    pub fn transaction_count(&self) -> usize {
        self.txns.len()
    }

    /// The dialogs, for inspection (tests, later: call records).
    pub fn dialogs(&self) -> impl Iterator<Item = &Dialog> {
        self.dialogs.iter().map(|(_, d)| d)
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

    /// The earliest pending timer.
    pub fn next_timer(&self) -> Option<Ms> {
        self.timers.peek().map(|Reverse((t, _, _))| *t)
    }

    /// Handles one datagram that arrived on `side` from `src`.
    pub fn handle(
        &mut self,
        now: Ms,
        side: Side,
        src: SocketAddr,
        bytes: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        self.stats.rx_messages.inc();
        self.now = now;
        let before = out.len();
        match SipMessage::parse(bytes) {
            Ok(msg) => {
                let rx = Rx {
                    now,
                    side,
                    src,
                    msg: &msg,
                };
                if msg.is_request() {
                    self.on_request(&rx, out);
                } else {
                    self.on_response(&rx, out);
                }
            }
            Err(e) => {
                self.stats.parse_errors.inc();
                // A broken response is dropped; a broken request is answered.
                if !bytes.starts_with(b"SIP/") {
                    if let Some(resp) = error_response(bytes, e.code, e.reason, self.next_u64()) {
                        out.push(Outgoing {
                            side,
                            dst: src,
                            data: resp,
                        });
                    }
                }
            }
        }
        self.stats.tx_messages.add((out.len() - before) as u64);
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
        self.stats.tx_messages.add((out.len() - before) as u64);
    }

    // ----- requests -------------------------------------------------------

    fn on_request(&mut self, rx: &Rx<'_, '_>, out: &mut Vec<Outgoing>) {
        let Rx { side, src, msg, .. } = *rx;
        let method = msg.method();
        let is_ack = method == Method::Ack;
        let reply = |engine: &mut SipEngine, out: &mut Vec<Outgoing>, code: u16, extra: &[u8]| {
            if !is_ack {
                let tag = engine.next_u64();
                out.push(Outgoing {
                    side,
                    dst: src,
                    data: local_response(msg, code, reason(code), tag, extra),
                });
            }
        };

        // Loop detection (RFC 3261 16.3 step 4): our own Via in the request.
        if msg
            .values(HeaderName::Via)
            .filter_map(Via::parse)
            .any(|v| self.is_our_via(&v))
        {
            return reply(self, out, 482, b"");
        }
        if msg.max_forwards == Some(0) {
            return reply(self, out, 483, b"");
        }
        if let Some(h) = msg.header(HeaderName::ProxyRequire) {
            let mut extra = b"Unsupported: ".to_vec();
            extra.extend_from_slice(grammar::trim_lws(h.value));
            extra.extend_from_slice(b"\r\n");
            return reply(self, out, 420, &extra);
        }
        match method {
            Method::Ack => return self.on_ack(rx, out),
            Method::Cancel => return self.on_cancel(rx, out),
            _ => {}
        }
        let key = server_key(side, msg, method == Method::Invite);
        if let Some(&id) = self.server_index.get(&key) {
            self.stats.retransmissions_absorbed.inc();
            if let Some(t) = self.txns.get(id) {
                if t.phase != Phase::Accepted {
                    if let Some(resp) = &t.last_response {
                        out.push(Outgoing {
                            side: t.orig_side,
                            dst: t.orig_addr,
                            data: resp.clone(),
                        });
                    }
                }
            }
            return;
        }
        if msg.to.tag().is_some() {
            return match self
                .dialog_index
                .get(&(side, Box::from(msg.call_id)))
                .copied()
            {
                Some(did) => self.forward_in_dialog(rx, did, key, out),
                None => reply(self, out, 481, b""),
            };
        }
        match method {
            Method::Invite => self.new_invite(rx, key, out),
            Method::Options => {
                let extra = [
                    b"Allow: ".as_slice(),
                    ALLOW,
                    b"\r\nAccept: application/sdp\r\n",
                ]
                .concat();
                reply(self, out, 200, &extra)
            }
            Method::Other(_) => reply(self, out, 501, b""),
            _ => {
                let extra = [b"Allow: ".as_slice(), ALLOW, b"\r\n"].concat();
                reply(self, out, 405, &extra)
            }
        }
    }

    fn is_our_via(&self, via: &Via<'_>) -> bool {
        self.cfg.sip.0.iter().any(|a| {
            grammar::parse_ipv4(via.host) == Some(*a.ip()) && via.port.unwrap_or(5060) == a.port()
        })
    }

    fn on_ack(&mut self, rx: &Rx<'_, '_>, out: &mut Vec<Outgoing>) {
        let Rx {
            now,
            side,
            src,
            msg,
        } = *rx;
        // ACK for a non-2xx final: hop by hop, it ends our server transaction.
        let key = server_key(side, msg, true);
        if let Some(&id) = self.server_index.get(&key) {
            if let Some(t) = self.txns.get_mut(id) {
                if t.phase == Phase::Completed {
                    t.phase = Phase::Confirmed;
                    t.retx_at = None;
                    t.timeout_at = None;
                    t.cleanup_at = Some(now + self.cfg.t2);
                    self.arm(id);
                    return;
                }
            }
        }
        // ACK for a 2xx: end to end, routed through the dialog without a transaction.
        if msg.to.tag().is_none() {
            return;
        }
        let Some(did) = self
            .dialog_index
            .get(&(side, Box::from(msg.call_id)))
            .copied()
        else {
            return;
        };
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        let from_leg = d.leg_on(side);
        self.offer_answer(did, from_leg, msg);
        let branch = self.new_branch_stateless();
        let (bytes, dst, dest_side, _) =
            self.build_in_dialog_request(msg, did, from_leg, &branch, ipv4_of(src));
        out.push(Outgoing {
            side: dest_side,
            dst,
            data: bytes,
        });
    }

    fn on_cancel(&mut self, rx: &Rx<'_, '_>, out: &mut Vec<Outgoing>) {
        let Rx {
            now,
            side,
            src,
            msg,
        } = *rx;
        let key = server_key(side, msg, true);
        let Some(&id) = self.server_index.get(&key) else {
            let tag = self.next_u64();
            out.push(Outgoing {
                side,
                dst: src,
                data: local_response(msg, 481, reason(481), tag, b""),
            });
            return;
        };
        let tag = self.next_u64();
        out.push(Outgoing {
            side,
            dst: src,
            data: local_response(msg, 200, reason(200), tag, b""),
        });
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        if t.phase != Phase::Proceeding || t.cancel != CancelState::None {
            return;
        }
        if t.provisional {
            self.send_cancel(id, now, out);
        } else {
            t.cancel = CancelState::Pending;
        }
    }

    fn new_invite(&mut self, rx: &Rx<'_, '_>, key: Box<[u8]>, out: &mut Vec<Outgoing>) {
        let Rx {
            now,
            side,
            src,
            msg,
        } = *rx;
        let StartLine::Request { uri, .. } = msg.start else {
            return;
        };
        let user = SipUri::parse(uri)
            .and_then(|u| u.user_number())
            .unwrap_or_default();
        let source = ipv4_of(src);
        let req = RouteRequest {
            source,
            user,
            tenant_header: msg.header_named(TENANT_HEADER),
        };
        let mut random = self.next_u64();
        let decision = self.snapshot.route(side, &req, &mut random);
        let (tenant_id, user, candidates) = match decision {
            Decision::Reject { code, reason } => {
                self.stats.calls_rejected.inc();
                self.emit(None, CallResult::Rejected);
                if code == 403 && self.cfg.policy.drop_unknown_sources {
                    return;
                }
                let tag = self.next_u64();
                out.push(Outgoing {
                    side,
                    dst: src,
                    data: local_response(msg, code, reason, tag, b""),
                });
                return;
            }
            Decision::Route {
                tenant_id,
                user,
                candidates,
                ..
            } => (tenant_id, user, candidates),
        };
        let Some(target) = candidates.first().cloned() else {
            return;
        };
        if let Some(tid) = &tenant_id {
            if !self.admit(tid, now) {
                self.stats.calls_limited.inc();
                self.emit(Some(tid), CallResult::LimitExceeded);
                let code = self.cfg.policy.limit_code;
                let extra = format!("Retry-After: {}\r\n", self.cfg.policy.retry_after_s);
                let tag = self.next_u64();
                let why = if code == 503 {
                    "Service Unavailable - tenant limit"
                } else {
                    reason(code)
                };
                out.push(Outgoing {
                    side,
                    dst: src,
                    data: local_response(msg, code, why, tag, extra.as_bytes()),
                });
                return;
            }
        }
        let dest_side = side.other();
        let ours_b = self.cfg.addr(dest_side);
        let (ruri, callee_party) = self.callee_for(msg, &user, &target, dest_side, source);
        let callee_call_id = self.new_call_id();
        let hider_b = self.hider(dest_side, source);
        let caller = Leg {
            side,
            call_id: msg.call_id.to_vec(),
            remote_target: first_contact_uri(msg).unwrap_or(msg.from.uri).to_vec(),
            route_set: msg
                .values(HeaderName::RecordRoute)
                .map(<[u8]>::to_vec)
                .collect(),
            peer: src,
            caller: without_tag(&msg.from),
            callee: without_tag(&msg.to),
            cseq_sent: 0,
        };
        let callee = Leg {
            side: dest_side,
            call_id: callee_call_id,
            remote_target: ruri,
            route_set: Vec::new(),
            peer: SocketAddr::V4(target.addr),
            caller: party_for(&msg.from, *ours_b.ip(), None, &hider_b),
            callee: callee_party,
            cseq_sent: 0,
        };
        let dialog = Dialog {
            call: self.next_call,
            state: DialogState::Early,
            caller,
            callee,
            started: now,
            answered: None,
            tenant_id,
            media: Vec::new(),
            caller_tag: msg.from.tag().unwrap_or_default().to_vec(),
            callee_tag: Vec::new(),
        };
        self.next_call += 1;
        let did = self.dialogs.insert(dialog);
        self.dialog_index
            .insert((side, Box::from(msg.call_id)), did);
        if let Some(d) = self.dialogs.get(did) {
            self.dialog_index
                .insert((dest_side, Box::from(d.callee.call_id.as_slice())), did);
        }
        self.stats.calls_total.inc();
        self.stats.dialogs.set(self.dialogs.len() as u64);

        // 100 Trying at once, then the INVITE toward the far side.
        let trying = local_response(msg, 100, reason(100), 0, b"");
        out.push(Outgoing {
            side,
            dst: src,
            data: trying.clone(),
        });
        let raw = msg.raw;
        self.offer_answer(did, LegRef::Caller, msg);
        let id = self.start_txn(rx, key, did, LegRef::Caller, Some(trying), out);
        let more = candidates.len() > 1;
        if let Some(t) = id.and_then(|id| self.txns.get_mut(id)) {
            t.route = Some(Box::new(RouteState {
                candidates,
                attempt: 0,
                invite: raw.to_vec(),
                user,
            }));
            if more {
                t.timeout_at = Some(now + self.cfg.policy.fr_timer.min(64 * self.cfg.t1));
            }
        }
        if let Some(id) = id {
            self.arm(id);
        }
    }

    /// The Request-URI and To value for `target` on the callee leg.
    fn callee_for(
        &self,
        msg: &SipMessage<'_>,
        user: &[u8],
        target: &Target,
        dest_side: Side,
        source: Ipv4Addr,
    ) -> (Vec<u8>, Vec<u8>) {
        let host = SipUri::parse(target.uri.as_bytes()).map_or(b"".as_slice(), |u| u.host);
        let mut ruri = b"sip:".to_vec();
        if !user.is_empty() {
            ruri.extend_from_slice(user);
            ruri.push(b'@');
        }
        ruri.extend_from_slice(host);
        let _ = write!(ruri, ":{}", target.addr.port());
        let hider = self.hider(dest_side, source);
        let party = party_for(
            &msg.to,
            *target.addr.ip(),
            Some((user, target.addr.port())),
            &hider,
        );
        // A tenant prefix stripped from the number leaves no trace in the To
        // display name either (LiveKit shows it).
        let dialled = match msg.start {
            StartLine::Request { uri, .. } => SipUri::parse(uri).and_then(|u| u.user_number()),
            StartLine::Response { .. } => None,
        };
        let party = match dialled {
            Some(d) if !d.is_empty() && d != user => replace_all(&party, d, user),
            _ => party,
        };
        (ruri, party)
    }

    /// Per-tenant admission: live calls below `max_concurrent` and a token
    /// from the `max_cps` bucket (capacity `max_cps`, refilled continuously).
    fn admit(&mut self, tenant_id: &str, now: Ms) -> bool {
        let Some(t) = self.snapshot.tenant(tenant_id) else {
            return true;
        };
        let (cps, max_live) = (f64::from(t.max_cps), t.max_concurrent);
        let load = self
            .loads
            .entry(tenant_id.to_string())
            .or_insert(TenantLoad {
                tokens: cps,
                last: now,
                active: 0,
            });
        load.tokens =
            (load.tokens + (now.saturating_sub(load.last)) as f64 * cps / 1000.0).min(cps);
        load.last = now;
        if load.active >= max_live || load.tokens < 1.0 {
            return false;
        }
        load.tokens -= 1.0;
        load.active += 1;
        true
    }

    /// Live calls per tenant, as the limits count them.
    pub fn tenant_calls(&self, tenant_id: &str) -> u32 {
        self.loads.get(tenant_id).map_or(0, |l| l.active)
    }

    fn emit(&self, tenant: Option<&String>, result: CallResult) {
        if self
            .stats
            .call_events
            .push(CallEvent {
                tenant: tenant.cloned(),
                result,
            })
            .is_err()
        {
            self.stats.call_events_dropped.inc();
        }
    }

    /// Fails over to the next candidate of an initial INVITE; `false` when
    /// none is left.
    fn try_next(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) -> bool {
        let Some(t) = self.txns.get_mut(id) else {
            return false;
        };
        if t.cancel != CancelState::None {
            return false;
        }
        let Some(route) = t.route.as_mut() else {
            return false;
        };
        let next = route.attempt + 1;
        let Some(target) = route.candidates.get(next as usize).cloned() else {
            return false;
        };
        route.attempt = next;
        let more = (next as usize) + 1 < route.candidates.len();
        let (invite, user) = (route.invite.clone(), route.user.clone());
        let (did, source, dest_side) = (t.dialog, ipv4_of(t.orig_addr), t.dest_side);
        let Ok(msg) = SipMessage::parse(&invite) else {
            return false;
        };
        let (ruri, party) = self.callee_for(&msg, &user, &target, dest_side, source);
        if let Some(d) = self.dialogs.get_mut(did) {
            d.callee.remote_target = ruri;
            d.callee.callee = party;
            d.callee.route_set.clear();
            d.callee.peer = SocketAddr::V4(target.addr);
        }
        let branch = self.branch_for(id, next);
        let (bytes, dst, _, outbound) =
            self.build_in_dialog_request(&msg, did, LegRef::Caller, &branch, source);
        let (t1, fr) = (self.cfg.t1, self.cfg.policy.fr_timer);
        let Some(t) = self.txns.get_mut(id) else {
            return false;
        };
        t.dest_addr = dst;
        t.request = bytes.clone();
        t.outbound = outbound;
        t.provisional = false;
        t.retx_every = t1;
        t.retx_at = Some(now + t1);
        t.timeout_at = Some(now + if more { fr.min(64 * t1) } else { 64 * t1 });
        self.stats.failovers.inc();
        out.push(Outgoing {
            side: dest_side,
            dst,
            data: bytes,
        });
        self.arm(id);
        true
    }

    /// Ends an INVITE (or other) server transaction with a response of ours.
    fn fail_txn(&mut self, id: Id, now: Ms, code: u16, out: &mut Vec<Outgoing>) {
        let t1 = self.cfg.t1;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        let resp = txn_response(t, code);
        out.push(Outgoing {
            side: t.orig_side,
            dst: t.orig_addr,
            data: resp.clone(),
        });
        t.phase = Phase::Completed;
        t.last_response = Some(resp);
        if t.invite {
            t.retx_every = t1;
            t.retx_at = Some(now + t1);
            t.timeout_at = Some(now + 64 * t1);
        } else {
            t.retx_at = None;
            t.timeout_at = None;
            t.cleanup_at = Some(now + 64 * t1);
        }
        if t.initial {
            self.end_dialog_of(
                id,
                Some(if code == 487 {
                    CallResult::Cancelled
                } else {
                    CallResult::Failed
                }),
            );
        } else if t.bye {
            self.end_dialog_of(id, None);
        }
        self.arm(id);
    }

    fn forward_in_dialog(
        &mut self,
        rx: &Rx<'_, '_>,
        did: Id,
        key: Box<[u8]>,
        out: &mut Vec<Outgoing>,
    ) {
        let Rx { side, src, msg, .. } = *rx;
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let orig = d.leg_on(side);
        // Target refresh (RFC 3261 12.2.2).
        if matches!(msg.method(), Method::Invite | Method::Update) {
            if let Some(c) = first_contact_uri(msg) {
                d.leg_mut(orig).remote_target = c.to_vec();
            }
        }
        d.leg_mut(orig).peer = src;
        let provisional = if msg.method() == Method::Invite {
            let trying = local_response(msg, 100, reason(100), 0, b"");
            out.push(Outgoing {
                side,
                dst: src,
                data: trying.clone(),
            });
            Some(trying)
        } else {
            None
        };
        self.offer_answer(did, orig, msg);
        self.start_txn(rx, key, did, orig, provisional, out);
    }

    /// Creates the proxy transaction for `msg` and sends the request on.
    fn start_txn(
        &mut self,
        rx: &Rx<'_, '_>,
        key: Box<[u8]>,
        did: Id,
        orig: LegRef,
        last_response: Option<Vec<u8>>,
        out: &mut Vec<Outgoing>,
    ) -> Option<Id> {
        let Rx {
            now,
            side,
            src,
            msg,
        } = *rx;
        // The INVITE that creates the dialog (no To tag yet).
        let initial = msg.method() == Method::Invite && msg.to.tag().is_none();
        let d = self.dialogs.get(did)?;
        let invite = msg.method() == Method::Invite;
        let echo = |name: HeaderName| -> Vec<u8> {
            msg.headers
                .iter()
                .filter(|h| h.name == name)
                .flat_map(|h| raw_line(h.raw_name, h.value))
                .collect()
        };
        let local_tag = rng::next(&mut self.rng);
        let txn = Txn {
            invite,
            bye: msg.method() == Method::Bye,
            server_key: key.clone(),
            dialog: did,
            orig,
            initial,
            phase: Phase::Proceeding,
            orig_side: side,
            orig_addr: src,
            vias: echo(HeaderName::Via),
            from_line: echo(HeaderName::From),
            to_value: msg
                .header(HeaderName::To)
                .map(|h| h.value.to_vec())
                .unwrap_or_default(),
            call_id_line: echo(HeaderName::CallId),
            cseq_line: echo(HeaderName::CSeq),
            local_tag,
            last_response,
            dest_side: side.other(),
            dest_addr: d.leg(orig.other()).next_hop(),
            request: Vec::new(),
            outbound: Outbound::default(),
            provisional: false,
            cancel: CancelState::None,
            retx_at: Some(now + self.cfg.t1),
            retx_every: self.cfg.t1,
            timeout_at: Some(now + 64 * self.cfg.t1),
            cleanup_at: None,
            route: None,
        };
        let id = self.txns.insert(txn);
        self.server_index.insert(key, id);
        if let Some(d) = self.dialogs.get_mut(did) {
            let to = d.leg_mut(orig.other());
            to.cseq_sent = to.cseq_sent.max(msg.cseq.seq);
        }
        let branch = self.branch_for(id, 0);
        let (bytes, dst, _, outbound) =
            self.build_in_dialog_request(msg, did, orig, &branch, ipv4_of(src));
        if let Some(t) = self.txns.get_mut(id) {
            t.dest_addr = dst;
            t.request = bytes.clone();
            t.outbound = outbound;
        }
        out.push(Outgoing {
            side: side.other(),
            dst,
            data: bytes,
        });
        self.stats.transactions.set(self.txns.len() as u64);
        self.arm(id);
        Some(id)
    }

    /// Re-writes a request from leg `orig` for the other leg of dialog `did`.
    /// Returns the bytes, the next hop, its side and what ACK/CANCEL repeat.
    fn build_in_dialog_request(
        &self,
        msg: &SipMessage<'_>,
        did: Id,
        orig: LegRef,
        branch: &[u8],
        source: Ipv4Addr,
    ) -> (Vec<u8>, SocketAddr, Side, Outbound) {
        let Some(d) = self.dialogs.get(did) else {
            return (
                Vec::new(),
                SocketAddr::V4(self.cfg.sip[Side::Private]),
                Side::Private,
                Outbound::default(),
            );
        };
        let to_leg = d.leg(orig.other());
        let dest_side = to_leg.side;
        let ours = self.cfg.addr(dest_side);
        let hider = self.hider(dest_side, source);
        let from_caller = orig == LegRef::Caller;

        let method = msg.method();
        let mut b = Builder::request(method.as_bytes(), &to_leg.remote_target);
        let mut via = Vec::with_capacity(64);
        let _ = write!(via, "SIP/2.0/UDP {ours};branch=");
        via.extend_from_slice(branch);
        b.header("Via", &[&via]);
        let mut routes = Vec::new();
        for r in &to_leg.route_set {
            routes.extend(raw_line(b"Route", r));
        }
        b.raw(&routes);
        let is_initial = msg.to.tag().is_none() && method == Method::Invite;
        if is_initial {
            b.raw(&record_route(ours));
        }
        let mut out_from = Vec::new();
        let mut out_to = Vec::new();
        let mut saw_mf = false;
        for h in &msg.headers {
            match h.name {
                HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::ContentLength => {}
                HeaderName::From => {
                    out_from = with_tag(to_leg.party(from_caller), msg.from.tag());
                    b.header("From", &[&out_from]);
                }
                HeaderName::To => {
                    out_to = with_tag(to_leg.party(!from_caller), msg.to.tag());
                    b.header("To", &[&out_to]);
                }
                HeaderName::CallId => {
                    b.header("Call-ID", &[&to_leg.call_id]);
                }
                HeaderName::Contact => {
                    b.raw(&our_contact(ours));
                }
                HeaderName::MaxForwards => {
                    saw_mf = true;
                    let mf = msg.max_forwards.unwrap_or(70).saturating_sub(1).min(255);
                    let _ = write!(b.buf_mut(), "Max-Forwards: {mf}\r\n");
                }
                HeaderName::Other
                    if is_initial && h.raw_name.eq_ignore_ascii_case(TENANT_HEADER.as_bytes()) => {}
                _ => copy_hidden(&mut b, h.raw_name, h.value, &hider),
            }
        }
        // LiveKit maps X-* headers to call attributes: tell it the tenant.
        if is_initial && dest_side == Side::Public {
            if let Some(tenant) = &d.tenant_id {
                b.header(TENANT_HEADER, &[tenant.as_bytes()]);
            }
        }
        if !saw_mf {
            b.header("Max-Forwards", &[b"70"]);
        }
        let body = self.body_for(did, orig.other(), msg, &hider);
        let bytes = b.finish(&body);
        let outbound = Outbound {
            ruri: to_leg.remote_target.clone(),
            via,
            from: out_from,
            to: out_to,
            call_id: to_leg.call_id.clone(),
            cseq: msg.cseq.seq,
            routes,
        };
        (bytes, to_leg.next_hop(), dest_side, outbound)
    }

    // ----- responses ------------------------------------------------------

    fn on_response(&mut self, rx: &Rx<'_, '_>, out: &mut Vec<Outgoing>) {
        let Rx {
            now,
            side,
            src,
            msg,
        } = *rx;
        let StartLine::Response { code, .. } = msg.start else {
            return;
        };
        let Some((id, attempt)) = msg.via.branch.and_then(|b| self.parse_branch(b)) else {
            self.stats.stray_responses.inc();
            return;
        };
        let Some(t) = self.txns.get_mut(id) else {
            self.stats.stray_responses.inc();
            return;
        };
        let current = t.route.as_ref().map_or(0, |r| r.attempt);
        if t.dest_side != side || attempt != current {
            self.stats.stray_responses.inc();
            return;
        }
        if msg.cseq.method == Method::Cancel {
            if t.cancel == CancelState::Sent {
                t.cancel = CancelState::Answered;
            }
            return;
        }
        if msg.cseq.method != Method::Ack && (msg.cseq.method == Method::Invite) != t.invite {
            self.stats.stray_responses.inc();
            return;
        }
        match code {
            100..=199 => {
                let first = !t.provisional;
                t.provisional = true;
                if t.invite {
                    t.retx_at = None;
                    if t.phase == Phase::Proceeding && first {
                        t.timeout_at = Some(now + self.cfg.timer_c);
                    }
                } else {
                    t.retx_every = self.cfg.t2;
                }
                let pending_cancel = t.cancel == CancelState::Pending;
                if pending_cancel {
                    self.send_cancel(id, now, out);
                }
                if code > 100
                    && self
                        .txns
                        .get(id)
                        .is_some_and(|t| t.phase == Phase::Proceeding)
                {
                    self.learn_from_response(id, src, msg);
                    if let Some(bytes) = self.relay_response(id, msg, code, out) {
                        if let Some(t) = self.txns.get_mut(id) {
                            t.last_response = Some(bytes);
                        }
                    }
                }
                self.arm(id);
            }
            200..=299 => {
                let phase = t.phase;
                if t.invite {
                    if phase == Phase::Proceeding {
                        t.phase = Phase::Accepted;
                        t.retx_at = None;
                        t.timeout_at = None;
                        t.cleanup_at = Some(now + 64 * self.cfg.t1);
                        self.learn_from_response(id, src, msg);
                        self.answered(id, now);
                    }
                    // 2xx retransmissions are relayed too (RFC 3261 16.7 step 5 / RFC 6026).
                    if matches!(phase, Phase::Proceeding | Phase::Accepted) {
                        self.relay_response(id, msg, code, out);
                    }
                } else if phase == Phase::Proceeding {
                    self.final_non_invite(id, now, msg, code, out);
                }
                self.arm(id);
            }
            _ => {
                if t.invite {
                    // Hop-by-hop ACK for every non-2xx final, retransmissions included.
                    let ack = build_ack(&t.outbound, msg);
                    out.push(Outgoing {
                        side: t.dest_side,
                        dst: t.dest_addr,
                        data: ack,
                    });
                    let failover = t.phase == Phase::Proceeding
                        && t.initial
                        && t.cancel == CancelState::None
                        && self.cfg.policy.failover_codes.contains(&code);
                    if failover {
                        // Serial failover; when nothing is left the caller gets our 503.
                        if !self.try_next(id, now, out) {
                            self.fail_txn(id, now, 503, out);
                        }
                        return;
                    }
                    if t.phase == Phase::Proceeding {
                        t.phase = Phase::Completed;
                        t.retx_at = Some(now + self.cfg.t1);
                        t.retx_every = self.cfg.t1;
                        t.timeout_at = Some(now + 64 * self.cfg.t1);
                        let initial = t.initial;
                        let cancelled = t.cancel != CancelState::None;
                        // A 503 from downstream is not relayed as is (RFC 3261 16.7 step 6).
                        let relay_code = if code == 503 { 500 } else { code };
                        if let Some(bytes) = self.relay_response(id, msg, relay_code, out) {
                            if let Some(t) = self.txns.get_mut(id) {
                                t.last_response = Some(bytes);
                            }
                        }
                        if initial {
                            let result = if cancelled {
                                CallResult::Cancelled
                            } else {
                                CallResult::Failed
                            };
                            self.end_dialog_of(id, Some(result));
                        }
                    }
                } else if t.phase == Phase::Proceeding {
                    self.final_non_invite(id, now, msg, code, out);
                }
                self.arm(id);
            }
        }
    }

    fn final_non_invite(
        &mut self,
        id: Id,
        now: Ms,
        msg: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) {
        if let Some(t) = self.txns.get_mut(id) {
            t.phase = Phase::Completed;
            t.retx_at = None;
            t.timeout_at = None;
            t.cleanup_at = Some(now + 64 * self.cfg.t1);
        }
        let relay_code = if code == 503 { 500 } else { code };
        if let Some(bytes) = self.relay_response(id, msg, relay_code, out) {
            if let Some(t) = self.txns.get_mut(id) {
                t.last_response = Some(bytes);
            }
        }
        if msg.cseq.method == Method::Bye {
            self.end_dialog_of(id, None);
        }
    }

    /// Learns the far leg's target and route set from a dialog-creating or
    /// target-refreshing response.
    fn learn_from_response(&mut self, id: Id, src: SocketAddr, msg: &SipMessage<'_>) {
        if let Some((did, far, initial)) = self
            .txns
            .get(id)
            .map(|t| (t.dialog, t.orig.other(), t.initial))
        {
            self.offer_answer(did, far, msg);
            if let (true, Some(tag), Some(d)) = (initial, msg.to.tag(), self.dialogs.get_mut(did)) {
                d.callee_tag = tag.to_vec();
            }
        }
        let Some(t) = self.txns.get(id) else { return };
        let (did, far, initial, invite) = (t.dialog, t.orig.other(), t.initial, t.invite);
        if !invite || msg.to.tag().is_none() {
            return;
        }
        let far_side = t.dest_side;
        let ours = self.cfg.addr(far_side);
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let leg = d.leg_mut(far);
        if let Some(c) = first_contact_uri(msg) {
            leg.remote_target = c.to_vec();
        }
        leg.peer = src;
        if initial {
            // As the UAC toward this leg: the route set is the Record-Route
            // list reversed, without our own entry.
            let mut rs: Vec<Vec<u8>> = msg
                .values(HeaderName::RecordRoute)
                .filter(|v| !is_our_uri(v, ours))
                .map(<[u8]>::to_vec)
                .collect();
            rs.reverse();
            leg.route_set = rs;
        }
    }

    /// Relays a response back to the sender of the request; returns the bytes.
    fn relay_response(
        &self,
        id: Id,
        msg: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) -> Option<Vec<u8>> {
        let t = self.txns.get(id)?;
        let d = self.dialogs.get(t.dialog)?;
        let back = d.leg(t.orig);
        let to_side = t.orig_side;
        let ours = self.cfg.addr(to_side);
        let hider = self.hider(to_side, ipv4_of(t.dest_addr));
        let from_caller = t.orig == LegRef::Caller;
        let reason_phrase: &[u8] = match msg.start {
            StartLine::Response { code: c, reason: r } if c == code => r,
            _ => reason(code).as_bytes(),
        };
        let mut phrase = Vec::with_capacity(reason_phrase.len());
        hider.copy(reason_phrase, &mut phrase);
        let mut b = Builder::response(code, &phrase);
        b.raw(&t.vias);
        let establishing = t.initial && msg.to.tag().is_some() && code > 100 && code < 300;
        if establishing {
            b.raw(&record_route(ours));
            for r in &back.route_set {
                b.raw(&raw_line(b"Record-Route", r));
            }
        }
        for h in &msg.headers {
            match h.name {
                HeaderName::Via
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::ContentLength => {}
                HeaderName::From => {
                    b.header(
                        "From",
                        &[&with_tag(back.party(from_caller), msg.from.tag())],
                    );
                }
                HeaderName::To => {
                    b.header("To", &[&with_tag(back.party(!from_caller), msg.to.tag())]);
                }
                HeaderName::CallId => {
                    b.header("Call-ID", &[&back.call_id]);
                }
                HeaderName::Contact => {
                    b.raw(&our_contact(ours));
                }
                _ => copy_hidden(&mut b, h.raw_name, h.value, &hider),
            }
        }
        let body = self.body_for(t.dialog, t.orig, msg, &hider);
        let bytes = b.finish(&body);
        out.push(Outgoing {
            side: to_side,
            dst: t.orig_addr,
            data: bytes.clone(),
        });
        Some(bytes)
    }

    // ----- timers and state changes ----------------------------------------

    /// Queues the transaction's next deadline.
    fn arm(&mut self, id: Id) {
        if let Some(when) = self.txns.get(id).and_then(Txn::next_deadline) {
            self.timers.push(Reverse((when, id.idx, id.gen)));
        }
    }

    fn service(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t2 = self.cfg.t2;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        if t.cleanup_at.is_some_and(|c| c <= now) {
            return self.remove_txn(id);
        }
        if t.retx_at.is_some_and(|r| r <= now) {
            match t.phase {
                Phase::Proceeding => {
                    let data = if t.cancel == CancelState::Sent {
                        build_cancel(&t.outbound)
                    } else {
                        t.request.clone()
                    };
                    out.push(Outgoing {
                        side: t.dest_side,
                        dst: t.dest_addr,
                        data,
                    });
                    let capped = !t.invite || t.cancel == CancelState::Sent;
                    t.retx_every = if capped {
                        (t.retx_every * 2).min(t2)
                    } else {
                        t.retx_every * 2
                    };
                    t.retx_at = Some(now + t.retx_every);
                }
                Phase::Completed if t.invite => {
                    if let Some(resp) = &t.last_response {
                        out.push(Outgoing {
                            side: t.orig_side,
                            dst: t.orig_addr,
                            data: resp.clone(),
                        });
                    }
                    t.retx_every = (t.retx_every * 2).min(t2);
                    t.retx_at = Some(now + t.retx_every);
                }
                _ => t.retx_at = None,
            }
        }
        if t.timeout_at.is_some_and(|x| x <= now) {
            t.timeout_at = None;
            match t.phase {
                Phase::Proceeding if t.invite && t.provisional && t.cancel == CancelState::None => {
                    // Timer C: the far side rang too long.
                    self.send_cancel(id, now, out);
                }
                Phase::Proceeding => {
                    // Timer B/F (or the failover timer), or no answer to our CANCEL.
                    let cancelled = t.cancel != CancelState::None;
                    let tried = t
                        .route
                        .as_ref()
                        .map_or(1, |r| r.candidates.len().min(r.attempt as usize + 2));
                    if !cancelled && t.initial && self.try_next(id, now, out) {
                        return;
                    }
                    let code = if cancelled {
                        487
                    } else if tried > 1 {
                        503
                    } else {
                        408
                    };
                    return self.fail_txn(id, now, code, out);
                }
                _ => return self.remove_txn(id),
            }
        }
        self.arm(id);
    }

    fn send_cancel(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t1 = self.cfg.t1;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        t.cancel = CancelState::Sent;
        out.push(Outgoing {
            side: t.dest_side,
            dst: t.dest_addr,
            data: build_cancel(&t.outbound),
        });
        t.retx_every = t1;
        t.retx_at = Some(now + t1);
        t.timeout_at = Some(now + 64 * t1);
        self.arm(id);
    }

    fn remove_txn(&mut self, id: Id) {
        if let Some(t) = self.txns.remove(id) {
            if self.server_index.get(&t.server_key) == Some(&id) {
                self.server_index.remove(&t.server_key);
            }
        }
        self.stats.transactions.set(self.txns.len() as u64);
    }

    fn answered(&mut self, id: Id, now: Ms) {
        let Some(t) = self.txns.get(id) else { return };
        if !t.initial {
            return;
        }
        if let Some(d) = self.dialogs.get_mut(t.dialog) {
            if d.state == DialogState::Early {
                d.state = DialogState::Confirmed;
                d.answered = Some(now);
                self.stats.calls_answered.inc();
                self.stats.calls_up.inc();
                let tenant = d.tenant_id.clone();
                self.emit(tenant.as_ref(), CallResult::Answered);
            }
        }
    }

    /// Removes the dialog of transaction `id`, releasing its tenant's slot.
    /// `result` is how an unanswered call ended (`None`: an answered call's end).
    fn end_dialog_of(&mut self, id: Id, result: Option<CallResult>) {
        if let Some(did) = self.txns.get(id).map(|t| t.dialog) {
            self.end_dialog(did, result);
        }
    }

    /// Removes a dialog, its media and its tenant slot, and writes its call
    /// record; `result` is how an unanswered call ended (`None`: an answered
    /// call's end; an answered call ended by media timeout says so).
    fn end_dialog(&mut self, did: Id, result: Option<CallResult>) {
        let Some(d) = self.dialogs.remove(did) else {
            return;
        };
        for leg in [&d.caller, &d.callee] {
            self.dialog_index
                .remove(&(leg.side, Box::from(leg.call_id.as_slice())));
        }
        let record = CallRecord {
            call: d.call,
            tenant: d.tenant_id.clone(),
            result: match (d.state, result) {
                (_, Some(r)) => r,
                (DialogState::Confirmed, None) => CallResult::Answered,
                (DialogState::Early, None) => CallResult::Failed,
            },
            caller_side: d.caller.side,
            caller_call_id: String::from_utf8_lossy(&d.caller.call_id).into_owned(),
            callee_call_id: String::from_utf8_lossy(&d.callee.call_id).into_owned(),
            setup_ms: d.answered.map(|a| a.saturating_sub(d.started)),
            duration_ms: d.answered.map_or(0, |a| self.now.saturating_sub(a)),
            media: Vec::with_capacity(d.media.len()),
        };
        self.release_media(&d, record);
        if let Some(load) = d.tenant_id.as_ref().and_then(|t| self.loads.get_mut(t)) {
            load.active = load.active.saturating_sub(1);
        }
        if d.state == DialogState::Confirmed {
            self.stats.calls_up.dec();
        } else if let Some(result) = result {
            if result == CallResult::Failed {
                self.stats.calls_failed.inc();
            }
            self.emit(d.tenant_id.as_ref(), result);
        }
        self.stats.dialogs.set(self.dialogs.len() as u64);
    }

    // ----- media --------------------------------------------------------

    /// An SDP (offer or answer) from leg `from`: allocates a port pair on each
    /// side for every new media line, installs its RTP and RTCP streams, and
    /// points our ends on `from`'s side at the addresses the SDP gives.
    fn offer_answer(&mut self, did: Id, from: LegRef, msg: &SipMessage<'_>) {
        if self.cfg.media.is_none() || !is_sdp(msg) {
            return;
        }
        let Ok(sdp) = SdpRepr::parse(msg.body) else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let (caller_side, callee_side) = (d.caller.side, d.callee.side);
        let Some(ports) = self.ports.as_mut() else {
            return;
        };
        for (i, m) in sdp.media.iter().enumerate() {
            if i >= d.media.len() {
                let pair = if m.port == 0 {
                    [0, 0]
                } else {
                    take_pair(ports, caller_side, callee_side)
                };
                if pair[0] != 0 {
                    for rtcp in [false, true] {
                        let off = u16::from(rtcp);
                        self.media_cmds.push(MediaCmd::Install(Stream {
                            ends: [
                                End::new(caller_side, pair[0] + off, None),
                                End::new(callee_side, pair[1] + off, None),
                            ],
                            rtcp,
                            last_active: 0,
                        }));
                    }
                }
                if pair[0] != 0 {
                    self.media_index.insert((caller_side, pair[0]), did);
                }
                d.media.push(pair);
            }
            let Some(pair) = d.media.get(i) else { continue };
            let (side, port) = match from {
                LegRef::Caller => (caller_side, pair[0]),
                LegRef::Callee => (callee_side, pair[1]),
            };
            if port == 0 {
                continue;
            }
            let peer = |p: u16| (m.port != 0).then(|| SocketAddrV4::new(m.addr, p));
            self.media_cmds.push(MediaCmd::Peer {
                side,
                port,
                peer: peer(m.port),
            });
            self.media_cmds.push(MediaCmd::Peer {
                side,
                port: port + 1,
                peer: peer(m.rtcp()),
            });
        }
    }

    /// The body of `msg` as leg `to` must see it: SDP with our media address
    /// and ports when media is relayed, every other address hidden.
    fn body_for(&self, did: Id, to: LegRef, msg: &SipMessage<'_>, hider: &Hider<'_>) -> Vec<u8> {
        let rewritten = match (self.cfg.media, self.dialogs.get(did)) {
            (Some(media), Some(d)) if is_sdp(msg) && !d.media.is_empty() => {
                let idx = usize::from(to == LegRef::Callee);
                let ports: Vec<u16> = d
                    .media
                    .iter()
                    .map(|p| p.get(idx).copied().unwrap_or(0))
                    .collect();
                sdp::rewrite(msg.body, media.ip[d.leg(to).side], &ports).ok()
            }
            _ => None,
        };
        let mut body = Vec::with_capacity(msg.body.len() + 16);
        hider.copy(rewritten.as_deref().unwrap_or(msg.body), &mut body);
        body
    }

    /// The relay saw no media on the stream at our `port` on `side` for the
    /// media timeout: an answered call is ended with a BYE to both legs.
    pub fn media_idle(&mut self, side: Side, port: u16, out: &mut Vec<Outgoing>) {
        let Some(&did) = self.media_index.get(&(side, port)) else {
            return;
        };
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        if d.state != DialogState::Confirmed {
            return;
        }
        for to in [LegRef::Caller, LegRef::Callee] {
            let branch = self.new_branch_stateless();
            if let Some(o) = self
                .dialogs
                .get(did)
                .and_then(|d| self.bye_for(d, to, &branch))
            {
                out.push(o);
            }
        }
        self.stats.media_timeouts.inc();
        let tenant = self.dialogs.get(did).and_then(|d| d.tenant_id.clone());
        self.emit(tenant.as_ref(), CallResult::MediaTimeout);
        self.end_dialog(did, Some(CallResult::MediaTimeout));
    }

    /// A BYE of ours toward leg `to`, as if the other party hung up.
    fn bye_for(&self, d: &Dialog, to: LegRef, branch: &[u8]) -> Option<Outgoing> {
        let leg = d.leg(to);
        let ours = self.cfg.addr(leg.side);
        let (from_tag, to_tag) = match to {
            LegRef::Caller => (&d.callee_tag, &d.caller_tag),
            LegRef::Callee => (&d.caller_tag, &d.callee_tag),
        };
        let from_caller = to == LegRef::Callee;
        let mut via = Vec::with_capacity(64);
        let _ = write!(via, "SIP/2.0/UDP {ours};branch=");
        via.extend_from_slice(branch);
        let mut b = Builder::request(b"BYE", &leg.remote_target);
        b.header("Via", &[&via]);
        for r in &leg.route_set {
            b.raw(&raw_line(b"Route", r));
        }
        b.header("Max-Forwards", &[b"70"])
            .header("From", &[&with_tag(leg.party(from_caller), Some(from_tag))])
            .header("To", &[&with_tag(leg.party(!from_caller), Some(to_tag))])
            .header("Call-ID", &[&leg.call_id]);
        let _ = write!(
            b.buf_mut(),
            "CSeq: {} BYE\r\n",
            leg.cseq_sent.saturating_add(1)
        );
        b.header("Reason", &[b"SIP;cause=408;text=\"media timeout\""]);
        Some(Outgoing {
            side: leg.side,
            dst: leg.next_hop(),
            data: b.finish(b""),
        })
    }

    /// Removes a dialog's streams and gives its ports back. The call record
    /// goes with the streams' removal, for the relay to add their figures,
    /// or straight to the control plane when the call relayed no media.
    fn release_media(&mut self, d: &Dialog, record: CallRecord) {
        let mut rtp_ports = Vec::new();
        if let Some(ports) = self.ports.as_mut() {
            for pair in d.media.iter().filter(|p| p[0] != 0) {
                rtp_ports.push((d.caller.side, pair[0]));
                self.media_index.remove(&(d.caller.side, pair[0]));
                ports[d.caller.side].give(pair[0]);
                ports[d.callee.side].give(pair[1]);
            }
        }
        if rtp_ports.is_empty() {
            self.stats.record(record);
        } else {
            self.media_cmds.push(MediaCmd::Release {
                rtp_ports,
                record: Box::new(record),
            });
        }
    }

    // ----- identifiers ----------------------------------------------------

    fn next_u64(&mut self) -> u64 {
        rng::next(&mut self.rng)
    }

    fn branch_for(&self, id: Id, attempt: u32) -> Vec<u8> {
        let mut b = BRANCH_PREFIX.to_vec();
        let _ = write!(
            b,
            "{:08x}{:x}.{:x}.{:x}",
            self.salt, id.idx, id.gen, attempt
        );
        b
    }

    /// Our transaction behind a branch we generated, if it is one.
    fn parse_branch(&self, branch: &[u8]) -> Option<(Id, u32)> {
        let rest = branch.strip_prefix(BRANCH_PREFIX)?;
        let salt = std::str::from_utf8(rest.get(..8)?).ok()?;
        if u32::from_str_radix(salt, 16).ok()? != self.salt {
            return None;
        }
        let ids = std::str::from_utf8(rest.get(8..)?).ok()?;
        let mut parts = ids.split('.');
        let mut field = || parts.next().and_then(|p| u32::from_str_radix(p, 16).ok());
        let id = Id {
            idx: field()?,
            gen: field()?,
        };
        Some((id, field()?))
    }

    /// A branch for a stateless forward (ACK for 2xx); never parses as ours.
    fn new_branch_stateless(&mut self) -> Vec<u8> {
        let mut b = BRANCH_PREFIX.to_vec();
        let _ = write!(b, "-{:016x}", self.next_u64());
        b
    }

    fn new_call_id(&mut self) -> Vec<u8> {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!("{a:016x}{b:016x}").into_bytes()
    }

    fn hider(&self, toward: Side, source: Ipv4Addr) -> Hider<'_> {
        Hider {
            toward,
            ours: *self.cfg.addr(toward).ip(),
            theirs: *self.cfg.addr(toward.other()).ip(),
            source,
            snapshot: &self.snapshot,
        }
    }
}

fn ipv4_of(addr: SocketAddr) -> Ipv4Addr {
    match addr {
        SocketAddr::V4(a) => *a.ip(),
        SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// The key of a server transaction (RFC 3261 17.2.3; RFC 2543 fallback).
fn server_key(side: Side, msg: &SipMessage<'_>, invite_class: bool) -> Box<[u8]> {
    let mut k = Vec::with_capacity(96);
    k.push(side as u8);
    k.push(u8::from(invite_class));
    match msg.via.rfc3261_branch() {
        Some(branch) => {
            k.extend_from_slice(branch);
            k.push(0);
            k.extend_from_slice(msg.via.host);
            let _ = write!(k, ":{}", msg.via.port.unwrap_or(5060));
        }
        None => {
            k.extend_from_slice(msg.call_id);
            let _ = write!(k, "\0{}\0", msg.cseq.seq);
            k.extend_from_slice(msg.from.tag().unwrap_or_default());
            k.push(0);
            k.extend_from_slice(msg.via.host);
            k.push(0);
            k.extend_from_slice(msg.via.branch.unwrap_or_default());
        }
    }
    k.into_boxed_slice()
}

fn raw_line(name: &[u8], value: &[u8]) -> Vec<u8> {
    [name, b": ", value, b"\r\n"].concat()
}

fn tag_param(tag: u64) -> Vec<u8> {
    format!(";tag={tag:016x}").into_bytes()
}

/// A response we generate ourselves to `msg`.
fn local_response(msg: &SipMessage<'_>, code: u16, why: &str, tag: u64, extra: &[u8]) -> Vec<u8> {
    let mut b = Builder::response(code, why.as_bytes());
    for h in &msg.headers {
        match h.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                b.raw(&raw_line(h.raw_name, h.value));
            }
            HeaderName::To => {
                let mut v = h.value.to_vec();
                if code > 100 && msg.to.tag().is_none() {
                    v.extend(tag_param(tag));
                }
                b.raw(&raw_line(h.raw_name, &v));
            }
            _ => {}
        }
    }
    b.raw(extra);
    b.finish(b"")
}

/// A response we generate for a transaction whose request is gone.
fn txn_response(t: &Txn, code: u16) -> Vec<u8> {
    let mut b = Builder::response(code, reason(code).as_bytes());
    b.raw(&t.vias).raw(&t.from_line);
    let mut to = t.to_value.clone();
    if NameAddr::parse(&to).and_then(|n| n.tag()).is_none() {
        to.extend(tag_param(t.local_tag));
    }
    b.header("To", &[&to])
        .raw(&t.call_id_line)
        .raw(&t.cseq_line);
    b.finish(b"")
}

/// An error response to a request that did not parse: echoes what it can of
/// Via, From, To, Call-ID and CSeq. Without a Via there is no one to answer.
fn error_response(bytes: &[u8], code: u16, why: &str, tag: u64) -> Option<Vec<u8>> {
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.next()?;
    let mut b = Builder::response(code, reason(code).as_bytes());
    let mut have_via = false;
    let mut seen = [false; 4];
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.first().is_some_and(|&c| c == b' ' || c == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = grammar::trim_lws(line.get(..colon).unwrap_or_default());
        let slot = match HeaderName::classify(name) {
            HeaderName::Via => {
                have_via = true;
                b.raw(line).raw(b"\r\n");
                continue;
            }
            HeaderName::From => 0,
            HeaderName::To => 1,
            HeaderName::CallId => 2,
            HeaderName::CSeq => 3,
            _ => continue,
        };
        if seen.get(slot) == Some(&true) {
            continue;
        }
        if let Some(s) = seen.get_mut(slot) {
            *s = true;
        }
        b.raw(line);
        let lower = line.to_ascii_lowercase();
        if slot == 1 && !lower.windows(4).any(|w| w == b"tag=") {
            b.raw(&tag_param(tag));
        }
        b.raw(b"\r\n");
    }
    if !have_via {
        return None;
    }
    if code == 400 {
        b.header("Warning", &[b"399 sbc \"", why.as_bytes(), b"\""]);
    }
    Some(b.finish(b""))
}

fn first_contact_uri<'a>(msg: &SipMessage<'a>) -> Option<&'a [u8]> {
    msg.values(HeaderName::Contact)
        .next()
        .and_then(NameAddr::parse)
        .map(|na| na.uri)
}

/// `display <uri>;params` without the tag parameter.
fn without_tag(na: &NameAddr<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    if !na.display.is_empty() {
        v.extend_from_slice(na.display);
        v.push(b' ');
    }
    v.push(b'<');
    v.extend_from_slice(na.uri);
    v.push(b'>');
    for p in grammar::split_params(na.params) {
        if !p.get(..3).is_some_and(|n| n.eq_ignore_ascii_case(b"tag"))
            || p.get(3).is_some_and(|&c| c != b'=' && !grammar::is_lws(c))
        {
            v.push(b';');
            v.extend_from_slice(p);
        }
    }
    v
}

fn with_tag(party: &[u8], tag: Option<&[u8]>) -> Vec<u8> {
    let mut v = party.to_vec();
    if let Some(t) = tag {
        v.extend_from_slice(b";tag=");
        v.extend_from_slice(t);
    }
    v
}

/// A From/To value for the far leg: the display name and user, at `host`.
/// `haystack` with every `from` replaced by `to`.
fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack.get(i..).is_some_and(|rest| rest.starts_with(from)) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.extend(haystack.get(i).copied());
            i += 1;
        }
    }
    out
}

fn party_for(
    na: &NameAddr<'_>,
    host: Ipv4Addr,
    user_port: Option<(&[u8], u16)>,
    hider: &Hider<'_>,
) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    if !na.display.is_empty() {
        hider.copy(na.display, &mut v);
        v.push(b' ');
    }
    v.push(b'<');
    match SipUri::parse(na.uri) {
        Some(u) => {
            v.extend_from_slice(b"sip:");
            let user = match user_port {
                Some((user, _)) if !user.is_empty() => Some(user),
                _ => u.user,
            };
            if let Some(user) = user {
                hider.copy(user, &mut v);
                v.push(b'@');
            }
            let _ = write!(v, "{host}");
            if let Some((_, port)) = user_port {
                let _ = write!(v, ":{port}");
            }
        }
        None => hider.copy(na.uri, &mut v),
    }
    v.push(b'>');
    v
}

fn record_route(ours: SocketAddrV4) -> Vec<u8> {
    format!("Record-Route: <sip:{ours};lr>\r\n").into_bytes()
}

fn our_contact(ours: SocketAddrV4) -> Vec<u8> {
    format!("Contact: <sip:sbc@{ours}>\r\n").into_bytes()
}

fn is_our_uri(value: &[u8], ours: SocketAddrV4) -> bool {
    NameAddr::parse(value)
        .and_then(|na| SipUri::parse(na.uri))
        .is_some_and(|u| {
            grammar::parse_ipv4(u.host) == Some(*ours.ip()) && u.port.unwrap_or(5060) == ours.port()
        })
}

fn copy_hidden(b: &mut Builder, name: &[u8], value: &[u8], hider: &Hider<'_>) {
    let buf = b.buf_mut();
    buf.extend_from_slice(name);
    buf.extend_from_slice(b": ");
    hider.copy(value, buf);
    buf.extend_from_slice(b"\r\n");
}

/// The hop-by-hop ACK for a non-2xx final response to our INVITE.
fn build_ack(o: &Outbound, resp: &SipMessage<'_>) -> Vec<u8> {
    let to = resp
        .header(HeaderName::To)
        .map_or(o.to.as_slice(), |h| h.value);
    outbound_request(o, b"ACK", to)
}

fn build_cancel(o: &Outbound) -> Vec<u8> {
    outbound_request(o, b"CANCEL", &o.to)
}

fn outbound_request(o: &Outbound, method: &[u8], to: &[u8]) -> Vec<u8> {
    let mut b = Builder::request(method, &o.ruri);
    b.header("Via", &[&o.via]).raw(&o.routes);
    b.header("Max-Forwards", &[b"70"])
        .header("From", &[&o.from])
        .header("To", &[to])
        .header("Call-ID", &[&o.call_id]);
    let _ = write!(b.buf_mut(), "CSeq: {} ", o.cseq);
    b.raw(method).raw(b"\r\n");
    b.finish(b"")
}

#[cfg(test)]
mod tests;

fn is_sdp(msg: &SipMessage<'_>) -> bool {
    !msg.body.is_empty()
        && msg.header(HeaderName::ContentType).is_some_and(|h| {
            grammar::trim_lws(h.value.split(|&b| b == b';').next().unwrap_or_default())
                .eq_ignore_ascii_case(b"application/sdp")
        })
}

/// A port pair on each side, or `[0, 0]` when either side has none left.
fn take_pair(ports: &mut BySide<PortPairs>, caller: Side, callee: Side) -> [u16; 2] {
    let Some(a) = ports[caller].take() else {
        return [0, 0];
    };
    match ports[callee].take() {
        Some(b) => [a, b],
        None => {
            ports[caller].give(a);
            [0, 0]
        }
    }
}
