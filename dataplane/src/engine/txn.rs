//! A proxy transaction: the server transaction toward whoever sent the
//! request, paired with the one client transaction toward where it went
//! (RFC 3261 sections 17 and 16).

use std::net::SocketAddr;

use super::dialog::LegRef;
use super::invite::RouteState;
use super::slab::Id;
use crate::side::Side;
use crate::time::Ms;
use crate::transport::Transport;

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
    /// A request we originate (the BYE of a call whose media stopped): a
    /// client transaction alone (RFC 3261 17.1.2), resent on Timer E, its
    /// answers counted, nothing relayed back and nothing answered on Timer F.
    pub local: bool,
    /// The client side is an INVITE (resent until a provisional, ACKed).
    pub invite: bool,
    /// An UPDATE from the carrier sent on to a `livekit` gateway as a
    /// re-INVITE (LiveKit has no UPDATE): the server side stays a
    /// non-INVITE one, and the gateway's 2xx is ACKed here.
    pub update_as_invite: bool,
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
    /// The transport the request came over (answers go back over it).
    pub orig_transport: Transport,
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
    /// The transport the request went over (no resends when reliable).
    pub dest_transport: Transport,
    pub request: Vec<u8>,
    pub outbound: Outbound,
    pub provisional: bool,
    pub cancel: CancelState,
    /// How many times the request went out anew before the latest (the
    /// latest's branch number): a failover or an answered challenge adds one.
    pub sends: u32,
    /// Whether the latest carried our credentials (a second challenge is
    /// then refused).
    pub authed: bool,

    // Timers (absolute deadlines).
    /// Timer A/E (the request) or G (our final answer): when to resend.
    pub retransmit_at: Option<Ms>,
    /// The current resend interval (doubles, capped per RFC 3261 17.1.2.2).
    pub retransmit_every: Ms,
    /// The one running timeout, and which timer it is.
    pub timeout: Option<(Ms, Timer)>,
    /// Timers D/I/J/K: when the finished transaction is forgotten.
    pub linger_until: Option<Ms>,

    /// For the INVITE that created the dialog: where else it may go.
    pub route: Option<Box<RouteState>>,
}

/// The timers of a proxy transaction (RFC 3261 sections 16.6, 17.1, 17.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// Timer A/E (our request, no answer yet) or G (our non-2xx final to an
    /// INVITE, no ACK yet): send it again.
    Retransmit,
    /// Timer B/F (no final answer to our request, or to our CANCEL) or H (no
    /// ACK for our non-2xx final): give up.
    TransactionTimeout,
    /// Timer C (RFC 3261 16.6 step 11): the far side rings too long; CANCEL.
    Ringing,
    /// Kamailio's `failover_timeout`: a silent gateway while another candidate is
    /// left; try the next one.
    Failover,
    /// Timers D/I/J/K: absorb retransmissions of a finished transaction,
    /// then forget it.
    Linger,
}

impl Txn {
    /// The client transaction of a non-INVITE request of ours, `request`,
    /// sent at `now` to `dst` on `side` on `to`'s leg of dialog `dialog`:
    /// resent after T1, doubling up to T2 (Timer E), given up at 64·T1
    /// (Timer F).
    pub fn local(
        dialog: Id,
        to: LegRef,
        (side, dst, transport): (Side, SocketAddr, Transport),
        request: Vec<u8>,
        now: Ms,
        t1: Ms,
    ) -> Txn {
        Txn {
            local: true,
            invite: false,
            update_as_invite: false,
            bye: false,
            server_key: Box::default(),
            dialog,
            orig: to.other(),
            initial: false,
            phase: Phase::Proceeding,
            orig_side: side,
            orig_addr: dst,
            orig_transport: transport,
            vias: Vec::new(),
            from_line: Vec::new(),
            to_value: Vec::new(),
            call_id_line: Vec::new(),
            cseq_line: Vec::new(),
            local_tag: 0,
            last_response: None,
            dest_side: side,
            dest_addr: dst,
            dest_transport: transport,
            request,
            outbound: Outbound::default(),
            provisional: false,
            cancel: CancelState::None,
            retransmit_at: Some(now + t1),
            retransmit_every: t1,
            timeout: Some((now + 64 * t1, Timer::TransactionTimeout)),
            linger_until: None,
            sends: 0,
            authed: false,
            route: None,
        }
    }

