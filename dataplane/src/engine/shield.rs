//! The LiveKit shield (a gateway's `livekit` profile): the carrier's SIP
//! features that LiveKit lacks are handled at the carrier's edge.
//!
//! Session timers (RFC 4028): toward the carrier the SBC takes part in the
//! session timer - it answers refreshes that change nothing itself (a
//! bodiless UPDATE, a re-INVITE or UPDATE whose SDP is the one the carrier
//! sent before, a bodiless re-INVITE), adds `Session-Expires` and
//! `Require: timer` to the 2xx it gives the carrier, refuses a too short
//! interval with 422, refreshes with UPDATE (or a re-INVITE when the carrier
//! does not allow UPDATE) when it is the refresher, and ends the call with
//! BYE both ways when no refresh came. Toward LiveKit no `timer` or `100rel`
//! is advertised and no `Session-Expires`/`Min-SE` passes.
//!
//! Also here: UPDATE, INFO (DTMF as RFC 4733), hold directions, the SBC's
//! own offer for a delayed offer, reliable provisionals (RFC 3262) and
//! REFER; ARCHITECTURE.md ("The LiveKit shield") tells them together.

use std::cmp::Reverse;

use super::dialog::{Dialog, DialogState, LegRef};
use super::hide::Hider;
use super::local::{local_answer, local_response, raw_line};
use super::media::{line_desc, sdp_of};
use super::rewrite::{copy_hidden, our_contact};
use super::slab::Id;
use super::txn::Txn;
use super::{Incoming, Ms, Outgoing, SipEngine};
use crate::media::offer::offer_sdp;
use crate::media::{MediaCmd, TelephoneEvent};
use crate::routing::Profile;
use crate::side::Side;
use crate::sip::build::{reason, Builder};
use crate::sip::grammar::{self, trim_lws, NameAddr, SipUri};
use crate::sip::{Header, HeaderName, Method, SipMessage};
use crate::transport::Transport;

/// The session interval we ask for or take when the carrier names none
/// (RFC 4028 section 4 recommends 1800 s).
pub const DEFAULT_INTERVAL: u32 = 1800;
/// The smallest session interval we accept (RFC 4028 `Min-SE`, 90 s at
/// least); a shorter one is refused with 422.
pub const MIN_SE: u32 = 90;

/// The session timer of a shielded call, kept at the carrier's edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SessionTimer {
    /// The session interval, seconds (`Session-Expires`).
    pub interval: u32,
    /// Whether the carrier refreshes; else we do, with UPDATE or re-INVITE.
    pub carrier_refreshes: bool,
    /// When the next action is due (engine ms): our refresh at half the
    /// interval, or, when the carrier refreshes, the BYE at the interval
    /// minus min(32 s, a third of it) after the last refresh (section 10).
    pub due: Ms,
}

impl SessionTimer {
    /// `Session-Expires: <interval>;refresher=<uac|uas>` for a 2xx to a
    /// request the carrier sent (the carrier is its UAC).
    fn header_to_carrier(&self) -> Vec<u8> {
        let who = if self.carrier_refreshes { "uac" } else { "uas" };
        format!(
            "Require: timer\r\nSession-Expires: {};refresher={who}\r\n",
            self.interval
        )
        .into_bytes()
    }

    /// How long after a refresh the next action is due (ms).
    pub(super) fn wait(&self) -> Ms {
        let s = u64::from(self.interval);
        let secs = if self.carrier_refreshes {
            s - (s / 3).min(32)
        } else {
            s / 2
        };
        secs * 1000
    }
}

/// What the shield does with one header of a message leaving toward a side.
enum HeaderAction {
    /// Copied as usual.
    Copy,
    /// Left out.
    Skip,
    /// Written as this whole line instead.
    Line(Vec<u8>),
}

fn named(h: &Header<'_>, long: &str, compact: &str) -> bool {
    h.raw_name.eq_ignore_ascii_case(long.as_bytes())
        || (!compact.is_empty() && h.raw_name.eq_ignore_ascii_case(compact.as_bytes()))
}

