//! SIP over UDP: the zero-copy scanner, grammar helpers and message builder.
//!
//! We do not use `rsip` here: it copies every header into owned `String`s
//! (an allocation per header per message) and is lenient where RFC 4475 asks a
//! proxy to answer 400 (see ARCHITECTURE.md). `perf/benches/sip_engine.rs`
//! measures both parsers on the same INVITE.

pub mod build;
pub mod digest;
pub mod grammar;
pub mod lane;
pub mod message;
pub mod multipart;

pub use message::{CSeq, Header, HeaderName, ParseError, SipMessage, StartLine};

/// A request method. Unknown methods keep their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    /// `INVITE`: starts a session or changes it (re-INVITE) (RFC 3261 §13, §14).
    Invite,
    /// `ACK`: confirms a final response to an INVITE (RFC 3261 §13.2.2.4, §17.1.1.3).
    Ack,
    /// `BYE`: ends a dialog (RFC 3261 §15).
    Bye,
    /// `CANCEL`: cancels a pending INVITE (RFC 3261 §9).
    Cancel,
    /// `OPTIONS`: asks for capabilities (RFC 3261 §11).
    Options,
    /// `REGISTER`: binds an address-of-record to contacts (RFC 3261 §10).
    Register,
    /// `PRACK`: acknowledges a reliable provisional response (RFC 3262).
    Prack,
    /// `UPDATE`: changes session parameters without changing the dialog's state, also before the
    /// INVITE is answered (RFC 3311).
    Update,
    /// `INFO`: carries application data inside a dialog (RFC 6086).
    Info,
    /// `REFER`: asks the recipient to contact a third party (RFC 3515).
    Refer,
    /// `NOTIFY`: reports an event to a subscriber (RFC 6665).
    Notify,
    /// `SUBSCRIBE`: asks to be told of an event (RFC 6665).
    Subscribe,
    /// `MESSAGE`: an instant message (RFC 3428).
    Message,
    /// `PUBLISH`: publishes event state (RFC 3903).
    Publish,
    /// Any other token, as written (methods are case-sensitive, so `invite` lands here too).
    Other(&'a [u8]),
}

impl<'a> Method<'a> {
    /// Methods are case-sensitive (RFC 3261 7.1).
    pub fn from_bytes(b: &'a [u8]) -> Method<'a> {
        match b {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"UPDATE" => Method::Update,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"NOTIFY" => Method::Notify,
            b"SUBSCRIBE" => Method::Subscribe,
            b"MESSAGE" => Method::Message,
            b"PUBLISH" => Method::Publish,
            other => Method::Other(other),
        }
    }

    /// The method token as it goes on the wire (`Other` gives back its own bytes).
    pub fn as_bytes(&self) -> &'a [u8] {
        match self {
            Method::Invite => b"INVITE",
            Method::Ack => b"ACK",
            Method::Bye => b"BYE",
            Method::Cancel => b"CANCEL",
            Method::Options => b"OPTIONS",
            Method::Register => b"REGISTER",
            Method::Prack => b"PRACK",
            Method::Update => b"UPDATE",
            Method::Info => b"INFO",
            Method::Refer => b"REFER",
            Method::Notify => b"NOTIFY",
            Method::Subscribe => b"SUBSCRIBE",
            Method::Message => b"MESSAGE",
            Method::Publish => b"PUBLISH",
            Method::Other(b) => b,
        }
    }

    /// Whether this is one of the methods named above (not [`Method::Other`]).
    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}
