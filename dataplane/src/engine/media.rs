//! Media anchoring in the engine: SDP offers and answers allocate port
//! pairs and install relay streams, bodies are rewritten with our address,
//! silent calls are ended, and a finished call's streams are released.

use std::net::SocketAddrV4;

use super::dialog::{Dialog, DialogState, LegRef, LineDesc, Offer};
use super::hide::Hider;
use super::rewrite::copy_hidden;
use super::slab::Id;
use super::{Outgoing, SipEngine};
use crate::call::{CallRecord, CallResult};
use crate::media::sdp::{self, Direction, MediaRepr, SdpError, SdpRepr};
use crate::media::{End, MediaCmd, PortPairs, Stream};
use crate::routing::Profile;
use crate::side::{BySide, Side};
use crate::sip::build::Builder;
use crate::sip::multipart::{self, Multipart};
use crate::sip::{HeaderName, Method, SipMessage, StartLine};

impl SipEngine {
    /// An SDP from leg `from` in `msg`, taken as RFC 3264 says: in an
    /// INVITE, UPDATE or PRACK, or in a response with no offer of the other
    /// leg pending in its transaction, it is an offer and waits (the relay
    /// goes on with the current session; new media lines get their port
    /// pairs and streams now, for the rewritten offer to name them); in a
    /// response to the other leg's offer, or in an ACK or PRACK after an
    /// offer in a response, it is the answer and commits both descriptions
    /// (peers moved, latches restarted where an address or port changed,
    /// hold state taken). An SDP anywhere else is ignored.
    pub(super) fn offer_answer(&mut self, did: Id, from: LegRef, msg: &SipMessage<'_>) {
        let method = msg.cseq.method;
        if self.cfg.media.is_none()
            || !matches!(
                method,
                Method::Invite | Method::Update | Method::Prack | Method::Ack
            )
        {
            return;
        }
        let Some(raw) = sdp_of(msg) else {
            return;
        };
        let Ok(sdp) = SdpRepr::parse(raw) else {
            return;
        };
        if let Some(d) = self.dialogs.get_mut(did) {
            d.set_sdp_from(from, raw);
        }
        self.add_media_lines(did, &sdp);
        let lines: Vec<LineDesc> = sdp.media.iter().map(line_desc).collect();
        let response = matches!(msg.start, StartLine::Response { .. });
        let txn = if response {
            (from.other(), msg.cseq.seq)
        } else {
            (from, msg.cseq.seq)
        };
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let answers = |o: &Offer| {
            if response {
                o.txn == txn
            } else {
                matches!(method, Method::Ack | Method::Prack) && !o.answered
            }
        };
        let offered = match d.offer_of(from.other()).as_mut() {
            Some(o) if answers(o) => {
                o.answered = true;
                Some(o.lines.clone())
            }
            _ => None,
        };
        match offered {
            Some(offered) => {
                let mut lines = lines;
                // The shield keeps a hold a hold: the gateway's answer takes
                // the direction RFC 3264 6.1 allows (LiveKit answers sendrecv).
                d.direction_fix.clear();
                if d.profile == Profile::Livekit && d.leg(from).side == d.gateway_side() {
                    for (answer, offer) in lines.iter_mut().zip(&offered) {
                        let fixed = offer.direction.answer_to(answer.direction);
                        let changed = fixed != answer.direction;
                        d.direction_fix.push(changed.then_some(fixed));
                        answer.direction = fixed;
                        answer.holds |= fixed != Direction::SendRecv;
                    }
                    if d.direction_fix.iter().all(Option::is_none) {
                        d.direction_fix.clear();
                    }
                }
                self.sdes_answer(did, from, &sdp);
                self.apply_lines(did, from.other(), &offered);
                self.apply_lines(did, from, &lines);
            }
            None if method != Method::Ack => {
                d.direction_fix.clear();
                *d.offer_of(from) = Some(Offer {
                    txn,
                    lines,
                    answered: false,
                });
                self.sdes_offer(did, from, &sdp);
            }
            None => {}
        }
    }

