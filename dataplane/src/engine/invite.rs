//! A new INVITE: route it (tenant, gateway candidates), admit it against
//! the tenant's limits, build both legs of the dialog, answer 100 Trying and
//! send it on; and serial failover to the next candidate.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use super::dialog::{Dialog, DialogState, Leg, LegRef};
use super::local::local_response;
use super::rewrite::{first_contact_uri, party_for, replace_all, without_tag};
use super::slab::Id;
use super::txn::{CancelState, RouteState};
use super::{ipv4_of, Ms, Outgoing, Rx, SipEngine, TENANT_HEADER};
use crate::call::CallResult;
use crate::routing::{Decision, RouteRequest, Target};
use crate::side::Side;
use crate::sip::build::reason;
use crate::sip::grammar::SipUri;
use crate::sip::{HeaderName, SipMessage, StartLine};

impl SipEngine {
    pub(super) fn new_invite(&mut self, rx: &Rx<'_, '_>, key: Box<[u8]>, out: &mut Vec<Outgoing>) {
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
    pub(super) fn callee_for(
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

    /// Fails over to the next candidate of an initial INVITE; `false` when
    /// none is left.
    pub(super) fn try_next(&mut self, id: Id, now: Ms, out: &mut Vec<Outgoing>) -> bool {
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
}
