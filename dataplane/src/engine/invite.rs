//! A new INVITE: route it (tenant, gateway candidates), admit it against
//! the tenant's limits, build both legs of the dialog, answer 100 Trying and
//! send it on; and serial failover to the next candidate.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};

use super::admission::Admit;
use super::dialog::{Dialog, Leg, LegRef, Reliable};
use super::local::local_response;
use super::rewrite::party_for;
use super::slab::Id;
use super::txn::{CancelState, Timer};
use super::{ipv4_of, Incoming, Ms, Outgoing, SipEngine, TENANT_HEADER};
use crate::call::{CallResult, CallStep};
use crate::routing::Profile;
use crate::routing::{Decision, RouteRequest, Target};
use crate::side::Side;
use crate::sip::build::reason;
use crate::sip::digest;
use crate::sip::grammar::SipUri;
use crate::sip::{SipMessage, StartLine};

/// The candidates of an initial INVITE and which one is being tried.
#[derive(Debug, Clone)]
pub struct RouteState {
    pub candidates: Vec<Target>,
    pub attempt: u32,
    /// The caller's INVITE as received, to re-write for the next candidate.
    pub invite: Vec<u8>,
    /// The Request-URI user (tenant prefix stripped).
    pub user: Vec<u8>,
}

impl SipEngine {
    pub(super) fn new_invite(
        &mut self,
        rx: &Incoming<'_, '_>,
        key: Box<[u8]>,
        out: &mut Vec<Outgoing>,
    ) {
        let Incoming {
            now,
            side,
            src,
            transport,
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
            from_user: SipUri::parse(msg.from.uri).and_then(|u| u.user_number()),
        };
        let mut random = self.next_u64();
        let decision = self.snapshot.route(side, &req, &mut random);
        let (tenant_id, user, candidates, caller_user) = match decision {
            Decision::Reject { code, reason } => {
                self.stats.calls_rejected.inc();
                self.emit(None, side, CallResult::Rejected);
                if code == 403 && self.cfg.policy.drop_unknown_sources {
                    return;
                }
                let tag = self.next_u64();
                out.push(Outgoing {
                    side,
                    dst: src,
                    transport,
                    data: local_response(msg, src, code, reason, tag, b""),
                });
                return;
            }
            Decision::Route {
                tenant_id,
                user,
                candidates,
                caller_user,
                ..
            } => (tenant_id, user, candidates, caller_user),
        };
        // Gateways that are down are skipped (Kamailio's dispatcher): a
        // group all down goes on to the backup group at once. When none is
        // up the call still tries them in order (a probe can be wrong: some
        // gateways drop OPTIONS), all but the disabled ones.
        let candidates: Vec<Target> = if side == Side::Private {
            let (up, down): (Vec<Target>, Vec<Target>) = candidates
                .into_iter()
                .filter(|t| !self.health.disabled(t.addr))
                .partition(|t| self.health.usable(t.addr));
            if up.is_empty() && !down.is_empty() {
                self.stats.calls_no_gateway_up.inc();
                down
            } else {
                up
            }
        } else {
            candidates
        };
        let Some(target) = candidates.first().cloned() else {
            self.refuse_503(rx, tenant_id.as_deref(), "every gateway disabled", out);
            return;
        };
        // Before the tenant's slot is taken: a call the relay cannot anchor
        // is refused here rather than connected without its media.
        if !self.media_room(side, msg) {
            self.stats.calls_no_media_ports.inc();
            self.refuse_503(rx, tenant_id.as_deref(), "media ports exhausted", out);
            return;
        }
        if let Some(tid) = &tenant_id {
            let admitted = self.admit(tid, rx, &key);
            if admitted == Admit::Asked {
                return;
            }
            if admitted == Admit::No {
                self.stats.calls_limited.inc();
                self.emit(Some(tid.as_str()), side, CallResult::LimitExceeded);
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
                    transport,
                    data: local_response(msg, src, code, why, tag, extra.as_bytes()),
                });
                return;
            }
        }
        // The shield keeps session timers at the carrier's edge: too short
        // an interval is refused there (RFC 4028 section 6).
        if target.profile == Profile::Livekit
            && side != Side::Public
            && self.refuse_short_interval(msg, (side, src, transport), out)
        {
            return;
        }
        let dest_side = side.other();
        let ours_b = self.cfg.addr_on(dest_side, target.transport);
        let (ruri, callee_party) = self.callee_for(msg, &user, &target, dest_side, source);
        // The INVITE a UA sends again with credentials after a 401/407 keeps
        // its Call-ID (RFC 3261 8.1.3.5), and so does our leg toward the
        // challenger, whose nonce may be bound to it.
        let callee_call_id = match self.challenged_call_id(side, msg, now) {
            Some(id) => id,
            None => self.new_call_id(),
        };
        let hider_b = self.hider(dest_side, source);
        let callee = Leg {
            side: dest_side,
            call_id: callee_call_id,
            remote_target: ruri,
            route_set: Vec::new(),
            peer: SocketAddr::V4(target.addr),
            transport: target.transport,
            caller: party_for(
                &msg.from,
                *ours_b.ip(),
                (caller_user.as_deref(), None),
                &[SipUri::parse(msg.from.uri).and_then(|u| u.user_number())],
                &hider_b,
            ),
            callee: callee_party,
            cseq_sent: 0,
            cseq_shift: 0,
        };
        let mut dialog = Dialog::new_call(
            self.next_call,
            now,
            msg,
            (side, src, transport),
            callee,
            tenant_id,
        );
        dialog.profile = target.profile;
        dialog.gateway_headers = target.headers.clone();
        dialog.gateway_auth = target.auth.clone();
        dialog.media_encryption = target.media_encryption;
        if target.profile == Profile::Livekit {
            dialog.session = self.initial_session(msg, side == dialog.gateway_side());
            if side != dialog.gateway_side() && SipEngine::wants_reliable(msg) {
                dialog.reliable = Some(Reliable::default());
            }
            dialog.carrier_allows_update =
                side != dialog.gateway_side() && super::shield::allows_update(msg);
        }
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
        if let Some(d) = self.dialogs.get(did) {
            self.stats.step(CallStep::Routed {
                call: d.call,
                call_id: String::from_utf8_lossy(msg.call_id).into_owned(),
                callee_call_id: String::from_utf8_lossy(&d.callee.call_id).into_owned(),
                tenant: d.tenant_id.clone(),
                caller_side: side,
                to: SocketAddr::V4(target.addr),
            });
        }

        // 100 Trying at once, then the INVITE toward the far side.
        let trying = local_response(msg, src, 100, reason(100), 0, b"");
        out.push(Outgoing {
            side,
            dst: src,
            transport,
            data: trying.clone(),
        });
        self.offer_answer(did, LegRef::Caller, msg);
        if target.profile == Profile::Livekit && side != Side::Public {
            self.offer_for_gateway(did, msg);
        }
        let route = RouteState {
            candidates,
            attempt: 0,
            invite: msg.raw.to_vec(),
            user,
        };
        self.start_txn(rx, key, did, LegRef::Caller, Some(trying), Some(route), out);
    }

    /// The timeout of an initial INVITE sent to a candidate: the failover
    /// timer while another candidate is left, else Timer B.
    /// Answers the new INVITE `rx` ourselves `503 Service Unavailable -
    /// {why}` with `Retry-After: 1` (RFC 3261 §21.5.4), counted rejected and
    /// reported for `tenant`.
    fn refuse_503(
        &mut self,
        rx: &Incoming<'_, '_>,
        tenant: Option<&str>,
        why: &str,
        out: &mut Vec<Outgoing>,
    ) {
        self.stats.calls_rejected.inc();
        self.emit(tenant, rx.side, CallResult::Rejected);
        let tag = self.next_u64();
        let reason = format!("Service Unavailable - {why}");
        out.push(Outgoing {
            side: rx.side,
            dst: rx.src,
            transport: rx.transport,
            data: local_response(rx.msg, rx.src, 503, &reason, tag, b"Retry-After: 1\r\n"),
        });
    }

    pub(super) fn invite_timeout(&self, now: Ms, more: bool) -> (Ms, Timer) {
        let timer_b = 64 * self.cfg.t1;
        if more {
            let failover = self.cfg.policy.failover_timeout.min(timer_b);
            (now + failover, Timer::Failover)
        } else {
            (now + timer_b, Timer::TransactionTimeout)
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
        // A tenant prefix stripped from the number, or the number put in
        // the tenant's form, leaves no trace in the To display name either
        // (LiveKit shows it).
        let dialled = match msg.start {
            StartLine::Request { uri, .. } => SipUri::parse(uri).and_then(|u| u.user_number()),
            StartLine::Response { .. } => None,
        };
        let party = party_for(
            &msg.to,
            *target.addr.ip(),
            (Some(user), Some(target.addr.port())),
            &[
                dialled,
                SipUri::parse(msg.to.uri).and_then(|u| u.user_number()),
            ],
            &hider,
        );
        (ruri, party)
    }

    /// Fails over to the next candidate of an initial INVITE, the current
    /// one having answered `failed_with` (408: nothing in time); `false`
    /// when none is left.
    pub(super) fn try_next(
        &mut self,
        id: Id,
        now: Ms,
        failed_with: u16,
        out: &mut Vec<Outgoing>,
    ) -> bool {
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
        t.sends += 1;
        t.authed = false;
        let send = t.sends;
        let (did, source, dest_side) = (t.dialog, ipv4_of(t.orig_addr), t.dest_side);
        let Ok(msg) = SipMessage::parse(&invite) else {
            return false;
        };
        let (ruri, party) = self.callee_for(&msg, &user, &target, dest_side, source);
        if let Some(d) = self.dialogs.get_mut(did) {
            self.stats.step(CallStep::FailedOver {
                call: d.call,
                from: d.callee.peer,
                code: failed_with,
                to: SocketAddr::V4(target.addr),
            });
            d.callee.remote_target = ruri;
            d.callee.callee = party;
            d.callee.route_set.clear();
            d.callee.peer = SocketAddr::V4(target.addr);
            d.callee.transport = target.transport;
            d.profile = target.profile;
            d.gateway_headers = target.headers.clone();
            d.gateway_auth = target.auth.clone();
            d.media_encryption = target.media_encryption;
            d.attempts += 1;
        }
        self.sdes_offer_again(did, &msg);
        let branch = self.branch_for(id, send);
        let Some(r) = self.rewrite_request(&msg, did, LegRef::Caller, &branch, source) else {
            return false;
        };
        let (t1, timeout) = (self.cfg.t1, self.invite_timeout(now, more));
        let Some(t) = self.txns.get_mut(id) else {
            return false;
        };
        t.retry_to(
            (r.dst, r.transport),
            r.bytes.clone(),
            r.outbound,
            now,
            t1,
            timeout,
        );
        self.stats.failovers.inc();
        out.push(Outgoing {
            side: dest_side,
            dst: r.dst,
            transport: r.transport,
            data: r.bytes,
        });
        self.arm(id);
        true
    }
    /// A 401/407 from the gateway to a request we relayed to it (RFC 3261
    /// 22.2, 22.3): with the gateway's credentials, the request goes again
    /// with an `Authorization` / `Proxy-Authorization` answering the
    /// challenge (SHA-256 before MD5, RFC 8760), one CSeq higher on the same
    /// leg (what is relayed onto the leg later follows), the same Call-ID
    /// and tags, on a new branch; an INVITE's challenge was ACKed already.
    /// `Challenge::Refused` when the request carried our answer already (a
    /// wrong password, a stale nonce twice) or none of the challenges can
    /// be answered.
    pub(super) fn answer_challenge(
        &mut self,
        id: Id,
        now: Ms,
        challenge: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) -> Challenge {
        let Some(t) = self.txns.get(id) else {
            return Challenge::NotOurs;
        };
        let Some(d) = self.dialogs.get(t.dialog) else {
            return Challenge::NotOurs;
        };
        let cred = match &d.gateway_auth {
            Some(c) if !t.local && t.dest_side == d.gateway_side() => c.clone(),
            _ => return Challenge::NotOurs,
        };
        let header = if code == 407 {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        let values = challenge
            .headers
            .iter()
            .filter(|h| h.raw_name.eq_ignore_ascii_case(header.as_bytes()))
            .map(|h| h.value);
        let best = digest::best_challenge(values, cred.realm.as_deref());
        let Some(ch) = best.filter(|_| !t.authed) else {
            self.stats.auth_refused.inc();
            return Challenge::Refused;
        };
        let Ok(sent) = SipMessage::parse(&t.request) else {
            return Challenge::Refused;
        };
        let method = sent.method().as_bytes().to_vec();
        let more = t
            .route
            .as_ref()
            .is_some_and(|r| (r.attempt as usize) + 1 < r.candidates.len());
        let (did, leg, send, initial) = (t.dialog, t.orig.other(), t.sends + 1, t.initial);
        let mut outbound = t.outbound.clone();
        let request = t.request.clone();
        outbound.via = self.ours(t.dest_side, t.dest_transport).via_start();
        outbound.via.extend_from_slice(&self.branch_for(id, send));
        outbound.cseq = outbound.cseq.saturating_add(1);
        let cnonce = format!("{:016x}", self.next_u64());
        let value = digest::authorization(
            &ch,
            &digest::Answer {
                username: &cred.username,
                password: &cred.password,
                method: &method,
                uri: &outbound.ruri,
                cnonce: &cnonce,
                nc: 1,
            },
        );
        let name: &[u8] = if code == 407 {
            b"Proxy-Authorization"
        } else {
            b"Authorization"
        };
        let mut cseq = format!("CSeq: {} ", outbound.cseq).into_bytes();
        cseq.extend_from_slice(&method);
        let bytes = resent(&request, &outbound.via, &cseq, (name, &value));
        // What is relayed onto the leg from now on comes after this CSeq.
        if let Some(d) = self.dialogs.get_mut(did) {
            let l = d.leg_mut(leg);
            l.cseq_shift = l.cseq_shift.saturating_add(1);
            l.cseq_sent = l.cseq_sent.max(outbound.cseq);
        }
        let t1 = self.cfg.t1;
        let timeout = if initial {
            self.invite_timeout(now, more)
        } else {
            (now + 64 * t1, Timer::TransactionTimeout)
        };
        let Some(t) = self.txns.get_mut(id) else {
            return Challenge::Refused;
        };
        let (side, dst, transport) = (t.dest_side, t.dest_addr, t.dest_transport);
        t.retry_to((dst, transport), bytes.clone(), outbound, now, t1, timeout);
        t.sends = send;
        t.authed = true;
        self.stats.auth_answered.inc();
        out.push(Outgoing {
            side,
            dst,
            transport,
            data: bytes,
        });
        self.arm(id);
        Challenge::Answered
    }
}

/// What became of a challenge to our INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Challenge {
    /// The gateway has no credentials here (or it is no initial INVITE):
    /// the challenge goes back to the caller, whose own credentials answer.
    NotOurs,
    /// Answered: the INVITE went again with credentials.
    Answered,
    /// Challenged again after our answer, or nothing we can answer: the
    /// attempt failed.
    Refused,
}

/// Our request `request` sent anew: its top Via (ours) given `via`, its
/// CSeq line `cseq`, and header `auth` (name, value) added after the start
/// line; the rest and the body unchanged.
fn resent(request: &[u8], via: &[u8], cseq: &[u8], auth: (&[u8], &[u8])) -> Vec<u8> {
    let end = request
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(request.len(), |p| p + 2);
    let (head, body) = request.split_at(end);
    let mut out = Vec::with_capacity(request.len() + auth.1.len() + 64);
    let mut via_done = false;
    for (i, line) in head.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if i > 0 && !via_done && name.eq_ignore_ascii_case(b"Via") {
            via_done = true;
            out.extend_from_slice(b"Via: ");
            out.extend_from_slice(via);
        } else if i > 0 && name.eq_ignore_ascii_case(b"CSeq") {
            out.extend_from_slice(cseq);
        } else {
            out.extend_from_slice(line);
        }
        out.extend_from_slice(b"\r\n");
        if i == 0 {
            out.extend_from_slice(auth.0);
            out.extend_from_slice(b": ");
            out.extend_from_slice(auth.1);
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(body);
    out
}
