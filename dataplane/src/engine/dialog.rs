//! The dialog table's entries: one call, two legs.
//!
//! The caller's leg (`a`) faces the side the INVITE came from, the callee's
//! leg (`b`) the side it went to. Each leg holds what that side may see: its
//! own Call-ID, From/To values, route set and remote target. Nothing of one
//! leg is ever written toward the other.

use std::net::{SocketAddr, SocketAddrV4};

use super::local::raw_line;
use super::rewrite::{first_contact_uri, without_tag};
use super::shield::SessionTimer;
use super::slab::Id;
use crate::call::EndedBy;
use crate::media::sdp::Direction;
use crate::routing::Profile;
use crate::side::Side;
use crate::sip::grammar::{self, parse_ipv4, NameAddr, SipUri};
use crate::sip::{HeaderName, SipMessage};
use crate::time::Ms;
use crate::transport::Transport;

/// Which leg of a dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegRef {
    Caller,
    Callee,
}

impl LegRef {
    /// 0 for the caller, 1 for the callee: the index of per-leg arrays.
    pub fn index(self) -> usize {
        usize::from(self == LegRef::Callee)
    }

    pub fn other(self) -> LegRef {
        match self {
            LegRef::Caller => LegRef::Callee,
            LegRef::Callee => LegRef::Caller,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Leg {
    pub side: Side,
    pub call_id: Vec<u8>,
    /// Where in-dialog requests on this leg are sent (the peer's Contact).
    pub remote_target: Vec<u8>,
    /// Route header values for requests sent on this leg, in order.
    pub route_set: Vec<Vec<u8>>,
    /// The peer's address as last seen, used when the target is no IPv4 literal.
    pub peer: SocketAddr,
    /// How requests on this leg travel: the transport the caller's INVITE
    /// came over, or the gateway's. On TCP/TLS they go to `peer`: the
    /// connection the peer last spoke over, or the gateway's address
    /// (connection reuse, RFC 5923; a NAT-safe flow in RFC 5626's sense).
    pub transport: Transport,
    /// From/To values (without tag) naming the caller and the callee on this leg.
    pub caller: Vec<u8>,
    pub callee: Vec<u8>,
    /// Highest CSeq of the requests sent on this leg, so a request of ours
    /// (a BYE on media timeout) comes after them.
    pub cseq_sent: u32,
    /// Added to the CSeq of every request relayed onto this leg: one for
    /// each request we originated on it (a session refresh), so what we
    /// relay after stays above it (RFC 3261 12.2.1.1). Responses go back
    /// with the original CSeq.
    pub cseq_shift: u32,
}

impl Leg {
    /// The party whose URI goes in `From` when `from_caller` says the request
    /// was sent by the caller, else the callee.
    pub fn party(&self, caller: bool) -> &[u8] {
        if caller {
            &self.caller
        } else {
            &self.callee
        }
    }

    /// The Request-URI and the raw `Route:` lines of a request on this leg
    /// (RFC 3261 12.2.1.1): with no route set or a loose router first
    /// (`;lr`), the remote target and the route set as it is; behind a
    /// strict router (RFC 2543; its route has no `;lr`), that route's URI,
    /// then the rest of the route set with the remote target last.
    pub fn request_target(&self) -> (Vec<u8>, Vec<u8>) {
        let route_lines = |routes: &[Vec<u8>]| -> Vec<u8> {
            routes.iter().flat_map(|r| raw_line(b"Route", r)).collect()
        };
        let strict = self.route_set.first().and_then(|r| {
            let uri = NameAddr::parse(r)?.uri;
            let u = SipUri::parse(uri)?;
            grammar::param(u.params, "lr").is_none().then_some(uri)
        });
        match strict {
            None => (self.remote_target.clone(), route_lines(&self.route_set)),
            Some(uri) => {
                let mut rest = self.route_set.get(1..).unwrap_or_default().to_vec();
                rest.push([b"<".as_slice(), &self.remote_target, b">"].concat());
                (uri.to_vec(), route_lines(&rest))
            }
        }
    }

    /// The next hop of an in-dialog request on this leg: over TCP/TLS the
    /// peer's connection; over UDP the first route, else the remote target,
    /// else the peer's last address.
    pub fn next_hop(&self) -> SocketAddr {
        if self.transport.reliable() {
            return self.peer;
        }
        let uri_of = |v: &[u8]| -> Option<SocketAddr> {
            let uri = NameAddr::parse(v).map_or(v, |na| na.uri);
            let u = SipUri::parse(uri)?;
            let ip = parse_ipv4(u.host)?;
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u.port.unwrap_or(5060),
            )))
        };
        self.route_set
            .first()
            .and_then(|r| uri_of(r))
            .or_else(|| uri_of(&self.remote_target))
            .unwrap_or(self.peer)
    }
}