/// The first value of the header named `long`, else of its `compact` form.
fn value<'a>(msg: &SipMessage<'a>, long: &str, compact: &str) -> Option<&'a [u8]> {
    msg.header_named(long).or_else(|| {
        (!compact.is_empty())
            .then(|| msg.header_named(compact))
            .flatten()
    })
}

/// Whether a header of `msg` that `is_list` picks lists `token`
/// (case-insensitive) among its comma-separated values.
fn lists(msg: &SipMessage<'_>, is_list: impl Fn(&Header<'_>) -> bool, token: &[u8]) -> bool {
    msg.headers
        .iter()
        .filter(|h| is_list(h))
        .flat_map(|h| grammar::split_list(h.value))
        .any(|t| trim_lws(t).eq_ignore_ascii_case(token))
}

/// `Session-Expires` (compact `x`): the interval in seconds and whether
/// the refresher is the UAC (`Some(true)`), the UAS, or unnamed.
pub(super) fn session_expires(msg: &SipMessage<'_>) -> Option<(u32, Option<bool>)> {
    let v = value(msg, "Session-Expires", "x")?;
    let end = v.iter().position(|&b| b == b';').unwrap_or(v.len());
    let secs = grammar::parse_u32_saturating(trim_lws(v.get(..end)?))?;
    let refresher = grammar::param(v.get(end..)?, "refresher")
        .flatten()
        .map(|r| r.eq_ignore_ascii_case(b"uac"));
    Some((secs, refresher))
}

/// Whether `msg`'s `Allow` lists UPDATE (RFC 3311): our session refreshes
/// then use it, else a re-INVITE.
pub(super) fn allows_update(msg: &SipMessage<'_>) -> bool {
    lists(msg, |h| named(h, "Allow", ""), b"UPDATE")
}

/// Whether `msg` lists option tag `tag` in `Supported` (compact `k`) or `Require`.
fn lists_tag(msg: &SipMessage<'_>, tag: &[u8]) -> bool {
    lists(
        msg,
        |h| named(h, "Supported", "k") || h.name == HeaderName::Require,
        tag,
    )
}

/// The option tags the shield handles at the carrier's edge and LiveKit
/// never sees: `timer` (RFC 4028) and `100rel` (RFC 3262).
fn is_edge_tag(t: &[u8]) -> bool {
    t.eq_ignore_ascii_case(b"timer") || t.eq_ignore_ascii_case(b"100rel")
}

/// A list header's value without [`is_edge_tag`] tags; `None` when nothing is left.
fn without_edge_tags(value: &[u8]) -> Option<Vec<u8>> {
    let kept: Vec<&[u8]> = grammar::split_list(value)
        .map(trim_lws)
        .filter(|t| !is_edge_tag(t))
        .collect();
    (!kept.is_empty()).then(|| kept.join(b", ".as_slice()))
}

/// The SDP without its `o=` line (whose version a refresh may bump).
fn session_of(sdp: &[u8]) -> Vec<&[u8]> {
    sdp.split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with(b"o="))
        .collect()
}

impl SipEngine {
    /// What happens to header `h` of a message of shielded dialog `d`
    /// leaving toward `toward`: toward the gateway, no session timer.
    fn shield_header(&self, d: &Dialog, toward: Side, h: &Header<'_>) -> HeaderAction {
        if d.profile != Profile::Livekit || toward != d.gateway_side() {
            return HeaderAction::Copy;
        }
        if named(h, "Session-Expires", "x") || named(h, "Min-SE", "") {
            return HeaderAction::Skip;
        }
        if named(h, "Supported", "k") || h.name == HeaderName::Require {
            let has = grammar::split_list(h.value).any(|t| is_edge_tag(trim_lws(t)));
            if has {
                return match without_edge_tags(h.value) {
                    Some(v) => HeaderAction::Line(raw_line(h.raw_name, &v)),
                    None => HeaderAction::Skip,
                };
            }
        }
        HeaderAction::Copy
    }

