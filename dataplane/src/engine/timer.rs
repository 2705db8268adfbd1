//! Transaction timers: the heap of deadlines, and what each one does when
//! it fires (retransmit, transaction timeout, ringing/Timer C, failover,
//! linger), plus the CANCEL we send and the answers we give in place of a
//! far side that never answered.

use std::cmp::Reverse;

use super::local::{build_cancel, txn_response};
use super::slab::Id;
use super::txn::{CancelState, Phase, Timer, Txn};
use super::{Ms, Outgoing, SipEngine};
use crate::call::CallResult;

impl SipEngine {
    /// Queues the transaction's next deadline.
    pub(super) fn arm(&mut self, id: Id) {
        if let Some(when) = self.txns.get(id).and_then(Txn::next_deadline) {
            self.timers.push(Reverse((when, id.idx, id.gen)));
        }
    }

    /// Fires whichever of transaction `id`'s timers are due at `now`.
    pub(super) fn service(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t2 = self.cfg.t2;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        // Timer::Linger (D/I/J/K): forget the finished transaction.
        if t.linger_until.is_some_and(|at| at <= now) {
            return self.remove_txn(id);
        }
        // Timer::Retransmit (A/E toward the far side, G toward the sender).
        if t.retransmit_at.is_some_and(|at| at <= now) {
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
                    t.retransmit_every = if capped {
                        (t.retransmit_every * 2).min(t2)
                    } else {
                        t.retransmit_every * 2
                    };
                    t.retransmit_at = Some(now + t.retransmit_every);
                }
                Phase::Completed if t.invite => {
                    if let Some(resp) = &t.last_response {
                        out.push(Outgoing {
                            side: t.orig_side,
                            dst: t.orig_addr,
                            data: resp.clone(),
                        });
                    }
                    t.retransmit_every = (t.retransmit_every * 2).min(t2);
                    t.retransmit_at = Some(now + t.retransmit_every);
                }
                _ => t.retransmit_at = None,
            }
        }
        if let Some((_, timer)) = t.timeout.filter(|(at, _)| *at <= now) {
            t.timeout = None;
            match (t.phase, timer) {
                (Phase::Proceeding, Timer::Ringing) => {
                    // Timer C: the far side rang too long.
                    self.send_cancel(id, now, out);
                }
                (Phase::Proceeding, _) => {
                    // Timer::Failover, Timer B/F, or no answer to our CANCEL.
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
                // Timer H: no ACK for our final.
                _ => return self.remove_txn(id),
            }
        }
        self.arm(id);
    }

    pub(super) fn send_cancel(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t1 = self.cfg.t1;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        out.push(Outgoing {
            side: t.dest_side,
            dst: t.dest_addr,
            data: build_cancel(&t.outbound),
        });
        t.cancel_sent(now, t1);
        self.arm(id);
    }

    /// Ends an INVITE (or other) server transaction with a response of ours.
    pub(super) fn fail_txn(&mut self, id: Id, now: Ms, code: u16, out: &mut Vec<Outgoing>) {
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
        t.last_response = Some(resp);
        t.complete(now, t1);
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

    pub(super) fn remove_txn(&mut self, id: Id) {
        if let Some(t) = self.txns.remove(id) {
            if self.server_index.get(&t.server_key) == Some(&id) {
                self.server_index.remove(&t.server_key);
            }
        }
        self.stats.transactions.set(self.txns.len() as u64);
    }
}