/// One media line as one party's SDP describes it: where that party wants
/// RTP and RTCP (`None`: the line is disabled, port 0) and whether it holds
/// the line (`c=0.0.0.0`, sendonly, recvonly or inactive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineDesc {
    /// Where the party wants RTP (`c=` address, `m=` port).
    pub rtp: Option<SocketAddrV4>,
    /// Where it wants RTCP (`a=rtcp`, else the RTP port + 1; RFC 3605).
    pub rtcp: Option<SocketAddrV4>,
    /// `c=0.0.0.0`, or a direction other than sendrecv.
    pub holds: bool,
    /// The line's direction attribute (RFC 3264 section 6.1).
    pub direction: Direction,
    /// Its `telephone-event/8000` payload type (RFC 4733), if any.
    pub telephone_event: Option<u8>,
}

/// An SDP offer waiting for its answer (RFC 3264 section 4): the relay goes
/// on with the current session until the answer commits both descriptions,
/// and forgets the offer, changing nothing, when it is refused (any non-2xx,
/// a CANCEL) - RFC 3264 section 8, RFC 3261 sections 13.2.1 and 14.1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The transaction the offer and its answer travel in: the leg its
    /// request came from and the request's CSeq number.
    pub txn: (LegRef, u32),
    /// The offerer's media lines, in `m=` order.
    pub lines: Vec<LineDesc>,
    /// An answer was applied (a 18x's preview of it): the offer stays until
    /// its transaction ends, so that the 2xx's copy of the answer commits too.
    pub answered: bool,
}

/// Reliable provisional responses of ours toward the carrier (RFC 3262):
/// one at a time, resent until its PRACK.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reliable {
    /// The RSeq of the latest one sent.
    pub rseq: u32,
    /// The RSeq of the latest one PRACKed: a PRACK repeated for it (our
    /// 200 was lost) is answered 200 again.
    pub acked: u32,
    /// The one sent and not yet PRACKed, with where it goes.
    pub unacked: Option<(Vec<u8>, Side, SocketAddr, Transport)>,
    /// The next one (already numbered `rseq + 1`), sent on that PRACK; a
    /// later provisional replaces it.
    pub queued: Option<Vec<u8>>,
    /// The resend interval, ms (T1, doubling).
    pub every: Ms,
    /// When the next resend is due (engine ms).
    pub next_at: Ms,
    /// When resending stops (engine ms: 64·T1 after the first send).
    pub until: Ms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DialogState {
    /// INVITE forwarded, no final answer yet.
    Early,
    /// 2xx seen.
    Confirmed,
}

