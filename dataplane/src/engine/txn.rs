//! A proxy transaction: the server transaction toward whoever sent the
//! request, paired with the one client transaction toward where it went
//! (RFC 3261 sections 17 and 16).

use std::net::SocketAddr;

use super::dialog::LegRef;
use super::slab::Id;
use crate::routing::Target;
use crate::side::Side;
use crate::time::Ms;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for a final response from the far side.
    Proceeding,
    /// A non-2xx final went back; for INVITE, waiting for the ACK (Timer G/H).
    Completed,
    /// A 2xx went back (INVITE, RFC 6026): absorb retransmissions, relay 2xx ones.
    Accepted,
    /// ACK received for a non-2xx final (Timer I).
    Confirmed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelState {
    None,
    /// CANCEL received before any provisional from the far side.
    Pending,
    /// CANCEL sent to the far side.
    Sent,
    /// The far side answered our CANCEL.
    Answered,
}

/// What an ACK or CANCEL toward the far side repeats of our INVITE.
#[derive(Debug, Clone, Default)]
pub struct Outbound {
    pub ruri: Vec<u8>,
    pub via: Vec<u8>,
    pub from: Vec<u8>,
    pub to: Vec<u8>,
    pub call_id: Vec<u8>,
    pub cseq: u32,
    /// Raw `Route:` lines.
    pub routes: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct Txn {
    pub invite: bool,
    /// A BYE: its end ends the dialog.
    pub bye: bool,
    pub server_key: Box<[u8]>,
    pub dialog: Id,
    /// The leg the request came from.
    pub orig: LegRef,
    /// The INVITE that created the dialog.
    pub initial: bool,
    pub phase: Phase,

    // Server side: toward the sender of the request.
    pub orig_side: Side,
    pub orig_addr: SocketAddr,
    /// Raw `Via:` lines of the request, restored on every response.
    pub vias: Vec<u8>,
    /// Raw From, Call-ID and CSeq lines, and the To value, for local responses.
    pub from_line: Vec<u8>,
    pub to_value: Vec<u8>,
    pub call_id_line: Vec<u8>,
    pub cseq_line: Vec<u8>,
    pub local_tag: u64,
    pub last_response: Option<Vec<u8>>,

    // Client side: toward where the request went.
    pub dest_side: Side,
    pub dest_addr: SocketAddr,
    pub request: Vec<u8>,
    pub outbound: Outbound,
    pub provisional: bool,
    pub cancel: CancelState,

    // Timers (absolute deadlines).
    pub retx_at: Option<Ms>,
    pub retx_every: Ms,
    pub timeout_at: Option<Ms>,
    pub cleanup_at: Option<Ms>,

    /// For the INVITE that created the dialog: where else it may go.
    pub route: Option<Box<RouteState>>,
}

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

impl Txn {
    /// The earliest deadline, to queue in the engine's timer heap.
    pub fn next_deadline(&self) -> Option<Ms> {
        [self.retx_at, self.timeout_at, self.cleanup_at]
            .into_iter()
            .flatten()
            .min()
    }
}
