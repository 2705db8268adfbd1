//! Transaction timers: the heap of deadlines, and what each one does when
//! it fires (retransmit, transaction timeout, ringing/Timer C, failover,
//! linger), plus the CANCEL we send and the answers we give in place of a
//! far side that never answered.

use std::cmp::Reverse;

use super::local::{build_cancel, txn_response};
use super::slab::Id;
use super::txn::{CancelState, Phase, Txn};
use super::{Ms, Outgoing, SipEngine};
use crate::call::CallResult;

impl SipEngine {
    /// Queues the transaction's next deadline.
    pub(super) fn arm(&mut self, id: Id) {
        if let Some(when) = self.txns.get(id).and_then(Txn::next_deadline) {
            self.timers.push(Reverse((when, id.idx, id.gen)));
        }
    }

    pub(super) fn service(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
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

    pub(super) fn send_cancel(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
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

    pub(super) fn remove_txn(&mut self, id: Id) {
        if let Some(t) = self.txns.remove(id) {
            if self.server_index.get(&t.server_key) == Some(&id) {
                self.server_index.remove(&t.server_key);
            }
        }
        self.stats.transactions.set(self.txns.len() as u64);
    }
}