/// A call: its state, both legs, its times (for the call record), its tenant
/// and its relayed media.
///
/// Serialized (serde) for the call journal ([`super::journal`]): what a
/// confirmed call needs after a restart. The `#[serde(skip)]` fields are a
/// transaction's, or found again in the routing snapshot, and come back
/// empty.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Dialog {
    /// The call's number (see [`crate::call::CallRecord::call`]).
    pub call: u64,
    pub state: DialogState,
    pub caller: Leg,
    pub callee: Leg,
    pub started: Ms,
    pub answered: Option<Ms>,
    pub tenant_id: Option<String>,
    /// The final status the caller got for its INVITE (0 until then).
    pub final_code: u16,
    /// Who ended the call ([`crate::call::CallRecord::ended_by`]).
    pub ended_by: Option<EndedBy>,
    /// Gateways (or carriers) the INVITE was sent to, failovers included.
    pub attempts: u32,
    /// Per SDP media line: our RTP port on the caller's side and on the
    /// callee's side (RTCP is the next port; `[0, 0]`: not relayed).
    pub media: Vec<[u16; 2]>,
    /// Per SDP media line: whether the latest SDP of the caller and of the
    /// callee holds it (`c=0.0.0.0`, sendonly, recvonly or inactive), and
    /// since when the line has been held by either (`None`: media is due).
    pub held: Vec<([bool; 2], Option<Ms>)>,
    /// The offer the caller and the callee made and wait on an answer for
    /// ([`Dialog::offer_of`]); two at once only in a glare (RFC 3261 14.1).
    #[serde(skip)]
    pub offers: (Option<Offer>, Option<Offer>),
    /// The latest SDP from the caller and from the callee, as they sent it.
    pub last_sdp: (Vec<u8>, Vec<u8>),
    /// How the SBC speaks to the call's gateway (the target's profile).
    pub profile: Profile,
    /// The header lines the call's gateway wants in the initial INVITE
    /// (the target's [`Target::headers`](crate::routing::Target::headers)).
    #[serde(skip)]
    pub gateway_headers: std::sync::Arc<[u8]>,
    /// The call's gateway's credentials for its challenges (the target's).
    #[serde(skip)]
    pub gateway_auth: Option<std::sync::Arc<crate::routing::Credentials>>,
    /// The session timer kept at the carrier's edge (`livekit` profile).
    pub session: Option<SessionTimer>,
    /// A re-INVITE from the carrier we answered ourselves: its CSeq number
    /// and our server transaction, whose 2xx the ACK confirms (and which
    /// the ACK must not pass on).
    #[serde(skip)]
    pub ack_here: Option<(u32, Id)>,
    /// Directions the shield corrected in the gateway's latest answer, per
    /// media line (`None`: as answered), written into the SDP the carrier
    /// gets (a hold answered `sendrecv` becomes `recvonly`).
    pub direction_fix: Vec<Option<Direction>>,
    /// The carrier's INVITE had no offer, so the SBC offered the gateway
    /// this one of its own ([`crate::media::offer::offer_sdp`], the
    /// tenant's codecs, placeholders not yet anchored); the carrier's answer
    /// in the ACK stops here.
    pub sbc_offer: Option<Vec<u8>>,
    /// What the SBC offers the gateway of the call
    /// ([`crate::routing::Target::media_encryption`]).
    pub media_encryption: crate::routing::MediaEncryption,
    /// The SDES keys of the gateway leg.
    pub sdes: super::sdes::Sdes,
    /// The carrier requires reliable provisionals (RFC 3262 `Require:
    /// 100rel`), which the SBC sends it itself (`livekit` profile).
    #[serde(skip)]
    pub reliable: Option<Reliable>,
    /// The carrier's `Allow` lists UPDATE: our session refreshes use it,
    /// else a re-INVITE.
    pub carrier_allows_update: bool,
    /// Our RTP source for DTMF injected toward the gateway: SSRC, next
    /// sequence number, next timestamp.
    pub dtmf_out: Option<(u32, u16, u32)>,
    /// The From tag of the caller and the To tag of the callee (once answered).
    pub caller_tag: Vec<u8>,
    pub callee_tag: Vec<u8>,
}