    /// Headers a shielded dialog adds to a message toward `toward`: our
    /// `Supported: timer` and `Session-Expires` (the carrier to refresh) on
    /// an outbound call's INVITE to the carrier (`initial_invite`), and the
    /// negotiated timer on a 2xx to the carrier (`ok_to_carrier`).
    pub(super) fn shield_extra(
        &self,
        d: &Dialog,
        initial_invite: bool,
        ok_to_carrier: bool,
    ) -> Vec<u8> {
        if d.profile != Profile::Livekit {
            return Vec::new();
        }
        if initial_invite && d.caller.side == d.gateway_side() {
            return format!(
                "Supported: timer\r\nSession-Expires: {DEFAULT_INTERVAL};refresher=uas\r\n"
            )
            .into_bytes();
        }
        match (ok_to_carrier, d.session) {
            (true, Some(s)) => s.header_to_carrier(),
            _ => Vec::new(),
        }
    }

    /// The session timer a new shielded call starts with: from the
    /// carrier's INVITE (its interval and refresher, when it supports
    /// `timer`), or, for an outbound call, ours (the carrier to refresh,
    /// until its 2xx says otherwise).
    pub(super) fn initial_session(
        &self,
        msg: &SipMessage<'_>,
        from_gateway: bool,
    ) -> Option<SessionTimer> {
        if from_gateway {
            return Some(SessionTimer {
                interval: DEFAULT_INTERVAL,
                carrier_refreshes: true,
                due: 0,
            });
        }
        let se = session_expires(msg);
        if se.is_none() && !lists_tag(msg, b"timer") {
            return None;
        }
        let (interval, refresher_uac) = se.unwrap_or((DEFAULT_INTERVAL, None));
        Some(SessionTimer {
            interval: interval.max(MIN_SE),
            carrier_refreshes: refresher_uac != Some(false),
            due: 0,
        })
    }

    /// An in-dialog request of a shielded call that the shield answers
    /// itself instead of relaying: from the carrier, a too short session
    /// interval (422), a refresh that changes nothing, a PRACK, an INFO;
    /// from the gateway, a REFER naming the SBC (403: the carrier would send
    /// the transfer back to us, RFC 3515 2.4.2). `true` when answered.
    pub(super) fn shield_request(
        &mut self,
        rx: &Incoming<'_, '_>,
        did: Id,
        key: &[u8],
        out: &mut Vec<Outgoing>,
    ) -> bool {
        let Incoming {
            side,
            src,
            transport,
            msg,
            ..
        } = *rx;
        let from_carrier = self
            .dialogs
            .get(did)
            .is_some_and(|d| side != d.gateway_side());
        match msg.method() {
            Method::Invite | Method::Update if from_carrier => {
                self.refuse_short_interval(msg, (side, src, transport), out)
                    || self.answer_refresh(rx, did, Box::from(key), out)
            }
            Method::Prack if from_carrier => self.answer_prack(rx, did, out),
            Method::Info if from_carrier => {
                self.answer_info(rx, did, out);
                true
            }
            Method::Refer if !from_carrier && self.refers_to_us(msg) => {
                let tag = self.next_u64();
                out.push(Outgoing {
                    side,
                    dst: src,
                    transport,
                    data: local_response(msg, src, 403, reason(403), tag, b""),
                });
                true
            }
            _ => false,
        }
    }

    /// Answers a shielded call's request from the carrier with 422 Session
    /// Interval Too Small and our `Min-SE` when it asks for an interval
    /// below it (RFC 4028 section 6); `true` when it did.
    pub(super) fn refuse_short_interval(
        &mut self,
        msg: &SipMessage<'_>,
        (side, src, transport): (Side, std::net::SocketAddr, Transport),
        out: &mut Vec<Outgoing>,
    ) -> bool {
        if session_expires(msg).is_none_or(|(secs, _)| secs >= MIN_SE) {
            return false;
        }
        let tag = self.next_u64();
        let min_se = format!("Min-SE: {MIN_SE}\r\n");
        out.push(Outgoing {
            side,
            dst: src,
            transport,
            data: local_response(msg, src, 422, reason(422), tag, min_se.as_bytes()),
        });
        true
    }