    /// The transaction `txn` (the leg its request came from, its CSeq
    /// number) is over - its final response, or the ACK of its 2xx: the
    /// offers it carried are done, committed if answered, else forgotten
    /// with nothing applied (a 488, 491 or 487 leaves the session as it
    /// was). A 2xx (`accepted`) keeps an offer the responder made in it
    /// (a delayed offer), for the ACK to answer.
    pub(super) fn offers_settled(&mut self, did: Id, txn: (LegRef, u32), accepted: bool) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let mut committed = false;
        for leg in [LegRef::Caller, LegRef::Callee] {
            let slot = d.offer_of(leg);
            let done = slot
                .as_ref()
                .is_some_and(|o| o.txn == txn && (o.answered || !accepted || leg == txn.0));
            if done {
                if slot.as_ref().is_some_and(|o| !o.answered) {
                    self.stats.offers_rolled_back.inc();
                } else {
                    committed = true;
                }
                *slot = None;
            }
        }
        if committed {
            // The call changed (journaled if it is confirmed).
            self.journal_up(did);
        }
    }

    /// Whether a new call arriving on `caller` finds a port pair on both
    /// sides for each media line of its offer (one line when the INVITE
    /// has no offer yet): always with the relay off.
    pub(super) fn media_room(&self, caller: Side, msg: &SipMessage<'_>) -> bool {
        let Some(ports) = self.ports.as_ref() else {
            return true;
        };
        let free = ports[caller]
            .available()
            .min(ports[caller.other()].available());
        let raw = sdp_of(msg);
        // An SDP has fewer media lines than a quarter of its bytes: with that
        // many pairs free the offer needs no second parse to know it fits.
        if free >= raw.map_or(1, |r| r.len() / 4).max(1) {
            return true;
        }
        let lines = raw
            .and_then(|raw| SdpRepr::parse(raw).ok())
            .map_or(1, |s| s.media.iter().filter(|m| m.port != 0).count())
            .max(1);
        free >= lines
    }

    /// Port pairs and relay streams for the media lines of `sdp` the
    /// dialog has none for yet (`[0, 0]` for a disabled line, port 0, or
    /// when the port ranges are exhausted).
    pub(super) fn add_media_lines(&mut self, did: Id, sdp: &SdpRepr) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let (caller_side, callee_side) = (d.caller.side, d.callee.side);
        let Some(ports) = self.ports.as_mut() else {
            return;
        };
        for m in sdp.media.iter().skip(d.media.len()) {
            let pair = if m.port == 0 {
                [0, 0]
            } else {
                take_pair(ports, caller_side, callee_side)
            };
            if pair[0] != 0 {
                install_line(
                    &mut self.media_cmds,
                    [(caller_side, pair[0]), (callee_side, pair[1])],
                );
                self.media_index.insert((caller_side, pair[0]), did);
                self.stats.media_call(
                    [(caller_side, pair[0]), (callee_side, pair[1])],
                    &d.caller.call_id,
                );
            }
            d.media.push(pair);
            d.held.push(([false; 2], None));
        }
    }

    /// Points our ends on `leg`'s side at the addresses `lines` give (the
    /// relay restarts a latch only where the address or port changed) and
    /// takes `leg`'s hold state of each line.
    pub(super) fn apply_lines(&mut self, did: Id, leg: LegRef, lines: &[LineDesc]) {
        let Some(d) = self.dialogs.get_mut(did) else {
            return;
        };
        let side = d.leg(leg).side;
        for (i, line) in lines.iter().enumerate() {
            if let Some((by, since)) = d.held.get_mut(i) {
                if let Some(h) = by.get_mut(leg.index()) {
                    *h = line.holds;
                }
                *since = match (by.iter().any(|h| *h), *since) {
                    (false, _) => None,
                    (true, None) => Some(self.now),
                    (true, held) => held,
                };
            }
            let port = d
                .media
                .get(i)
                .and_then(|p| p.get(leg.index()))
                .copied()
                .unwrap_or(0);
            if port == 0 {
                continue;
            }
            self.media_cmds.push(MediaCmd::Peer {
                side,
                port,
                peer: line.rtp,
            });
            self.media_cmds.push(MediaCmd::Peer {
                side,
                port: port + 1,
                peer: line.rtcp,
            });
            self.media_cmds.push(MediaCmd::Negotiated {
                side,
                port,
                receives: line.direction.receives(),
                telephone_event: line.telephone_event,
            });
        }
    }

    /// Why the SDP of `msg` cannot be anchored, when media is relayed and
    /// `msg` carries an SDP ([`sdp_of`]) the relay cannot take.
    pub(super) fn unanchorable(&self, msg: &SipMessage<'_>) -> Option<SdpError> {
        self.cfg.media?;
        let sdp = match SdpRepr::parse(sdp_of(msg)?) {
            Ok(sdp) => sdp,
            Err(e) => return Some(e),
        };
        // An RTP/SAVP line is ours to key (SDES): with a key we can take.
        let unkeyable = |m: &MediaRepr| {
            m.port != 0
                && m.proto.contains("SAVP")
                && (!self.cfg.srtp || m.crypto.is_empty() || !m.proto.starts_with("RTP/"))
        };
        sdp.media.iter().any(unkeyable).then_some(SdpError::Srtp)
    }

    /// The body of `msg` as leg `to` must see it. Its SDP (the whole body,
    /// or the `application/sdp` part of a multipart one, RFC 5621) names our
    /// media address and ports when media is relayed, every other address
    /// hidden; ISUP passes byte-exact, or is left out with `strip_isup`;
    /// other parts of a multipart body pass byte-exact; any other single
    /// body is text-hidden.
    pub(super) fn body_for(
        &self,
        did: Id,
        to: LegRef,
        msg: &SipMessage<'_>,
        hider: &Hider<'_>,
    ) -> Body {
        let content_type = msg
            .header(HeaderName::ContentType)
            .map(|h| h.value)
            .unwrap_or_default();
        let ty = multipart::media_type(content_type);
        let sdp_out = |sdp: &[u8]| self.body_for_sdp(did, to, sdp, hider);
        let whole = |bytes: Vec<u8>| Body {
            bytes,
            content_type: None,
        };
        if let Some((d, offer)) = self
            .dialogs
            .get(did)
            .and_then(|d| Some((d, d.sbc_offer.as_deref()?)))
        {
            let toward_gateway = d.leg(to).side == d.gateway_side();
            let initial = msg.is_request() && msg.to.tag().is_none();
            if toward_gateway && initial && msg.cseq.method == Method::Invite {
                return Body {
                    bytes: self.body_for_sdp(did, to, offer, hider),
                    content_type: Some(b"application/sdp".to_vec()),
                };
            }
            if toward_gateway && msg.cseq.method == Method::Ack {
                // The carrier's answer to the offer we made for the gateway.
                return Body::none();
            }
        }
        if msg.body.is_empty() {
            return whole(Vec::new());
        }
        if ty.eq_ignore_ascii_case(b"application/sdp") {
            return whole(sdp_out(msg.body));
        }
        if is_isup(ty) {
            return if self.cfg.strip_isup {
                Body::none()
            } else {
                whole(msg.body.to_vec())
            };
        }
        let Some(mp) = Multipart::parse(content_type, msg.body) else {
            let mut bytes = Vec::with_capacity(msg.body.len() + 16);
            hider.copy(msg.body, &mut bytes);
            return whole(bytes);
        };
        let keep =
            |i: usize| !(self.cfg.strip_isup && is_isup(multipart::media_type(mp.part_type(i))));
        let kept: Vec<usize> = (0..mp.parts.len()).filter(|&i| keep(i)).collect();
        let sdp_part = mp.find(b"application/sdp");
        let new_sdp = sdp_part.map(|i| sdp_out(mp.part_body(i)));
        let part_bytes = |i: usize| match (&new_sdp, sdp_part) {
            (Some(sdp), Some(at)) if at == i => sdp.clone(),
            _ => mp.part_body(i).to_vec(),
        };
        match kept.as_slice() {
            [] => Body::none(),
            // Down to one part: sent as that part alone.
            [only] if kept.len() < mp.parts.len() => Body {
                bytes: part_bytes(*only),
                content_type: Some(mp.part_type(*only).to_vec()),
            },
            _ => whole(mp.rebuild(sdp_part.zip(new_sdp.as_deref()), |i| kept.contains(&i))),
        }
    }

    /// An SDP as leg `to` must see it: our media address and ports when
    /// media is relayed, every other address hidden.
    pub(super) fn body_for_sdp(
        &self,
        did: Id,
        to: LegRef,
        sdp: &[u8],
        hider: &Hider<'_>,
    ) -> Vec<u8> {
        let rewritten = self.anchored(did, to, sdp);
        let mut out = Vec::with_capacity(sdp.len() + 16);
        hider.copy(rewritten.as_deref().unwrap_or(sdp), &mut out);
        let out = match self.dialogs.get(did) {
            Some(d) if !d.direction_fix.is_empty() && d.leg(to).side != d.gateway_side() => {
                sdp::set_directions(&out, &d.direction_fix)
            }
            _ => out,
        };
        self.sdp_keys_for(did, to, out)
    }

    /// `sdp` with our media address and leg `to`'s ports, when media is
    /// relayed and the dialog has media lines.
    fn anchored(&self, did: Id, to: LegRef, sdp: &[u8]) -> Option<Vec<u8>> {
        let media = self.cfg.media?;
        let d = self.dialogs.get(did)?;
        if d.media.is_empty() {
            return None;
        }
        let ports: Vec<u16> = d
            .media
            .iter()
            .map(|p| p.get(to.index()).copied().unwrap_or(0))
            .collect();
        sdp::rewrite(sdp, media.ip[d.leg(to).side], &ports).ok()
    }

    /// The relay saw no media on the stream at our `port` on `side` for the
    /// media timeout: an answered call is ended with a BYE to both legs.
    pub fn media_idle(&mut self, side: Side, port: u16, out: &mut Vec<Outgoing>) {
        let Some(&did) = self.media_index.get(&(side, port)) else {
            return;
        };
        let Some(d) = self.dialogs.get(did) else {
            return;
        };
        if d.state != DialogState::Confirmed {
            return;
        }
        // A held line carries no media that is due: only the hold timeout
        // (if any) ends it.
        let line = d.media.iter().position(|p| p[0] == port);
        if let Some((_, Some(since))) = line.and_then(|i| d.held.get(i)) {
            let hold_timeout = self.cfg.media.and_then(|m| m.hold_timeout);
            if hold_timeout.is_none_or(|t| self.now.saturating_sub(*since) < t) {
                self.stats.media_timeouts_held.inc();
                return;
            }
        }
        for to in [LegRef::Caller, LegRef::Callee] {
            self.send_bye(did, to, b"SIP;cause=408;text=\"media timeout\"", out);
        }
        self.stats.media_timeouts.inc();
        let Some((tenant, side)) = self
            .dialogs
            .get(did)
            .map(|d| (d.tenant_id.clone(), d.caller.side))
        else {
            return;
        };
        self.emit(tenant.as_deref(), side, CallResult::MediaTimeout);
        self.ended_here(did);
        self.end_dialog(did, Some(CallResult::MediaTimeout));
    }

    /// Removes a dialog's streams and gives its ports back. The call record
    /// goes with the streams' removal, for the relay to add their figures,
    /// or straight to the control plane when the call relayed no media.
    pub(super) fn release_media(&mut self, d: &Dialog, record: CallRecord) {
        let mut rtp_ports = Vec::new();
        if let Some(ports) = self.ports.as_mut() {
            for pair in d.media.iter().filter(|p| p[0] != 0) {
                rtp_ports.push((d.caller.side, pair[0]));
                self.media_index.remove(&(d.caller.side, pair[0]));
                ports[d.caller.side].give(pair[0]);
                ports[d.callee.side].give(pair[1]);
            }
        }
        if rtp_ports.is_empty() {
            self.stats.record(record);
        } else {
            self.media_cmds.push(MediaCmd::Release {
                rtp_ports,
                record: Box::new(record),
            });
        }
    }
}

