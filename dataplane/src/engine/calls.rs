//! A call's life as the operator sees it: answered, ended (the dialog, its
//! media and its tenant slot released) and the call record and outcome
//! events written for the control plane; and a challenged call remembered
//! so its INVITE re-sent with credentials keeps our leg's Call-ID.

use super::dialog::DialogState;
use super::dialog::LegRef;
use super::slab::Id;
use super::{Ms, SipEngine};
use crate::call::{ActiveCall, CallEvent, CallRecord, CallResult, CallStep, EndedBy};
use crate::side::Side;
use crate::sip::SipMessage;

impl SipEngine {
    pub(super) fn answered(&mut self, id: Id, now: Ms) {
        let Some(t) = self.txns.get(id) else { return };
        if !t.initial {
            return;
        }
        if let Some(d) = self.dialogs.get_mut(t.dialog) {
            if d.confirm(now) {
                d.final_code = 200;
                self.stats.step(CallStep::Answered {
                    call: d.call,
                    setup_ms: now.saturating_sub(d.started),
                });
                self.stats.calls_answered.inc();
                self.stats.calls_up.inc();
                let (tenant, side) = (d.tenant_id.clone(), d.caller.side);
                self.emit(tenant.as_deref(), side, CallResult::Answered);
                let did = t.dialog;
                self.journal_up(did);
            }
        }
    }

    /// Every call in progress, for `GET /api/v1/calls/active`.
    pub fn active_calls(&self) -> Vec<ActiveCall> {
        self.dialogs
            .iter()
            .map(|d| ActiveCall {
                call: d.call,
                tenant: d.tenant_id.clone(),
                caller_side: d.caller.side,
                call_id: String::from_utf8_lossy(&d.caller.call_id).into_owned(),
                caller_addr: d.caller.peer,
                callee_addr: d.callee.peer,
                answered: d.state == DialogState::Confirmed,
                started_ms: d.started,
                ports: d.media.clone(),
            })
            .collect()
    }

    /// Notes on the dialog of transaction `id` the final status its caller
    /// got (an initial INVITE) or who ended it (a BYE), for its record.
    pub(super) fn note_end(&mut self, id: Id, code: u16) {
        let Some(t) = self.txns.get(id) else { return };
        let (did, initial, bye, orig) = (t.dialog, t.initial, t.bye, t.orig);
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if initial && d.final_code == 0 {
            d.final_code = code;
        }
        let by_leg = match orig {
            LegRef::Caller => EndedBy::Caller,
            LegRef::Callee => EndedBy::Callee,
        };
        if bye && d.ended_by.is_none() {
            d.ended_by = Some(by_leg);
        }
    }

    /// Notes that the SBC itself ends dialog `did` (a timeout, an
    /// unanchorable answer), unless someone already did.
    pub(super) fn ended_here(&mut self, did: Id) {
        if let Some(d) = self.dialogs.get_mut(did) {
            d.ended_by.get_or_insert(EndedBy::Sbc);
        }
    }

    /// Removes the dialog of transaction `id`, releasing its tenant's slot.
    /// `result` is how an unanswered call ended (`None`: an answered call's end).
    pub(super) fn end_dialog_of(&mut self, id: Id, result: Option<CallResult>) {
        if let Some(did) = self.txns.get(id).map(|t| t.dialog) {
            self.end_dialog(did, result);
        }
    }

    /// Removes a dialog, its media and its tenant slot, and writes its call
    /// record; `result` is how an unanswered call ended (`None`: an answered
    /// call's end; an answered call ended by media timeout says so).
    pub(super) fn end_dialog(&mut self, did: Id, result: Option<CallResult>) {
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
            started_ms: d.started,
            ended_ms: self.now,
            caller_addr: d.caller.peer,
            callee_addr: d.callee.peer,
            final_code: d.final_code,
            ended_by: d.ended_by,
            attempts: d.attempts,
            media: Vec::with_capacity(d.media.len()),
        };
        self.journal_down(&d);
        self.release_media(&d, record);
        if let Some(t) = &d.tenant_id {
            self.release_slot(t);
        }
        if d.state == DialogState::Confirmed {
            self.stats.calls_up.dec();
        } else if let Some(result) = result {
            if result == CallResult::Failed {
                self.stats.calls_failed.inc();
            }
            self.emit(d.tenant_id.as_deref(), d.caller.side, result);
        }
        self.stats.dialogs.set(self.dialogs.len() as u64);
    }

    pub(super) fn emit(&self, tenant: Option<&str>, caller_side: Side, result: CallResult) {
        if self
            .stats
            .call_events
            .push(CallEvent {
                tenant: tenant.map(str::to_string),
                caller_side: Some(caller_side),
                result,
            })
            .is_err()
        {
            self.stats.call_events_dropped.inc();
        }
    }

    /// Remembers the Call-ID of our leg toward a far side that challenged
    /// the initial INVITE of transaction `id` (401/407), for 64·T1, so the
    /// INVITE re-sent with credentials (same Call-ID and From tag, CSeq + 1)
    /// reaches it under the same Call-ID. Bounded: at most
    /// [`MAX_CHALLENGED`] calls remembered; expired ones go first.
    pub(super) fn remember_challenge(&mut self, id: Id, now: Ms) {
        let Some(d) = self.txns.get(id).and_then(|t| self.dialogs.get(t.dialog)) else {
            return;
        };
        let key = (d.caller.side, Box::from(d.caller.call_id.as_slice()));
        let value = (d.callee.call_id.clone(), now + 64 * self.cfg.t1);
        if self.challenged.len() >= MAX_CHALLENGED {
            self.challenged.retain(|_, (_, until)| *until > now);
        }
        if self.challenged.len() < MAX_CHALLENGED {
            self.challenged.insert(key, value);
        }
    }

    /// Our Call-ID toward the challenger, when `msg` is an INVITE re-sent
    /// with credentials after a 401/407 the caller got within 64·T1.
    pub(super) fn challenged_call_id(
        &mut self,
        side: Side,
        msg: &SipMessage<'_>,
        now: Ms,
    ) -> Option<Vec<u8>> {
        if self.challenged.is_empty() {
            return None;
        }
        let key = (side, Box::from(msg.call_id));
        match self.challenged.remove(&key) {
            Some((call_id, until)) if until > now => Some(call_id),
            _ => None,
        }
    }
}

/// Challenged calls remembered at once (about 100 bytes each).
const MAX_CHALLENGED: usize = 65_536;