    /// Copies header `h` of a message of dialog `d` leaving toward `toward`
    /// as the shield says ([`SipEngine::shield_header`]): text-hidden,
    /// left out, or replaced.
    pub(super) fn copy_shielded(
        &self,
        b: &mut Builder,
        (d, toward): (&Dialog, Side),
        h: &Header<'_>,
        hider: &Hider<'_>,
    ) {
        match self.shield_header(d, toward, h) {
            HeaderAction::Copy => copy_hidden(b, h.raw_name, h.value, hider),
            HeaderAction::Skip => {}
            HeaderAction::Line(line) => {
                b.raw(&line);
            }
        }
    }

    /// A 2xx from the carrier to our outbound INVITE: its `Session-Expires`
    /// says who refreshes; none means the carrier does no session timer.
    pub(super) fn carrier_session_answer(&mut self, did: Id, msg: &SipMessage<'_>) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if d.profile != Profile::Livekit || d.callee.side == d.gateway_side() {
            return;
        }
        d.carrier_allows_update = allows_update(msg);
        d.session = session_expires(msg).map(|(interval, refresher_uac)| SessionTimer {
            interval: interval.max(MIN_SE),
            // We were the UAC: refresher=uac is us.
            carrier_refreshes: refresher_uac != Some(true),
            due: 0,
        });
    }

    /// Whether the `Refer-To` (compact `r`) of `msg` names one of our SIP
    /// addresses (either side's; any port).
    fn refers_to_us(&self, msg: &SipMessage<'_>) -> bool {
        let Some(v) = value(msg, "Refer-To", "r") else {
            return false;
        };
        let uri = NameAddr::parse(v).map_or(v, |na| na.uri);
        let Some(host) = SipUri::parse(uri).and_then(|u| grammar::parse_ipv4(u.host)) else {
            return false;
        };
        Side::ALL.iter().any(|&s| *self.cfg.addr(s).ip() == host)
    }

    /// A new call toward a `livekit` gateway whose INVITE carries no SDP:
    /// the SBC will offer its own in its place ([`offer_sdp`] of the
    /// tenant's codecs, else the configured ones; its port pairs taken now).
    pub(super) fn offer_for_gateway(&mut self, did: Id, msg: &SipMessage<'_>) {
        if self.cfg.media.is_none() || sdp_of(msg).is_some() {
            return;
        }
        let tenant = self
            .dialogs
            .get(did)
            .and_then(|d| d.tenant_id.as_deref())
            .and_then(|t| self.snapshot.tenant(t));
        let codecs = tenant
            .and_then(|t| t.offer_codecs.as_deref())
            .unwrap_or(&self.cfg.offer_codecs);
        let sdp = offer_sdp(codecs);
        let Ok(offer) = crate::media::sdp::SdpRepr::parse(&sdp) else {
            return;
        };
        self.add_media_lines(did, &offer);
        let carrier = match self.dialogs.get_mut(did) {
            Some(d) => {
                d.sbc_offer = Some(sdp);
                d.leg_on(d.gateway_side()).other()
            }
            None => return,
        };
        self.sdes_offer(did, carrier, &offer);
    }

    /// The carrier's 2xx to our refresh re-INVITE: its SDP answers the
    /// session we offered (the gateway's, unchanged), and may move the
    /// carrier's media (RFC 3264 section 8).
    pub(super) fn our_refresh_answered(&mut self, did: Id, carrier: LegRef, msg: &SipMessage<'_>) {
        if let Some(raw) = sdp_of(msg) {
            self.carrier_session_moved(did, carrier, raw);
        }
    }

    /// A session description from the carrier that the gateway is not told
    /// of (the answer to our refresh, an early UPDATE): where it moves the
    /// carrier's media (address, port, direction) the relay follows on the
    /// carrier's side; the gateway, whose view of us is unchanged, hears
    /// nothing. One with another number of media lines than the call has
    /// is ignored.
    fn carrier_session_moved(&mut self, did: Id, carrier: LegRef, raw: &[u8]) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if session_of(raw) == session_of(d.sdp_from(carrier)) {
            return;
        }
        let Ok(sdp) = crate::media::sdp::SdpRepr::parse(raw) else {
            return;
        };
        if sdp.media.len() != d.media.len() {
            return;
        }
        d.set_sdp_from(carrier, raw);
        let lines: Vec<_> = sdp.media.iter().map(line_desc).collect();
        self.apply_lines(did, carrier, &lines);
    }

    /// The session as the carrier was last given it: the gateway's latest
    /// SDP with our address and the carrier side's ports, for the answers
    /// and re-INVITEs the SBC makes toward the carrier itself.
    fn sdp_for_carrier(&self, did: Id) -> Vec<u8> {
        let Some(d) = self.dialogs.get(did) else {
            return Vec::new();
        };
        let gateway = d.leg_on(d.gateway_side());
        let carrier = gateway.other();
        let hider = self.hider(d.leg(carrier).side, super::ipv4_of(d.leg(gateway).peer));
        self.body_for_sdp(did, carrier, d.sdp_from(gateway), &hider)
    }

    /// A refresh (or the answer) went through: the session timer restarts.
    pub(super) fn session_refreshed(&mut self, did: Id) {
        let now = self.now;
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        if let Some(s) = d.session.as_mut() {
            s.due = now + s.wait();
            self.dialog_timers.push(Reverse((s.due, did.idx, did.gen)));
        }
    }

    /// A re-INVITE (confirmed call) or UPDATE (early or confirmed) from
    /// the carrier of a shielded call that changes nothing (no SDP, or the SDP the carrier sent before but
    /// for `o=`) is answered here: 200 with the SDP we last gave the
    /// carrier (for an UPDATE only when it carried one), `Contact`, and the
    /// session timer; the session timer restarts. An UPDATE in an early
    /// dialog is answered here even when it moves the carrier's media,
    /// which LiveKit could not be told of (no UPDATE, and no re-INVITE
    /// before the 2xx): the relay follows on the carrier's side; without an
    /// answer from the gateway yet, it is refused with 500 and
    /// `Retry-After` (RFC 3311 section 5.2: an offer is still unanswered).
    /// `true` when answered.
    fn answer_refresh(
        &mut self,
        rx: &Incoming<'_, '_>,
        did: Id,
        key: Box<[u8]>,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        let Incoming {
            now,
            side,
            src,
            transport,
            msg,
        } = *rx;
        let method = msg.method();
        let Some(d) = self.dialogs.get(did) else {
            return false;
        };
        let carrier = d.leg_on(side);
        // In an early dialog only an UPDATE can come (RFC 3311).
        if d.profile != Profile::Livekit
            || (d.state != DialogState::Confirmed && method != Method::Update)
            || side == d.gateway_side()
            || !matches!(method, Method::Invite | Method::Update)
        {
            return false;
        }
        let offered = sdp_of(msg);
        let unchanged = match offered {
            None => true,
            Some(sdp) => session_of(sdp) == session_of(d.sdp_from(carrier)),
        };
        let ours = d.sdp_from(carrier.other());
        let with_body = method == Method::Invite || offered.is_some();
        let early_move = !unchanged && d.state != DialogState::Confirmed;
        if early_move && ours.is_empty() {
            let tag = self.next_u64();
            let retry = b"Retry-After: 1\r\n";
            out.push(Outgoing {
                side,
                dst: src,
                transport,
                data: local_response(msg, src, 500, reason(500), tag, retry),
            });
            return true;
        }
        if (!unchanged && !early_move) || (with_body && ours.is_empty()) {
            return false;
        }
        if let (true, Some(sdp)) = (early_move, offered) {
            self.carrier_session_moved(did, carrier, sdp);
        }
        let Some(d) = self.dialogs.get(did) else {
            return false;
        };
        let body = if with_body {
            self.sdp_for_carrier(did)
        } else {
            Vec::new()
        };
        let mut extra = our_contact(self.ours(side, transport));
        extra.extend(d.session.map(|s| s.header_to_carrier()).unwrap_or_default());
        if with_body {
            extra.extend_from_slice(b"Content-Type: application/sdp\r\n");
        }
        let resp = local_answer(msg, src, 200, &extra, &body);
        out.push(Outgoing {
            side,
            dst: src,
            transport,
            data: resp.clone(),
        });
        let invite = method == Method::Invite;
        let id = self.txns.insert(Txn::answered_here(
            key.clone(),
            did,
            carrier,
            (side, src, transport),
            resp,
            invite,
            now,
            self.cfg.t1,
        ));
        self.server_index.insert(key, id);
        self.stats.transactions.set(self.txns.len() as u64);
        self.arm(id);
        if let Some(d) = self.dialogs.get_mut(did) {
            if invite {
                d.ack_here = Some((msg.cseq.seq, id));
            }
        }
        self.stats.refreshes_answered.inc();
        self.session_refreshed(did);
        true
    }

    /// Fires the dialog deadlines due at `now`: reliable provisionals
    /// resent, and session timers - our refresh (an UPDATE to the carrier),
    /// or the end of a session nobody refreshed (BYE both ways, RFC 4028
    /// section 10).
    pub(super) fn dialog_tick(&mut self, now: Ms, out: &mut Vec<Outgoing>) {
        while let Some(&Reverse((when, idx, gen))) = self.dialog_timers.peek() {
            if when > now {
                break;
            }
            self.dialog_timers.pop();
            let did = Id { idx, gen };
            self.resend_provisional(did, when, out);
            let Some(d) = self.dialogs.get(did) else {
                continue;
            };
            let Some(s) = d.session.filter(|s| s.due == when) else {
                continue;
            };
            let carrier = d.leg_on(d.gateway_side().other());
            if s.carrier_refreshes {
                self.stats.sessions_expired.inc();
                let reason = b"SIP;cause=408;text=\"session expired\"";
                for to in [LegRef::Caller, LegRef::Callee] {
                    self.send_bye(did, to, reason, out);
                }
                self.ended_here(did);
                self.end_dialog(did, None);
            } else {
                // UPDATE when the carrier allows it, else a re-INVITE with
                // the SDP it has (RFC 4028 section 7.4).
                let mut extra = format!(
                    "Session-Expires: {};refresher=uac\r\nSupported: timer\r\n",
                    s.interval
                )
                .into_bytes();
                if d.carrier_allows_update {
                    self.send_local(did, carrier, b"UPDATE", &extra, b"", out);
                } else {
                    let sdp = self.sdp_for_carrier(did);
                    extra.extend_from_slice(b"Content-Type: application/sdp\r\n");
                    self.send_local(did, carrier, b"INVITE", &extra, &sdp, out);
                }
                self.session_refreshed(did);
            }
        }
    }
}

