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
use crate::transport::Transport;
use std::net::SocketAddr;

impl SipEngine {
    /// Queues the transaction's next deadline.
    pub(super) fn arm(&mut self, id: Id) {
        if let Some(when) = self.txns.get(id).and_then(Txn::next_deadline) {
            self.timers.push(Reverse((when, id.idx, id.gen)));
        }
    }

    /// Fires transaction `id`'s timers that are due at `now`, in the order
    /// [`Txn::due`] gives them, then queues its next deadline.
    pub(super) fn service(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        while let Some(timer) = self.txns.get(id).and_then(|t| t.due(now)) {
            match timer {
                Timer::Linger => return self.remove_txn(id),
                Timer::Retransmit => self.retransmit(id, now, out),
                Timer::Ringing => {
                    // Timer C: the far side rang too long.
                    self.clear_timeout(id);
                    self.send_cancel(id, now, out);
                }
                Timer::Failover | Timer::TransactionTimeout => {
                    self.clear_timeout(id);
                    return self.give_up(id, now, out);
                }
            }
        }
        self.arm(id);
    }

    fn clear_timeout(&mut self, id: Id) {
        if let Some(t) = self.txns.get_mut(id) {
            t.timeout = None;
        }
    }

    /// Timer A/E: the request (or our CANCEL) again toward the far side,
    /// the interval doubled (capped at T2 for non-INVITE and CANCEL); Timer
    /// G: our non-2xx final again toward the sender until the ACK. Over
    /// TCP/TLS nothing is resent: the timer stops (RFC 3261 17.1.1.2,
    /// 17.1.2.2, 17.2.1).
    fn retransmit(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t2 = self.cfg.t2;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        let toward = match t.phase {
            Phase::Proceeding => t.dest_transport,
            _ => t.orig_transport,
        };
        if toward.reliable() {
            t.retransmit_at = None;
            return;
        }
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
                    transport: t.dest_transport,
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
                        transport: t.orig_transport,
                        data: resp.clone(),
                    });
                }
                t.retransmit_every = (t.retransmit_every * 2).min(t2);
                t.retransmit_at = Some(now + t.retransmit_every);
            }
            _ => t.retransmit_at = None,
        }
    }

    /// The failover timer, Timer B/F, no answer to our CANCEL (all while
    /// Proceeding), or Timer H (no ACK for our final).
    fn give_up(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let Some(t) = self.txns.get(id) else {
            return;
        };
        if t.phase != Phase::Proceeding {
            return self.remove_txn(id);
        }
        if t.local {
            // Timer F on a request of ours: nobody to tell.
            self.stats.local_timeouts.inc();
            return self.remove_txn(id);
        }
        let cancelled = t.cancel != CancelState::None;
        if !cancelled && t.initial {
            // No answer from the gateway: a failure of its health.
            let dest = t.dest_addr;
            self.invite_outcome(dest, Some(408), now);
        }
        let Some(t) = self.txns.get(id) else {
            return;
        };
        let tried = t
            .route
            .as_ref()
            .map_or(1, |r| r.candidates.len().min(r.attempt as usize + 2));
        if !cancelled && t.initial && self.try_next(id, now, 408, out) {
            return;
        }
        let code = if cancelled {
            487
        } else if tried > 1 {
            503
        } else {
            408
        };
        self.fail_txn(id, now, code, b"", out);
    }

    /// A TCP/TLS connection toward `dst` could not be had (refused, the
    /// TLS handshake or the certificate failed) or broke: every request of
    /// ours still waiting for an answer from it ends as if it had answered
    /// 503 (RFC 3261 8.1.3.1, 17.1.4): an initial INVITE fails over to the
    /// next candidate at once (the gateway's health counts a failure), else
    /// the sender gets 503; a request we originated is dropped.
    pub fn transport_error(
        &mut self,
        now: Ms,
        (transport, dst): (Transport, SocketAddr),
        out: &mut Vec<Outgoing>,
    ) {
        self.now = now;
        let hit: Vec<Id> = self
            .txns
            .iter_ids()
            .filter(|(_, t)| {
                t.phase == Phase::Proceeding && t.dest_transport == transport && t.dest_addr == dst
            })
            .map(|(id, _)| id)
            .collect();
        for id in hit {
            self.stats.transport_errors.inc();
            let Some(t) = self.txns.get(id) else { continue };
            if t.local {
                self.stats.local_timeouts.inc();
                self.remove_txn(id);
                continue;
            }
            let (initial, cancelled) = (t.initial, t.cancel != CancelState::None);
            if initial && !cancelled {
                self.invite_outcome(dst, Some(503), now);
                if self.try_next(id, now, 503, out) {
                    continue;
                }
            }
            let code = if cancelled { 487 } else { 503 };
            self.fail_txn(id, now, code, b"", out);
        }
    }

    pub(super) fn send_cancel(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) {
        let t1 = self.cfg.t1;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        out.push(Outgoing {
            side: t.dest_side,
            dst: t.dest_addr,
            transport: t.dest_transport,
            data: build_cancel(&t.outbound),
        });
        t.cancel_sent(now, t1);
        self.arm(id);
    }

    /// Ends an INVITE (or other) server transaction with a response of
    /// ours, `extra` header lines added (each ending in CRLF).
    pub(super) fn fail_txn(
        &mut self,
        id: Id,
        now: Ms,
        code: u16,
        extra: &[u8],
        out: &mut Vec<Outgoing>,
    ) {
        let t1 = self.cfg.t1;
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
        let resp = txn_response(t, code, extra);
        out.push(Outgoing {
            side: t.orig_side,
            dst: t.orig_addr,
            transport: t.orig_transport,
            data: resp.clone(),
        });
        t.last_response = Some(resp);
        t.complete(now, t1);
        let (initial, did) = (t.initial, t.dialog);
        self.note_end(id, code);
        if initial {
            // Our own final answer: the caller cancelled (487), or the SBC
            // gave up (no answer, no gateway left, an answer it refused).
            if code == 487 {
                if let Some(d) = self.dialogs.get_mut(did) {
                    d.ended_by.get_or_insert(crate::call::EndedBy::Caller);
                }
            } else {
                self.ended_here(did);
            }
        }
        let Some(t) = self.txns.get_mut(id) else {
            return;
        };
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