impl Dialog {
    /// The early dialog of a new call: the caller leg as the INVITE `msg`
    /// from `src` on `side` describes it (its Contact, Record-Route set,
    /// Call-ID, From and To), and `callee`, our leg toward the target.
    pub fn new_call(
        call: u64,
        now: Ms,
        msg: &SipMessage<'_>,
        (side, src, transport): (Side, SocketAddr, Transport),
        callee: Leg,
        tenant_id: Option<String>,
    ) -> Dialog {
        let caller = Leg {
            side,
            call_id: msg.call_id.to_vec(),
            remote_target: first_contact_uri(msg).unwrap_or(msg.from.uri).to_vec(),
            route_set: msg
                .values(HeaderName::RecordRoute)
                .map(<[u8]>::to_vec)
                .collect(),
            peer: src,
            transport,
            caller: without_tag(&msg.from),
            callee: without_tag(&msg.to),
            cseq_sent: 0,
            cseq_shift: 0,
        };
        Dialog {
            call,
            state: DialogState::Early,
            caller,
            callee,
            started: now,
            answered: None,
            tenant_id,
            final_code: 0,
            ended_by: None,
            attempts: 1,
            media: Vec::new(),
            held: Vec::new(),
            offers: (None, None),
            last_sdp: (Vec::new(), Vec::new()),
            profile: Profile::default(),
            gateway_headers: std::sync::Arc::default(),
            gateway_auth: None,
            session: None,
            ack_here: None,
            direction_fix: Vec::new(),
            sbc_offer: None,
            media_encryption: Default::default(),
            sdes: Default::default(),
            reliable: None,
            dtmf_out: None,
            carrier_allows_update: false,
            caller_tag: msg.from.tag().unwrap_or_default().to_vec(),
            callee_tag: Vec::new(),
        }
    }

    /// The callee answered (a 2xx to the initial INVITE) at `now`: Early
    /// becomes Confirmed. `false` when it already was (a 2xx retransmission
    /// or a second 2xx).
    pub fn confirm(&mut self, now: Ms) -> bool {
        if self.state != DialogState::Early {
            return false;
        }
        self.state = DialogState::Confirmed;
        self.answered = Some(now);
        true
    }

    pub fn leg(&self, which: LegRef) -> &Leg {
        match which {
            LegRef::Caller => &self.caller,
            LegRef::Callee => &self.callee,
        }
    }

    pub fn leg_mut(&mut self, which: LegRef) -> &mut Leg {
        match which {
            LegRef::Caller => &mut self.caller,
            LegRef::Callee => &mut self.callee,
        }
    }

    /// The offer `leg` made that waits on its answer.
    pub fn offer_of(&mut self, leg: LegRef) -> &mut Option<Offer> {
        match leg {
            LegRef::Caller => &mut self.offers.0,
            LegRef::Callee => &mut self.offers.1,
        }
    }

    /// Keeps `sdp` as the latest SDP `leg` sent.
    pub fn set_sdp_from(&mut self, leg: LegRef, sdp: &[u8]) {
        let last = match leg {
            LegRef::Caller => &mut self.last_sdp.0,
            LegRef::Callee => &mut self.last_sdp.1,
        };
        sdp.clone_into(last);
    }

    /// The latest SDP `leg` sent (empty: none yet).
    pub fn sdp_from(&self, leg: LegRef) -> &[u8] {
        match leg {
            LegRef::Caller => &self.last_sdp.0,
            LegRef::Callee => &self.last_sdp.1,
        }
    }

    /// The side the call's gateway is on: the public side, where the
    /// gateways are (the carriers on the private one).
    pub fn gateway_side(&self) -> Side {
        Side::Public
    }

    /// The leg facing `side`.
    pub fn leg_on(&self, side: Side) -> LegRef {
        if self.caller.side == side {
            LegRef::Caller
        } else {
            LegRef::Callee
        }
    }
}

#[cfg(test)]
mod size {
    /// A held call's memory is mostly its dialog (perf/README.md, `callmem`):
    /// 952 bytes inline on 2026-12-07, and its heap (URIs, route sets, the
    /// last SDP of each side, about 750 bytes). Growing it is a choice to
    /// make knowingly.
    #[test]
    fn a_dialog_stays_within_a_kilobyte_inline() {
        assert!(std::mem::size_of::<super::Dialog>() <= 1024);
        assert!(std::mem::size_of::<super::Leg>() <= 168);
    }
}
