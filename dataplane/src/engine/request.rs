//! Requests as they arrive: the proxy checks of RFC 3261 16.3 (loop,
//! Max-Forwards, Proxy-Require), retransmissions absorbed by the server
//! transaction key, ACK and CANCEL, in-dialog requests forwarded, and the
//! proxy transaction created for everything that goes on.

use super::dialog::LegRef;
use super::ids::server_key;
use super::invite::RouteState;
use super::local::{
    local_response, raw_line, via_lines, with_overload_control, OC_LOSS_PERCENT, OC_VALIDITY_MS,
};
use super::media::sdp_of;
use super::rewrite::first_contact_uri;
use super::slab::Id;
use super::txn::{CancelState, Phase, Timer, Txn};
use super::{ipv4_of, Incoming, Outgoing, SipEngine};
use crate::routing::Profile;
use crate::side::Side;
use crate::sip::build::reason;
use crate::sip::grammar::{self, Via};
use crate::sip::{HeaderName, Method, SipMessage};
use crate::transport::Transport;

/// The methods we proxy, for `Allow` in our OPTIONS and 405 answers.
const ALLOW: &[u8] = b"INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, INFO, REFER, NOTIFY, PRACK";

impl SipEngine {
    pub(super) fn on_request(&mut self, rx: &Incoming<'_, '_>, out: &mut Vec<Outgoing>) {
        let Incoming {
            side,
            src,
            transport,
            msg,
            ..
        } = *rx;
        let method = msg.method();
        let is_ack = method == Method::Ack;
        let reply = |engine: &mut SipEngine, out: &mut Vec<Outgoing>, code: u16, extra: &[u8]| {
            if !is_ack {
                let tag = engine.next_u64();
                out.push(Outgoing {
                    side,
                    dst: src,
                    transport,
                    data: local_response(msg, src, code, reason(code), tag, extra),
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
                if t.phase != Phase::Accepted || t.update_as_invite {
                    if let Some(resp) = &t.last_response {
                        out.push(Outgoing {
                            side: t.orig_side,
                            dst: t.orig_addr,
                            transport: t.orig_transport,
                            data: resp.clone(),
                        });
                    }
                }
            }
            return;
        }
        // An offer the relay cannot anchor is refused rather than forwarded
        // with its media unreachable (RFC 3261 21.4.26).
        if matches!(method, Method::Invite | Method::Update) {
            if let Some(e) = self.unanchorable(msg) {
                let warning = format!("Warning: 399 sbc \"{}\"\r\n", e.text());
                return reply(self, out, 488, warning.as_bytes());
            }
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
            Method::Invite if self.overloaded && !self.draining => {
                self.stats.overload_refused.inc();
                let extra = format!("Retry-After: {}\r\n", self.cfg.policy.retry_after_s);
                let tag = self.next_u64();
                let resp = local_response(msg, src, 503, reason(503), tag, extra.as_bytes());
                out.push(Outgoing {
                    side,
                    dst: src,
                    transport,
                    data: with_overload_control(resp, msg, OC_LOSS_PERCENT, OC_VALIDITY_MS, rx.now),
                });
            }
            Method::Invite | Method::Options if self.draining => {
                self.stats.drain_refused.inc();
                let extra = format!("Retry-After: {}\r\n", self.cfg.policy.retry_after_s);
                reply(self, out, 503, extra.as_bytes())
            }
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

    /// Whether `via` is one of ours: our address and port on any side and
    /// transport (a Via without a port names its transport's default, 5061
    /// for TLS, RFC 3261 §18.2.2).
    pub(super) fn is_our_via(&self, via: &Via<'_>) -> bool {
        let ip = grammar::parse_ipv4(via.host);
        let port = via.port.unwrap_or_else(|| {
            Transport::parse(via.transport).map_or(5060, Transport::default_port)
        });
        Side::ALL
            .iter()
            .flat_map(|&s| self.cfg.addrs(s))
            .any(|a| ip == Some(*a.ip()) && port == a.port())
    }

    pub(super) fn on_ack(&mut self, rx: &Incoming<'_, '_>, out: &mut Vec<Outgoing>) {
        let Incoming {
            now,
            side,
            src,
            transport: _,
            msg,
        } = *rx;
        // ACK for a non-2xx final: hop by hop, it ends our server transaction.
        let key = server_key(side, msg, true);
        if let Some(&id) = self.server_index.get(&key) {
            if let Some(t) = self.txns.get_mut(id) {
                if t.phase == Phase::Completed {
                    t.confirm(now, self.cfg.t2);
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
        // The ACK of a 2xx we gave ourselves (a session refresh) ends there.
        if let Some((cseq, id)) = d.ack_here {
            if cseq == msg.cseq.seq && side != d.gateway_side() {
                if let Some(d) = self.dialogs.get_mut(did) {
                    d.ack_here = None;
                }
                if let Some(t) = self.txns.get_mut(id) {
                    t.confirm(now, 0);
                }
                self.arm(id);
                return;
            }
        }
        self.offer_answer(did, from_leg, msg);
        self.offers_settled(did, (from_leg, msg.cseq.seq), false);
        let branch = self.new_branch_stateless();
        if let Some(r) = self.rewrite_request(msg, did, from_leg, &branch, ipv4_of(src)) {
            out.push(Outgoing {
                side: r.side,
                dst: r.dst,
                transport: r.transport,
                data: r.bytes,
            });
        }
    }

    pub(super) fn on_cancel(&mut self, rx: &Incoming<'_, '_>, out: &mut Vec<Outgoing>) {
        let Incoming {
            now,
            side,
            src,
            transport,
            msg,
        } = *rx;
        let answer = |engine: &mut SipEngine, out: &mut Vec<Outgoing>, m: &SipMessage<'_>, code| {
            let tag = engine.next_u64();
            out.push(Outgoing {
                side,
                dst: src,
                transport,
                data: local_response(m, src, code, reason(code), tag, b""),
            });
        };
        let key = server_key(side, msg, true);
        if let Some(invite) = self.cancel_waiting(&key, now) {
            // Cancelled while its admission was asked: 200 to the CANCEL,
            // 487 to the INVITE; nothing went on.
            answer(self, out, msg, 200);
            if let Ok(inv) = SipMessage::parse(&invite) {
                answer(self, out, &inv, 487);
            }
            return;
        }
        let Some(&id) = self.server_index.get(&key) else {
            return answer(self, out, msg, 481);
        };
        answer(self, out, msg, 200);
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

    pub(super) fn forward_in_dialog(
        &mut self,
        rx: &Incoming<'_, '_>,
        did: Id,
        key: Box<[u8]>,
        out: &mut Vec<Outgoing>,
    ) {
        let Incoming {
            side,
            src,
            transport,
            msg,
            ..
        } = *rx;
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
        // A gateway that must key its media and offers none is refused.
        let refusal = matches!(msg.method(), Method::Invite | Method::Update)
            .then(|| self.srtp_refusal(did, orig, sdp_of(msg)?))
            .flatten();
        if let Some(e) = refusal {
            let warning = format!("Warning: 399 sbc \"{}\"\r\n", e.text());
            let tag = self.next_u64();
            out.push(Outgoing {
                side,
                dst: src,
                transport,
                data: local_response(msg, src, 488, reason(488), tag, warning.as_bytes()),
            });
            return;
        }
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if d.profile == Profile::Livekit && self.shield_request(rx, did, &key, out) {
            return;
        }
        let provisional = if msg.method() == Method::Invite {
            let trying = local_response(msg, src, 100, reason(100), 0, b"");
            out.push(Outgoing {
                side,
                dst: src,
                transport,
                data: trying.clone(),
            });
            Some(trying)
        } else {
            None
        };
        self.offer_answer(did, orig, msg);
        self.start_txn(rx, key, did, orig, provisional, None, out);
    }

    /// Creates the proxy transaction for `msg` (with `route` for an initial
    /// INVITE: its candidates) and sends the request on.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn start_txn(
        &mut self,
        rx: &Incoming<'_, '_>,
        key: Box<[u8]>,
        did: Id,
        orig: LegRef,
        last_response: Option<Vec<u8>>,
        route: Option<RouteState>,
        out: &mut Vec<Outgoing>,
    ) -> Option<Id> {
        let Incoming {
            now,
            side,
            src,
            transport,
            msg,
        } = *rx;
        let method = msg.method();
        // The slab hands out this id next: our branch carries it.
        let id = self.txns.next_id();
        let r = self.rewrite_request(msg, did, orig, &self.branch_for(id, 0), ipv4_of(src))?;
        let echo = |name: HeaderName| -> Vec<u8> {
            msg.headers
                .iter()
                .filter(|h| h.name == name)
                .flat_map(|h| raw_line(h.raw_name, h.value))
                .collect()
        };
        let t1 = self.cfg.t1;
        let timeout = match &route {
            Some(route) => self.invite_timeout(now, route.candidates.len() > 1),
            None => (now + 64 * t1, Timer::TransactionTimeout),
        };
        let txn = Txn {
            local: false,
            invite: method == Method::Invite || r.as_invite,
            update_as_invite: r.as_invite,
            bye: method == Method::Bye,
            server_key: key.clone(),
            dialog: did,
            orig,
            // The INVITE that creates the dialog (no To tag yet).
            initial: method == Method::Invite && msg.to.tag().is_none(),
            phase: Phase::Proceeding,
            orig_side: side,
            orig_addr: src,
            orig_transport: transport,
            vias: via_lines(msg, src),
            from_line: echo(HeaderName::From),
            to_value: msg
                .header(HeaderName::To)
                .map(|h| h.value.to_vec())
                .unwrap_or_default(),
            call_id_line: echo(HeaderName::CallId),
            cseq_line: echo(HeaderName::CSeq),
            local_tag: self.next_u64(),
            last_response,
            dest_side: r.side,
            dest_addr: r.dst,
            dest_transport: r.transport,
            request: r.bytes.clone(),
            outbound: r.outbound,
            provisional: false,
            cancel: CancelState::None,
            retransmit_at: Some(now + t1),
            retransmit_every: t1,
            timeout: Some(timeout),
            linger_until: None,
            sends: 0,
            authed: false,
            route: route.map(Box::new),
        };
        let inserted = self.txns.insert(txn);
        debug_assert_eq!(inserted, id, "the slab handed out another id");
        self.server_index.insert(key, id);
        if let Some(d) = self.dialogs.get_mut(did) {
            let to = d.leg_mut(orig.other());
            to.cseq_sent = to.cseq_sent.max(msg.cseq.seq.saturating_add(to.cseq_shift));
        }
        if msg.cseq.method != Method::Bye {
            self.journal_up(did);
        }
        out.push(Outgoing {
            side: r.side,
            dst: r.dst,
            transport: r.transport,
            data: r.bytes,
        });
        self.stats.transactions.set(self.txns.len() as u64);
        self.arm(id);
        Some(id)
    }
}
