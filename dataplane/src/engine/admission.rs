//! Per-tenant admission (Kamailio's pike/htable limits as the old stack
//! scripted them): live calls below `max_concurrent`, and a token from a
//! `max_cps` bucket.
//!
//! On one node the engine counts both itself. In a cluster
//! ([`Policy::cluster_ask_ms`](super::Policy::cluster_ask_ms) set) the limits
//! hold across every node through the control plane's shared store: a new
//! INVITE of a limited tenant is put aside and an [`AdmissionAsk::Admit`]
//! goes out on `EngineStats::admission_asks`; the control plane's
//! [`Verdict`] comes back through
//! [`SipEngine::admission_verdict`], and the INVITE is handled again with
//! it. Only that INVITE waits: the engine goes on with every other message.
//! No answer within the deadline, or a store that cannot be reached, and the
//! node admits by its share of the limits (limit / live nodes, at least 1).

use std::collections::HashMap;
use std::net::SocketAddr;

use super::{Incoming, Ms, SipEngine};
use crate::call::{AdmissionAsk, Verdict};
use crate::side::Side;
use crate::transport::Transport;

/// An INVITE put aside until its admission verdict comes.
#[derive(Debug)]
pub(super) struct Waiting {
    side: Side,
    transport: Transport,
    src: SocketAddr,
    bytes: Vec<u8>,
    /// Its server-transaction key: a retransmission meanwhile is absorbed.
    key: Box<[u8]>,
    tenant: String,
    deadline: Ms,
}

/// INVITEs put aside at once at most; past that the node's share decides
/// at once (a store this slow is as good as unreachable).
const MAX_WAITING: usize = 4_096;

/// How long a late verdict is still matched to the share's decision.
const LATE_KEEP_MS: Ms = 10_000;

/// What the INVITE being handled again was decided.
#[derive(Debug, Clone, Copy)]
pub(super) enum Decided {
    Store(Verdict),
    /// No verdict within the deadline: the share decides, and the late
    /// verdict is matched to it.
    Late(u64),
}

/// The cluster side of admission: INVITEs waiting, decisions by share the
/// store's late verdict must be squared with.
#[derive(Debug, Default)]
pub(super) struct ClusterAdmission {
    next_token: u64,
    waiting: HashMap<u64, Waiting>,
    waiting_keys: HashMap<Box<[u8]>, u64>,
    /// The decision for the INVITE handled again now.
    decided: Option<Decided>,
    /// Tokens decided by share after their deadline: (tenant, admitted, when).
    late: HashMap<u64, (String, bool, Ms)>,
}

/// How a new INVITE's admission went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admit {
    Yes,
    No,
    /// Put aside until the verdict comes: nothing more to do with it now.
    Asked,
}

impl SipEngine {
    /// Per-tenant admission: live calls below `max_concurrent` and a token
    /// from the `max_cps` bucket (capacity `max_cps`, refilled
    /// continuously); in a cluster, asked of the store (see the module).
    pub(super) fn admit(&mut self, tenant_id: &str, rx: &Incoming<'_, '_>, key: &[u8]) -> Admit {
        let Some(t) = self.snapshot.tenant(tenant_id).map(Limits::of) else {
            return Admit::Yes;
        };
        let t = (tenant_id, t);
        let Some(ask_ms) = self.cfg.policy.cluster_ask_ms else {
            return self.admit_locally(t, 1, rx.now);
        };
        match self.cluster.decided.take() {
            Some(Decided::Store(Verdict::Granted)) => {
                self.load(t, rx.now).active += 1;
                Admit::Yes
            }
            Some(Decided::Store(Verdict::Refused)) => Admit::No,
            Some(Decided::Store(Verdict::Unreachable)) => self.admit_by_share(t, rx.now),
            Some(Decided::Late(token)) => {
                let admitted = self.admit_by_share(t, rx.now);
                self.cluster.late.insert(
                    token,
                    (tenant_id.to_string(), admitted == Admit::Yes, rx.now),
                );
                admitted
            }
            None if self.cluster.waiting_keys.contains_key(key) => {
                // The INVITE again while its verdict is awaited.
                self.stats.retransmissions_absorbed.inc();
                Admit::Asked
            }
            None if self.cluster.waiting.len() >= MAX_WAITING => self.admit_by_share(t, rx.now),
            None => {
                let token = self.cluster.next_token;
                self.cluster.next_token += 1;
                let ask = AdmissionAsk::Admit {
                    token,
                    tenant: tenant_id.to_string(),
                    max_concurrent: t.1.max_concurrent,
                    max_cps: t.1.max_cps,
                };
                if !self.push_ask(ask) {
                    return self.admit_by_share(t, rx.now);
                }
                self.cluster.waiting_keys.insert(Box::from(key), token);
                self.cluster.waiting.insert(
                    token,
                    Waiting {
                        side: rx.side,
                        transport: rx.transport,
                        src: rx.src,
                        bytes: rx.msg.raw.to_vec(),
                        key: Box::from(key),
                        tenant: tenant_id.to_string(),
                        deadline: rx.now + ask_ms,
                    },
                );
                Admit::Asked
            }
        }
    }