impl SipEngine {
    /// Whether a carrier that requires 100rel gets provisionals of this
    /// shielded dialog from us, reliably (RFC 3262).
    pub(super) fn wants_reliable(msg: &SipMessage<'_>) -> bool {
        lists(msg, |h| h.name == HeaderName::Require, b"100rel")
    }

    /// Relays a provisional (101-199) of transaction `id` as a reliable one
    /// of ours (`Require: 100rel`, `RSeq`) when the carrier requires it:
    /// sent now and resent until its PRACK, or, while another waits for its
    /// PRACK, queued. `false` when the provisional is not ours to make reliable.
    pub(super) fn relay_reliably(
        &mut self,
        id: Id,
        msg: &SipMessage<'_>,
        code: u16,
        out: &mut Vec<Outgoing>,
    ) -> bool {
        let Some((did, to_side, dst, transport)) = self
            .txns
            .get(id)
            .filter(|t| t.initial)
            .map(|t| (t.dialog, t.orig_side, t.orig_addr, t.orig_transport))
        else {
            return false;
        };
        let Some(rseq) = self
            .dialogs
            .get(did)
            .and_then(|d| d.reliable.as_ref())
            .map(|r| r.rseq + 1)
        else {
            return false;
        };
        let extra = format!("Require: 100rel\r\nRSeq: {rseq}\r\n");
        let Some(bytes) = self.response_for(id, msg, code, extra.as_bytes()) else {
            return true;
        };
        let (t1, now) = (self.cfg.t1, self.now);
        let Some(r) = self.dialogs.get_mut(did).and_then(|d| d.reliable.as_mut()) else {
            return true;
        };
        if r.unacked.is_some() {
            r.queued = Some(bytes);
            return true;
        }
        r.rseq = rseq;
        r.unacked = Some((bytes.clone(), to_side, dst, transport));
        r.every = t1;
        r.next_at = now + t1;
        r.until = now + 64 * t1;
        let at = r.next_at;
        self.dialog_timers.push(Reverse((at, did.idx, did.gen)));
        out.push(Outgoing {
            side: to_side,
            dst,
            transport,
            data: bytes,
        });
        true
    }

