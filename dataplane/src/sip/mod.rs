//! SIP over UDP: the zero-copy scanner, grammar helpers and message builder.
//!
//! We do not use `rsip` here: it copies every header into owned `String`s
//! (an allocation per header per message) and is lenient where RFC 4475 asks a
//! proxy to answer 400 (see ARCHITECTURE.md). `perf/benches/sip_engine.rs`
//! measures both parsers on the same INVITE.

pub mod build;
pub mod grammar;
pub mod message;

pub use message::{CSeq, Header, HeaderName, ParseError, SipMessage, StartLine};

/// A request method. Unknown methods keep their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method<'a> {
    Invite,
    Ack,
    Bye,
    Cancel,
    Options,
    Register,
    Prack,
    Update,
    Info,
    Refer,
    Notify,
    Subscribe,
    Message,
    Publish,
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

    pub fn is_known(&self) -> bool {
        !matches!(self, Method::Other(_))
    }
}