/// The relay's RTP and RTCP streams of one media line, between our port
/// on the caller's side and ours on the callee's (`ends`: side, RTP port),
/// nothing latched and no peer yet.
pub(super) fn install_line(cmds: &mut Vec<MediaCmd>, ends: [(Side, u16); 2]) {
    let [(a_side, a), (b_side, b)] = ends;
    for rtcp in [false, true] {
        let off = u16::from(rtcp);
        cmds.push(MediaCmd::Install(Stream {
            ends: [
                End::new(a_side, a + off, None),
                End::new(b_side, b + off, None),
            ],
            rtcp,
            last_active: 0,
        }));
    }
}

/// What the relay takes of one `m=` line.
pub(super) fn line_desc(m: &MediaRepr) -> LineDesc {
    let at = |p: u16| (m.port != 0).then(|| SocketAddrV4::new(m.addr, p));
    LineDesc {
        rtp: at(m.port),
        rtcp: at(m.rtcp()),
        holds: m.on_hold() || m.direction != Direction::SendRecv,
        direction: m.direction,
        telephone_event: m.telephone_event,
    }
}

/// The SDP of `msg`: its body when that is `application/sdp`, else the
/// first `application/sdp` part of a multipart body (RFC 5621); `None` when
/// it has none.
pub(super) fn sdp_of<'m>(msg: &SipMessage<'m>) -> Option<&'m [u8]> {
    if msg.body.is_empty() {
        return None;
    }
    let content_type = msg.header(HeaderName::ContentType)?.value;
    if multipart::media_type(content_type).eq_ignore_ascii_case(b"application/sdp") {
        return Some(msg.body);
    }
    let mp = Multipart::parse(content_type, msg.body)?;
    Some(mp.part_body(mp.find(b"application/sdp")?))
}