    /// Resends dialog `did`'s unacknowledged reliable provisional when its
    /// deadline `when` has come (T1 doubling; given up after 64·T1).
    fn resend_provisional(&mut self, did: Id, when: Ms, out: &mut Vec<Outgoing>) {
        let Some(r) = self.dialogs.get_mut(did).and_then(|d| d.reliable.as_mut()) else {
            return;
        };
        if r.next_at != when {
            return;
        }
        let Some((bytes, side, dst, transport)) = r.unacked.clone() else {
            return;
        };
        // Over TCP/TLS it is not resent (RFC 3262 section 3).
        if when >= r.until || transport.reliable() {
            r.unacked = None;
            return;
        }
        out.push(Outgoing {
            side,
            dst,
            transport,
            data: bytes,
        });
        r.every *= 2;
        r.next_at = when + r.every;
        let at = r.next_at;
        self.dialog_timers.push(Reverse((at, did.idx, did.gen)));
    }

    /// The INVITE of transaction `id` got its final answer: no provisional
    /// of it is resent or sent any more.
    pub(super) fn provisionals_done(&mut self, id: Id) {
        let Some(did) = self.txns.get(id).filter(|t| t.initial).map(|t| t.dialog) else {
            return;
        };
        if let Some(r) = self.dialogs.get_mut(did).and_then(|d| d.reliable.as_mut()) {
            r.unacked = None;
            r.queued = None;
        }
    }

