//! Responses from the far side: matched to our client transaction by the
//! branch, provisional/2xx/final handling (RFC 3261 16.7, RFC 6026), the far
//! leg's target and route set learnt, and the response relayed back rewritten.

use std::io::Write;
use std::net::{SocketAddr, SocketAddrV4};

use super::dialog::DialogState;
use super::dialog::LegRef;
use super::invite::Challenge;
use super::local::{build_ack, raw_line};
use super::media::sdp_of;
use super::rewrite::{first_contact_uri, is_our_uri, our_contact, record_route, with_tag};
use super::slab::Id;
use super::txn::{CancelState, Outbound, Phase, Timer};
use super::{ipv4_of, Incoming, Ms, Outgoing, SipEngine};
use crate::call::{CallResult, EndedBy};
use crate::media::sdp::SdpError;
use crate::sip::build::{reason, Builder};
use crate::sip::{HeaderName, Method, SipMessage, StartLine};

impl SipEngine {
    /// A 2xx to an INVITE of ours (our Via alone on it) that no transaction
    /// waits for and no call knows - an INVITE sent before a restart, whose call was lost in
    /// setup - from a provisioned gateway or carrier: acknowledged and ended
    /// at once, an ACK then a BYE to its Contact over the way it came (RFC
    /// 3261 §13.2.2.4, §15.1.1), so the far end does not hold a half-open
    /// call until its own timers give up. Each retransmission of the 2xx
    /// gets the pair again. Counted in `sip.orphan_2xx_ended`.
    fn end_orphan_2xx(&mut self, rx: &Incoming<'_, '_>, code: u16, out: &mut Vec<Outgoing>) {
        let msg = rx.msg;
        let known = self
            .dialog_index
            .contains_key(&(rx.side, Box::from(msg.call_id)));
        let ip = ipv4_of(rx.src);
        let trusted = self.snapshot.carrier_for(ip).is_some() || self.snapshot.is_gateway(ip);
        // Ours: our Via alone on it (we sent that INVITE, as a UAC).
        let ours_alone = self.is_our_via(&msg.via) && msg.values(HeaderName::Via).count() == 1;
        if !(200..300).contains(&code)
            || msg.cseq.method != Method::Invite
            || msg.to.tag().is_none()
            || known
            || !trusted
            || !ours_alone
        {
            return;
        }
        let Some(target) = first_contact_uri(msg) else {
            return;
        };
        let ours: Vec<SocketAddrV4> = self.cfg.addrs(rx.side).collect();
        let mut routes: Vec<&[u8]> = msg
            .values(HeaderName::RecordRoute)
            .filter(|v| !is_our_uri(v, ours.iter().copied()))
            .collect();
        routes.reverse();
        let line = |h: HeaderName| msg.header(h).map(|h| raw_line(h.raw_name, h.value));
        let (Some(from), Some(to), Some(call_id)) = (
            line(HeaderName::From),
            line(HeaderName::To),
            line(HeaderName::CallId),
        ) else {
            return;
        };
        for (method, seq) in [(&b"ACK"[..], msg.cseq.seq), (b"BYE", msg.cseq.seq + 1)] {
            let mut via = self.ours(rx.side, rx.transport).via_start();
            let _ = write!(via, "z9hG4bKorphan{:016x}", self.next_u64());
            let mut b = Builder::request(method, target);
            b.header("Via", &[&via])
                .header("Max-Forwards", &[b"70"])
                .raw(&from)
                .raw(&to)
                .raw(&call_id);
            let _ = write!(
                b.buf_mut(),
                "CSeq: {seq} {}\r\n",
                String::from_utf8_lossy(method)
            );
            for r in &routes {
                b.raw(&raw_line(b"Route", r));
            }
            out.push(Outgoing {
                side: rx.side,
                dst: rx.src,
                transport: rx.transport,
                data: b.finish(b""),
            });
        }
        self.stats.orphan_2xx_ended.inc();
    }