/// ISUP (SIP-I, ITU-T Q.1912.5; SIP-T, RFC 3204 `application/isup`).
fn is_isup(media_type: &[u8]) -> bool {
    media_type.eq_ignore_ascii_case(b"application/isup")
}

/// A body as it leaves toward a leg ([`SipEngine::body_for`]).
pub(super) struct Body {
    pub bytes: Vec<u8>,
    /// The Content-Type to write in place of the message's, when the body
    /// changed type (a multipart body down to one part); empty: no body is
    /// left, so no Content-Type either.
    pub content_type: Option<Vec<u8>>,
}

impl Body {
    /// No body left, and no Content-Type either.
    fn none() -> Body {
        Body {
            bytes: Vec::new(),
            content_type: Some(Vec::new()),
        }
    }
    /// Writes a `Content-Type` for a body the message had none for (our
    /// own offer in place of a delayed one).
    pub(super) fn write_missing_content_type(&self, b: &mut Builder, msg: &SipMessage<'_>) {
        if let Some(ct) = self.content_type.as_ref().filter(|c| !c.is_empty()) {
            if msg.header(HeaderName::ContentType).is_none() {
                b.header("Content-Type", &[ct]);
            }
        }
    }

    /// Writes the message's `Content-Type` header (`raw_name: value`) for
    /// this body: as it came, text-hidden; replaced; or left out.
    pub(super) fn write_content_type(
        &self,
        b: &mut Builder,
        raw_name: &[u8],
        value: &[u8],
        hider: &Hider<'_>,
    ) {
        match &self.content_type {
            None => copy_hidden(b, raw_name, value, hider),
            Some(ct) if ct.is_empty() => {}
            Some(ct) => {
                b.header("Content-Type", &[ct]);
            }
        }
    }
}

/// A port pair on each side, or `[0, 0]` when either side has none left.
pub(super) fn take_pair(ports: &mut BySide<PortPairs>, caller: Side, callee: Side) -> [u16; 2] {
    let Some(a) = ports[caller].take() else {
        return [0, 0];
    };
    match ports[callee].take() {
        Some(b) => [a, b],
        None => {
            ports[caller].give(a);
            [0, 0]
        }
    }
}