    /// A PRACK from the carrier of a shielded dialog: answered here (200
    /// when its `RAck` names a reliable provisional we sent, also after the
    /// final answer; else 481, RFC 3262 section 3), and, for the one
    /// waiting, the next queued provisional sent. `true` when
    /// it was ours to answer.
    fn answer_prack(&mut self, rx: &Incoming<'_, '_>, did: Id, out: &mut Vec<Outgoing>) -> bool {
        let Incoming {
            side,
            src,
            transport,
            msg,
            ..
        } = *rx;
        let (t1, now) = (self.cfg.t1, self.now);
        let Some(r) = self.dialogs.get_mut(did).and_then(|d| d.reliable.as_mut()) else {
            return false;
        };
        let rack = value(msg, "RAck", "")
            .and_then(|v| grammar::split_lws(v).next().and_then(grammar::parse_u32));
        let matches = r.unacked.is_some() && rack == Some(r.rseq);
        // One we sent: a repeat (our 200 lost), or a late one that comes
        // after the final answer stopped the resending.
        let sent = rack.is_some_and(|n| n != 0 && n <= r.rseq);
        let code = if matches || sent { 200 } else { 481 };
        if matches {
            r.acked = r.rseq;
            let to = r.unacked.take().map(|(_, s, d, t)| (s, d, t));
            if let (Some(next), Some((to_side, dst, transport))) = (r.queued.take(), to) {
                r.rseq += 1;
                r.unacked = Some((next.clone(), to_side, dst, transport));
                r.every = t1;
                r.next_at = now + t1;
                r.until = now + 64 * t1;
                self.dialog_timers
                    .push(Reverse((now + t1, did.idx, did.gen)));
                out.push(Outgoing {
                    side: to_side,
                    dst,
                    transport,
                    data: next,
                });
            }
        }
        out.push(Outgoing {
            side,
            dst: src,
            transport,
            data: local_answer(msg, src, code, b"", b""),
        });
        true
    }
}