    pub(super) fn on_response(&mut self, rx: &Incoming<'_, '_>, out: &mut Vec<Outgoing>) {
        let Incoming {
            now,
            side,
            src,
            transport: _,
            msg,
        } = *rx;
        let StartLine::Response { code, .. } = msg.start else {
            return;
        };
        if msg.cseq.method == Method::Options && self.on_probe_answer(rx) {
            return;
        }
        let Some((id, attempt)) = msg.via.branch.and_then(|b| self.parse_branch(b)) else {
            self.stats.stray_responses.inc();
            return self.end_orphan_2xx(rx, code, out);
        };
        let Some(t) = self.txns.get_mut(id) else {
            self.stats.stray_responses.inc();
            return self.end_orphan_2xx(rx, code, out);
        };
        let current = t.sends;
        if t.dest_side != side || attempt != current {
            self.stats.stray_responses.inc();
            return;
        }
        if t.local {
            // An answer to a request of ours: counted, never relayed; an
            // INVITE's final answers get their ACK (each 2xx copy too).
            let (invite, phase, did, to) = (t.invite, t.phase, t.dialog, t.orig.other());
            if code < 200 {
                t.on_provisional(now, self.cfg.t2, self.cfg.timer_c);
                t.timeout = t.timeout.filter(|(_, timer)| *timer != Timer::Ringing);
                return self.arm(id);
            }
            let ack = match (invite, code < 300) {
                (false, _) => None,
                (true, true) => self.ack_for_2xx(id, msg),
                (true, false) => Some(Outgoing {
                    side: t.dest_side,
                    dst: t.dest_addr,
                    transport: t.dest_transport,
                    data: build_ack(&t.outbound, msg),
                }),
            };
            out.extend(ack);
            if invite && code < 300 && phase == Phase::Proceeding {
                self.our_refresh_answered(did, to, msg);
            }
            if phase == Phase::Proceeding {
                if let Some(t) = self.txns.get_mut(id) {
                    if invite && code < 300 {
                        t.accept(now, self.cfg.t1);
                    } else {
                        t.complete(now, self.cfg.t1);
                    }
                }
                self.stats.local_answers.inc();
            }
            return self.arm(id);
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
                t.on_provisional(now, self.cfg.t2, self.cfg.timer_c);
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
                    if !self.relay_reliably(id, msg, code, out) {
                        self.relay_and_keep(id, msg, code, out);
                    }
                }
                self.arm(id);
            }
            200..=299 => {
                let phase = t.phase;
                if t.invite {
                    if phase == Phase::Proceeding {
                        self.provisionals_done(id);
                        let refusal = self.unanchorable(msg).or_else(|| {
                            let t = self.txns.get(id)?;
                            self.srtp_refusal(t.dialog, t.orig.other(), sdp_of(msg)?)
                        });
                        if let Some(e) = refusal {
                            return self.refuse_answer(rx, id, &e, out);
                        }
                        let Some(t) = self.txns.get_mut(id) else {
                            return;
                        };
                        t.accept(now, self.cfg.t1);
                        if t.initial {
                            let dest = t.dest_addr;
                            self.invite_outcome(dest, None, now);
                        }
                        self.learn_from_response(id, src, msg);
                        self.settle_offers(id, msg, true);
                        self.answered(id, now);
                        if let Some(did) = self.txns.get(id).filter(|t| t.initial).map(|t| t.dialog)
                        {
                            self.carrier_session_answer(did, msg);
                        }
                    }
                    let as_invite = self.txns.get(id).is_some_and(|t| t.update_as_invite);
                    if as_invite {
                        // Our re-INVITE for the carrier's UPDATE: ACKed here
                        // (each 2xx copy too), its 200 the UPDATE's answer.
                        if let Some(ack) = self.ack_for_2xx(id, msg) {
                            out.push(ack);
                        }
                        if phase == Phase::Proceeding {
                            self.relay_and_keep(id, msg, code, out);
                        }
                    } else if matches!(phase, Phase::Proceeding | Phase::Accepted) {
                        // 2xx retransmissions are relayed too (RFC 3261 16.7 step 5 / RFC 6026).
                        self.relay_response(id, msg, code, out);
                    }
                    if phase == Phase::Proceeding {
                        if let Some(did) = self.txns.get(id).map(|t| t.dialog) {
                            self.session_refreshed(did);
                        }
                    }
                } else if phase == Phase::Proceeding {
                    if let Some(e) = self.unanchorable(msg) {
                        return self.refuse_answer(rx, id, &e, out);
                    }
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
                        transport: t.dest_transport,
                        data: ack,
                    });
                    let live = t.phase == Phase::Proceeding && t.cancel == CancelState::None;
                    // A gateway's challenge is answered with its credentials.
                    let challenge = if live && matches!(code, 401 | 407) {
                        self.answer_challenge(id, now, msg, code, out)
                    } else {
                        Challenge::NotOurs
                    };
                    if challenge == Challenge::Answered {
                        return;
                    }
                    let Some(t) = self.txns.get_mut(id) else {
                        return;
                    };
                    let failover = live
                        && t.initial
                        && (self.cfg.policy.failover_codes.contains(&code)
                            || challenge == Challenge::Refused);
                    if t.phase == Phase::Proceeding && t.initial {
                        // A failover code counts against the gateway's
                        // health; any other final answer shows it takes calls.
                        let dest = t.dest_addr;
                        self.invite_outcome(dest, failover.then_some(code), now);
                    }
                    let Some(t) = self.txns.get_mut(id) else {
                        return;
                    };
                    if failover {
                        // Serial failover; when nothing is left the caller gets our 503.
                        if !self.try_next(id, now, code, out) {
                            self.fail_txn(id, now, 503, b"", out);
                        }
                        return;
                    }
                    if t.phase == Phase::Proceeding {
                        t.complete(now, self.cfg.t1);
                        self.provisionals_done(id);
                        self.settle_offers(id, msg, false);
                        let Some(t) = self.txns.get(id) else { return };
                        let (initial, did_of) = (t.initial, t.dialog);
                        let cancelled = t.cancel != CancelState::None;
                        self.relay_final(id, msg, code, out);
                        if initial {
                            let result = if cancelled {
                                CallResult::Cancelled
                            } else {
                                CallResult::Failed
                            };
                            if matches!(code, 401 | 407) {
                                self.remember_challenge(id, now);
                            }
                            self.note_end(id, if code == 503 { 500 } else { code });
                            if let Some(d) = self.dialogs.get_mut(did_of) {
                                d.ended_by.get_or_insert(if cancelled {
                                    EndedBy::Caller
                                } else {
                                    EndedBy::Callee
                                });
                            }
                            self.end_dialog_of(id, Some(result));
                        }
                    }
                } else if t.phase == Phase::Proceeding {
                    if matches!(code, 401 | 407)
                        && self.answer_challenge(id, now, msg, code, out) == Challenge::Answered
                    {
                        return;
                    }
                    self.final_non_invite(id, now, msg, code, out);
                }
                self.arm(id);
            }
        }
    }

    pub(super) fn final_non_invite(
        &mut self,
        id: Id,
        now: Ms,
        msg: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) {
        if let Some(t) = self.txns.get_mut(id) {
            t.complete(now, self.cfg.t1);
        }
        if code < 300 {
            // The answer to an offer in an UPDATE or PRACK (RFC 3311, 3262).
            if let Some((did, far)) = self.txns.get(id).map(|t| (t.dialog, t.orig.other())) {
                self.offer_answer(did, far, msg);
            }
        }
        self.settle_offers(id, msg, code < 300);
        self.relay_final(id, msg, code, out);
        if code < 300 && msg.cseq.method == Method::Update {
            if let Some(did) = self.txns.get(id).map(|t| t.dialog) {
                self.session_refreshed(did);
            }
        }
        if msg.cseq.method == Method::Bye {
            self.note_end(id, code);
            self.end_dialog_of(id, None);
        }
    }

    /// A 2xx whose SDP the relay cannot anchor: the call could carry no
    /// media, so it is ended cleanly. A 2xx to our INVITE is ACKed (RFC 3261
    /// 13.2.2.4) and its leg gets a BYE of ours; the sender of the request
    /// gets 502 (RFC 3261 21.5.3) with a `Warning` naming what was wrong,
    /// and, when the call was up already (a re-INVITE or UPDATE), a BYE too.
    fn refuse_answer(
        &mut self,
        rx: &Incoming<'_, '_>,
        id: Id,
        e: &SdpError,
        out: &mut Vec<Outgoing>,
    ) {
        let Incoming { now, src, msg, .. } = *rx;
        let Some(t) = self.txns.get(id) else { return };
        let (did, orig, initial, invite) = (t.dialog, t.orig, t.initial, t.invite);
        self.stats.answers_refused.inc();
        if invite {
            self.learn_from_response(id, src, msg);
            if let Some(ack) = self.ack_for_2xx(id, msg) {
                out.push(ack);
            }
        }
        let confirmed = self
            .dialogs
            .get(did)
            .is_some_and(|d| d.state == DialogState::Confirmed);
        let reason = b"SIP;cause=502;text=\"SDP answer not anchorable\"";
        if invite || confirmed {
            self.send_bye(did, orig.other(), reason, out);
        }
        self.ended_here(did);
        let warning = format!("Warning: 399 sbc \"{}\"\r\n", e.text());
        self.fail_txn(id, now, 502, warning.as_bytes(), out);
        if !initial && confirmed {
            self.send_bye(did, orig, reason, out);
            self.end_dialog(did, None);
        }
    }

    /// The ACK of a 2xx to our INVITE `id` (RFC 3261 13.2.2.4): end to end,
    /// with a branch of its own, to the remote target the 2xx gave, through
    /// the leg's route set.
    fn ack_for_2xx(&mut self, id: Id, msg: &SipMessage<'_>) -> Option<Outgoing> {
        let branch = self.new_branch_stateless();
        let t = self.txns.get(id)?;
        let d = self.dialogs.get(t.dialog)?;
        let leg = d.leg(t.orig.other());
        let (ruri, routes) = leg.request_target();
        let mut via = self.ours(leg.side, leg.transport).via_start();
        via.extend_from_slice(&branch);
        let outbound = Outbound {
            ruri,
            via,
            routes,
            ..t.outbound.clone()
        };
        Some(Outgoing {
            side: leg.side,
            dst: leg.next_hop(),
            transport: leg.transport,
            data: build_ack(&outbound, msg),
        })
    }

    /// The final response `msg` ends transaction `id`: the SDP offers it
    /// carried are committed or rolled back ([`SipEngine::offers_settled`]).
    fn settle_offers(&mut self, id: Id, msg: &SipMessage<'_>, accepted: bool) {
        if let Some((did, orig)) = self.txns.get(id).map(|t| (t.dialog, t.orig)) {
            self.offers_settled(did, (orig, msg.cseq.seq), accepted);
        }
    }

    /// Learns the far leg's target and route set from a dialog-creating or
    /// target-refreshing response.
    pub(super) fn learn_from_response(&mut self, id: Id, src: SocketAddr, msg: &SipMessage<'_>) {
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
        let ours: Vec<SocketAddrV4> = self.cfg.addrs(far_side).collect();
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
                .filter(|v| !is_our_uri(v, ours.iter().copied()))
                .map(<[u8]>::to_vec)
                .collect();
            rs.reverse();
            leg.route_set = rs;
        } else {
            // A target refresh in a confirmed call (a re-INVITE's 2xx).
            self.journal_up(did);
        }
    }

    /// Relays a final non-2xx (or a non-INVITE's final) back and keeps it
    /// for retransmissions. A 503 from downstream is not relayed as is
    /// (RFC 3261 16.7 step 6): the caller would take it as ours.
    fn relay_final(&mut self, id: Id, msg: &SipMessage<'_>, code: u16, out: &mut Vec<Outgoing>) {
        let relay_code = if code == 503 { 500 } else { code };
        self.relay_and_keep(id, msg, relay_code, out);
    }

    /// Relays a response back and keeps it as the transaction's last one,
    /// to repeat when the request is retransmitted.
    fn relay_and_keep(&mut self, id: Id, msg: &SipMessage<'_>, code: u16, out: &mut Vec<Outgoing>) {
        if let Some(bytes) = self.relay_response(id, msg, code, out) {
            if let Some(t) = self.txns.get_mut(id) {
                t.last_response = Some(bytes);
            }
        }
    }

    /// Relays a response back to the sender of the request; returns the bytes.
    pub(super) fn relay_response(
        &self,
        id: Id,
        msg: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) -> Option<Vec<u8>> {
        let bytes = self.response_for(id, msg, code, b"")?;
        let t = self.txns.get(id)?;
        out.push(Outgoing {
            side: t.orig_side,
            dst: t.orig_addr,
            transport: t.orig_transport,
            data: bytes.clone(),
        });
        Some(bytes)
    }

    /// A response from the far side re-written for the sender of the
    /// request of transaction `id`, with `extra` header lines added.
    pub(super) fn response_for(
        &self,
        id: Id,
        msg: &SipMessage<'_>,
        code: u16,
        extra: &[u8],
    ) -> Option<Vec<u8>> {
        let t = self.txns.get(id)?;
        let d = self.dialogs.get(t.dialog)?;
        let back = d.leg(t.orig);
        let to_side = t.orig_side;
        let ours = self.ours(to_side, back.transport);
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
        let body = self.body_for(t.dialog, t.orig, msg, &hider);
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
                // The request's own CSeq (we may have renumbered it).
                HeaderName::CSeq if !t.cseq_line.is_empty() => {
                    b.raw(&t.cseq_line);
                }
                HeaderName::ContentType => {
                    body.write_content_type(&mut b, h.raw_name, h.value, &hider);
                }
                _ => self.copy_shielded(&mut b, (d, to_side), h, &hider),
            }
        }
        let ok_to_carrier = (200..300).contains(&code)
            && to_side != d.gateway_side()
            && matches!(msg.cseq.method, Method::Invite | Method::Update);
        b.raw(&self.shield_extra(d, false, ok_to_carrier));
        b.raw(extra);
        body.write_missing_content_type(&mut b, msg);
        Some(b.finish(&body.bytes))
    }
}