    /// The server transaction of a request we answered ourselves (a
    /// session refresh), with our final answer `response` already sent to
    /// `src` on `side` at `now`: an INVITE's 2xx is resent on Timer G until
    /// the ACK (RFC 3261 13.3.1.4) for at most 64·T1; a non-INVITE lingers
    /// (Timer J) to answer retransmissions.
    #[allow(clippy::too_many_arguments)]
    pub fn answered_here(
        server_key: Box<[u8]>,
        dialog: Id,
        from: LegRef,
        (side, src, transport): (Side, SocketAddr, Transport),
        response: Vec<u8>,
        invite: bool,
        now: Ms,
        t1: Ms,
    ) -> Txn {
        let mut t = Txn::local(
            dialog,
            from.other(),
            (side, src, transport),
            Vec::new(),
            now,
            t1,
        );
        t.local = false;
        t.invite = invite;
        t.server_key = server_key;
        t.orig = from;
        t.last_response = Some(response);
        t.complete(now, t1);
        t
    }

    /// The earliest deadline, to queue in the engine's timer heap.
    pub fn next_deadline(&self) -> Option<Ms> {
        [
            self.retransmit_at,
            self.timeout.map(|(at, _)| at),
            self.linger_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The first of its timers due at `now`, in the order they are
    /// serviced: linger, retransmit, then the timeout.
    pub fn due(&self, now: Ms) -> Option<Timer> {
        if self.linger_until.is_some_and(|at| at <= now) {
            Some(Timer::Linger)
        } else if self.retransmit_at.is_some_and(|at| at <= now) {
            Some(Timer::Retransmit)
        } else {
            self.timeout.filter(|(at, _)| *at <= now).map(|(_, t)| t)
        }
    }

    /// The request went (again) to the far side: resend it after T1 (Timer
    /// A/E) and give up at `timeout`.
    pub fn sent(&mut self, now: Ms, t1: Ms, timeout: (Ms, Timer)) {
        self.retransmit_every = t1;
        self.retransmit_at = Some(now + t1);
        self.timeout = Some(timeout);
    }

    /// Failover: the request goes to another destination, as if new.
    pub fn retry_to(
        &mut self,
        (dst, transport): (SocketAddr, Transport),
        request: Vec<u8>,
        outbound: Outbound,
        now: Ms,
        t1: Ms,
        timeout: (Ms, Timer),
    ) {
        self.dest_addr = dst;
        self.dest_transport = transport;
        self.request = request;
        self.outbound = outbound;
        self.provisional = false;
        self.sent(now, t1, timeout);
    }

    /// A provisional answer from the far side (RFC 3261 17.1.1.2,
    /// 17.1.2.2): an INVITE stops resending and, on the first one, starts
    /// Timer C; a non-INVITE resends every T2. `true` on the first one.
    pub fn on_provisional(&mut self, now: Ms, t2: Ms, timer_c: Ms) -> bool {
        let first = !self.provisional;
        self.provisional = true;
        if self.invite {
            self.retransmit_at = None;
            if self.phase == Phase::Proceeding && first {
                self.timeout = Some((now + timer_c, Timer::Ringing));
            }
        } else {
            self.retransmit_every = t2;
        }
        first
    }

    /// A 2xx to the INVITE went back (RFC 6026 Accepted): nothing more to
    /// resend or wait for; linger 64·T1 to relay 2xx retransmissions.
    pub fn accept(&mut self, now: Ms, t1: Ms) {
        self.phase = Phase::Accepted;
        self.retransmit_at = None;
        self.timeout = None;
        self.linger_until = Some(now + 64 * t1);
    }

    /// A non-2xx final (or a non-INVITE's final) went back. An INVITE
    /// resends it (Timer G) until the ACK, for at most 64·T1 (Timer H); a
    /// non-INVITE lingers 64·T1 (Timer J) to answer retransmissions.
    pub fn complete(&mut self, now: Ms, t1: Ms) {
        self.phase = Phase::Completed;
        if self.invite && !self.update_as_invite {
            self.sent(now, t1, (now + 64 * t1, Timer::TransactionTimeout));
        } else {
            self.retransmit_at = None;
            self.timeout = None;
            self.linger_until = Some(now + 64 * t1);
        }
    }

    /// The ACK for our non-2xx final arrived: linger `linger` ms (Timer I)
    /// to absorb its retransmissions.
    pub fn confirm(&mut self, now: Ms, linger: Ms) {
        self.phase = Phase::Confirmed;
        self.retransmit_at = None;
        self.timeout = None;
        self.linger_until = Some(now + linger);
    }

    /// We sent CANCEL: resend it (Timer E) and give up after 64·T1 (the
    /// caller then gets 487).
    pub fn cancel_sent(&mut self, now: Ms, t1: Ms) {
        self.cancel = CancelState::Sent;
        self.sent(now, t1, (now + 64 * t1, Timer::TransactionTimeout));
    }
}