impl SipEngine {
    /// An INFO from the carrier of a shielded call, answered here (LiveKit
    /// answers INFO with 405): a DTMF digit (`application/dtmf-relay`
    /// `Signal=`/`Duration=`, or `application/dtmf`) is sent to the gateway
    /// as RFC 4733 telephone-event packets in the payload type it
    /// negotiated, and answered 200 (488 when it negotiated none); an empty
    /// INFO gets 200, any other body 415 with `Accept`.
    fn answer_info(&mut self, rx: &Incoming<'_, '_>, did: Id, out: &mut Vec<Outgoing>) {
        let Incoming {
            side,
            src,
            transport,
            msg,
            ..
        } = *rx;
        let ty = msg
            .header(HeaderName::ContentType)
            .map(|h| crate::sip::multipart::media_type(h.value).to_ascii_lowercase())
            .unwrap_or_default();
        let body = std::str::from_utf8(msg.body).unwrap_or_default();
        let (code, extra): (u16, &[u8]) = if msg.body.is_empty() {
            (200, b"")
        } else {
            let digit = match ty.as_slice() {
                b"application/dtmf-relay" => Some(dtmf_relay(body)),
                b"application/dtmf" => Some((body.trim(), 250)),
                _ => None,
            };
            match digit {
                None => (415, b"Accept: application/dtmf-relay, application/dtmf\r\n"),
                Some((signal, ms)) => match TelephoneEvent::code(signal) {
                    None => (400, b""),
                    Some(event) if self.inject_dtmf(did, event, ms) => (200, b""),
                    Some(_) => (
                        488,
                        b"Warning: 399 sbc \"no telephone-event toward the gateway\"\r\n",
                    ),
                },
            }
        };
        out.push(Outgoing {
            side,
            dst: src,
            transport,
            data: local_answer(msg, src, code, extra, b""),
        });
    }

    /// Queues DTMF `event` lasting `ms` toward the gateway of dialog `did`;
    /// `false` when the gateway negotiated no telephone-event or no media.
    fn inject_dtmf(&mut self, did: Id, event: u8, ms: u32) -> bool {
        let seed = self.next_u64();
        let Some(d) = self.dialogs.get_mut(did) else {
            return false;
        };
        let gateway = d.leg_on(d.gateway_side());
        let Some(pt) = crate::media::sdp::telephone_event_pt(d.sdp_from(gateway)) else {
            return false;
        };
        let Some(port) = d
            .media
            .first()
            .and_then(|p| p.get(gateway.index()))
            .copied()
            .filter(|p| *p != 0)
        else {
            return false;
        };
        let (ssrc, seq, ts) =
            *d.dtmf_out
                .get_or_insert(((seed >> 32) as u32, seed as u16, (seed >> 16) as u32));
        let duration = u16::try_from(ms.clamp(40, 8000) * 8).unwrap_or(u16::MAX);
        let n = TelephoneEvent::PACKETS as u16;
        d.dtmf_out = Some((
            ssrc,
            seq.wrapping_add(n),
            ts.wrapping_add(u32::from(duration) + 400),
        ));
        let side = d.gateway_side();
        self.media_cmds.push(MediaCmd::Dtmf {
            side,
            port,
            event: TelephoneEvent {
                pt,
                ssrc,
                seq,
                timestamp: ts,
                event,
                duration,
            },
        });
        self.stats.info_dtmf.inc();
        true
    }
}

/// `Signal=` and `Duration=` (ms, 250 when absent) of an
/// `application/dtmf-relay` body (Cisco's format, as Kamailio and
/// Asterisk read it).
fn dtmf_relay(body: &str) -> (&str, u32) {
    let mut signal = "";
    let mut ms = 250;
    for line in body.lines() {
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => signal = v.trim(),
            "duration" => ms = v.trim().parse().unwrap_or(250),
            _ => {}
        }
    }
    (signal, ms)
}