    /// The control plane's verdict on the INVITE put aside as `token`: it
    /// is handled again with it (a verdict for an INVITE whose deadline
    /// passed squares the store with what the node's share decided).
    pub fn admission_verdict(
        &mut self,
        now: Ms,
        token: u64,
        verdict: Verdict,
        out: &mut Vec<super::Outgoing>,
    ) {
        if let Some(w) = self.cluster.waiting.remove(&token) {
            self.cluster.waiting_keys.remove(&w.key);
            let before = out.len();
            self.resume(now, w, Decided::Store(verdict), out);
            self.stats.tx_messages.add((out.len() - before) as u64);
            return;
        }
        let Some((tenant, admitted, _)) = self.cluster.late.remove(&token) else {
            return;
        };
        let ask = match (verdict, admitted) {
            (Verdict::Granted, false) => AdmissionAsk::Release { tenant },
            (Verdict::Refused, true) => AdmissionAsk::Take { tenant },
            _ => return,
        };
        self.push_ask(ask);
    }

    /// A CANCEL for an INVITE put aside (server-transaction key `key`): the
    /// INVITE is forgotten, and a verdict that grants it later gives its
    /// slot back. Returns the INVITE's bytes, for its 487 (RFC 3261 §9.2).
    pub(super) fn cancel_waiting(&mut self, key: &[u8], now: Ms) -> Option<Vec<u8>> {
        let token = self.cluster.waiting_keys.remove(key)?;
        let w = self.cluster.waiting.remove(&token)?;
        self.cluster.late.insert(token, (w.tenant, false, now));
        Some(w.bytes)
    }

