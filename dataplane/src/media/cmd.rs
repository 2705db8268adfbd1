//! The messages the SIP engine sends the media relay (over a ring on both
//! backends): install a stream, move a peer, release a finished call.

use std::net::SocketAddrV4;

use super::relay::Stream;
use super::rtp::TelephoneEvent;
use crate::call::CallRecord;
use crate::side::Side;

/// The two SDES keys of one SRTP media line: the peer's (for what it
/// sends) and ours (for what we send it).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SrtpKeys {
    /// The peer's `a=crypto`: unprotects what it sends.
    pub inbound: super::sdes::Crypto,
    /// Ours, as our SDP gave it: protects what we send.
    pub outbound: super::sdes::Crypto,
}

/// What the SIP engine tells the media relay.
#[derive(Debug, Clone, PartialEq)]
pub enum MediaCmd {
    /// A new stream with both our ports.
    Install(Stream),
    /// The peer behind our `port` on `side` is now at `peer` (offer/answer,
    /// re-INVITE, hold with `None` or 0.0.0.0).
    Peer {
        /// The side of our end.
        side: Side,
        /// Our local port on that side (RTP, or RTCP = RTP + 1).
        port: u16,
        /// The peer's new address from the SDP; `None` (the engine's choice for a disabled media
        /// line, port 0) or 0.0.0.0 when there is nowhere to send.
        peer: Option<SocketAddrV4>,
    },
    /// What the peer behind our RTP `port` on `side` negotiated: whether
    /// it receives (its direction, RFC 3264 6.1: nothing is relayed toward
    /// a peer that holds with sendonly or is inactive) and the payload type
    /// of its RFC 4733 telephone events (each event it sends gets the
    /// marker bit on its first packet, and is counted).
    Negotiated {
        /// The side of our end.
        side: Side,
        /// Our local RTP port on that side.
        port: u16,
        /// `false`: sendonly or inactive.
        receives: bool,
        /// `telephone-event/8000` in its SDP.
        telephone_event: Option<u8>,
    },
    /// Send a DTMF digit from our `port` on `side` to the peer there, as
    /// RFC 4733 telephone-event packets ([`TelephoneEvent::packets`]).
    Dtmf {
        /// The side of our end (the gateway's).
        side: Side,
        /// Our local RTP port on that side.
        port: u16,
        /// The packets' fields.
        event: TelephoneEvent,
    },
    /// SRTP for the media line whose RTP is at our `port` on `side` (and its
    /// RTCP at `port + 1`): what arrives there from the peer is checked and
    /// decrypted with `keys.inbound`, what leaves there toward the peer is
    /// encrypted with `keys.outbound` (RFC 3711; SDES keys, RFC 4568). `None`
    /// takes SRTP off (a re-INVITE that settles on RTP/AVP); a new value
    /// rekeys. Only with the `srtp` feature: without it the relay counts the
    /// stream's packets as [`super::DropReason::Srtp`] drops.
    Srtp {
        /// The side of the SRTP peer's end (the gateway's).
        side: Side,
        /// Our local RTP port on that side.
        port: u16,
        /// The keys, `None` for none.
        keys: Option<Box<SrtpKeys>>,
    },
    /// A call is over: remove the RTP stream at each of these caller-side
    /// ports and the RTCP stream on the next port, write what each RTP
    /// stream carried into the record's media lines, in order.
    Release {
        /// The caller's side and our caller-side RTP port of each media line.
        rtp_ports: Vec<(Side, u16)>,
        /// The call's record, without media; the relay fills [`CallRecord::media`] and passes it
        /// on.
        record: Box<CallRecord>,
    },
}