    /// INVITEs whose verdict is overdue are decided by the node's share.
    pub(super) fn admission_tick(&mut self, now: Ms, out: &mut Vec<super::Outgoing>) {
        if self.cluster.waiting.is_empty() && self.cluster.late.is_empty() {
            return;
        }
        let overdue: Vec<u64> = self
            .cluster
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(&t, _)| t)
            .collect();
        for token in overdue {
            if let Some(w) = self.cluster.waiting.remove(&token) {
                self.cluster.waiting_keys.remove(&w.key);
                self.stats.admission_late.inc();
                self.resume(now, w, Decided::Late(token), out);
            }
        }
        self.cluster
            .late
            .retain(|_, (_, _, at)| now.saturating_sub(*at) < LATE_KEEP_MS);
    }

    /// The earliest deadline of an INVITE put aside.
    pub(super) fn next_admission_deadline(&self) -> Option<Ms> {
        self.cluster.waiting.values().map(|w| w.deadline).min()
    }

    /// Handles an INVITE put aside again, with its admission decided. A
    /// grant it no longer needed (it was refused for another reason this
    /// time) goes back to the store.
    fn resume(&mut self, now: Ms, w: Waiting, decided: Decided, out: &mut Vec<super::Outgoing>) {
        self.cluster.decided = Some(decided);
        self.handle_again(now, (w.side, w.transport), w.src, &w.bytes, out);
        if let Some(Decided::Store(Verdict::Granted)) = self.cluster.decided.take() {
            self.push_ask(AdmissionAsk::Release { tenant: w.tenant });
        }
    }

    /// Queues `ask` for the control plane; `false` (counted) when the ring
    /// is full.
    fn push_ask(&self, ask: AdmissionAsk) -> bool {
        let queued = self.stats.admission_asks.push(ask).is_ok();
        if !queued {
            self.stats.admission_asks_dropped.inc();
        }
        queued
    }

    /// The node's own count: live calls below `max_concurrent / share`, a
    /// token from a bucket of `max_cps / share` (both at least 1).
    fn admit_locally(&mut self, t: (&str, Limits), share: u32, now: Ms) -> Admit {
        let share = share.max(1);
        let cps = f64::from((t.1.max_cps / share).max(1));
        let max_live = (t.1.max_concurrent / share).max(1);
        let load = self.load(t, now);
        load.tokens =
            (load.tokens + (now.saturating_sub(load.last)) as f64 * cps / 1000.0).min(cps);
        load.last = now;
        if load.active >= max_live || load.tokens < 1.0 {
            return Admit::No;
        }
        load.tokens -= 1.0;
        load.active += 1;
        Admit::Yes
    }

    /// The store has no answer: this node admits by its share of the
    /// limits (limit / live nodes as last seen).
    fn admit_by_share(&mut self, t: (&str, Limits), now: Ms) -> Admit {
        self.stats.admission_by_share.inc();
        let nodes = self.stats.cluster_nodes.get().clamp(1, u64::from(u32::MAX)) as u32;
        self.admit_locally(t, nodes, now)
    }

    /// The tenant's admission state, made on its first call.
    fn load(&mut self, (tenant_id, t): (&str, Limits), now: Ms) -> &mut TenantLoad {
        self.loads
            .entry(tenant_id.to_string())
            .or_insert(TenantLoad {
                tokens: f64::from(t.max_cps),
                last: now,
                active: 0,
            })
    }

    /// A call admitted for `tenant_id` has ended: its slot is free again
    /// (in the cluster's store too).
    pub(super) fn release_slot(&mut self, tenant_id: &str) {
        if let Some(load) = self.loads.get_mut(tenant_id) {
            load.active = load.active.saturating_sub(1);
            if self.cfg.policy.cluster_ask_ms.is_some() {
                self.push_ask(AdmissionAsk::Release {
                    tenant: tenant_id.to_string(),
                });
            }
        }
    }

    /// A call of `tenant_id` restored from the journal holds a slot again
    /// (its limits may leave it over `max_concurrent`: new calls wait).
    pub(super) fn restore_slot(&mut self, tenant_id: &str, now: Ms) {
        let Some(t) = self.snapshot.tenant(tenant_id).map(Limits::of) else {
            return;
        };
        self.load((tenant_id, t), now).active += 1;
    }

    /// Live calls per tenant, as the limits count them.
    pub fn tenant_calls(&self, tenant_id: &str) -> u32 {
        self.loads.get(tenant_id).map_or(0, |l| l.active)
    }

    /// Pushes this node's live calls per tenant as
    /// [`AdmissionAsk::Counts`] (for the store to take as the node's count).
    pub fn push_admission_counts(&self) {
        let counts = self
            .loads
            .iter()
            .map(|(t, l)| (t.clone(), l.active))
            .collect();
        self.push_ask(AdmissionAsk::Counts(counts));
    }
}

/// A tenant's limits, as admission reads them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_cps: u32,
    max_concurrent: u32,
}

impl Limits {
    fn of(t: &crate::routing::Tenant) -> Limits {
        Limits {
            max_cps: t.max_cps,
            max_concurrent: t.max_concurrent,
        }
    }
}

/// Admission state of one tenant.
#[derive(Debug, Clone, Copy)]
pub(super) struct TenantLoad {
    tokens: f64,
    last: Ms,
    active: u32,
}
