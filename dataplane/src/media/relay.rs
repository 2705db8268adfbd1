//! The media session table and the per-packet relay verdict.
//!
//! Each relayed stream (one RTP or RTCP flow of one media line) has two ends,
//! one on each side of the SBC, each bound to a local port of one of the
//! side's media addresses (its "lane"; one address per side gives one lane
//! and 25k RTP streams in a 50k port range, more lanes carry more). The table
//! is a flat array per (side, lane) indexed by local port - port_min, so a
//! packet finds its stream in O(1) with no hashing, no allocation and no lock. The index entry
//! names the stream and the end; the stream is kept as a 64-byte slot (both ends' addressing)
//! and a 64-byte line of statistics per end, so a packet touches two lines besides the index,
//! which a poll loop can prefetch a burst ahead ([`RelayTable::prefetch_index`]). An end learns
//! its peer by symmetric latching: the first packet from the address the SDP
//! gave is accepted and latched, then only that exact source is accepted
//! (RTP bleed and injection protection); everything else is dropped and
//! counted by reason. The payload is never looked at beyond the RTP header
//! used for statistics, so any codec and RFC 4733 DTMF pass through; an
//! RFC 4733 event only gets its marker bit and the receiver's payload type
//! (the second header byte) when the sender's differ.

use std::net::SocketAddrV4;

use super::cmd::MediaCmd;
use super::rtp::RtpStats;
use crate::call::{CallRecord, MediaLine};
use crate::side::Side;
use crate::time::Ms;

/// Why a packet was not relayed; indexes [`RelayTable::drops`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// No stream on that port.
    UnknownPort = 0,
    /// Not from the peer's SDP address (before latching) or not from the latched source.
    WrongSource = 1,
    /// The other end has no address to send to (hold, or no SDP yet).
    NoDestination = 2,
    /// SRTP refused it: the tag did not verify, a replay, no room for the
    /// tag, or SRTP was asked of a relay built without it (feature `srtp`).
    Srtp = 3,
}

/// Number of [`DropReason`] variants: the length of [`RelayTable::drops`].
pub const DROP_REASONS: usize = 4;

/// What to do with one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it from our `port` of `lane` on `side` to `to`.
    Relay {
        /// The side to send on (the other end's side).
        side: Side,
        /// The media address (lane) of that side to send from.
        lane: u8,
        /// Our local port to send from.
        port: u16,
        /// The peer's address: the latched source, else the SDP address.
        to: SocketAddrV4,
    },
    /// Do not send it; counted under this reason in [`RelayTable::drops`].
    Drop(DropReason),
}

/// One end of a stream: our port on one side and the peer behind it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    /// The side of the SBC this end faces.
    pub side: Side,
    /// Which of the side's media addresses (0: the first).
    pub lane: u8,
    /// Our local UDP port (RTP even, RTCP the next odd one).
    pub port: u16,
    /// Where the SDP says the peer is (`None` or 0.0.0.0: nowhere, e.g. hold).
    pub sdp: Option<SocketAddrV4>,
    /// The source latched from the first accepted packet (symmetric RTP): its IP matched the SDP's,
    /// and from then on only this exact address and port is accepted, or the SDP's exact address,
    /// which takes the latch over. Cleared when the SDP address or port changes.
    pub latched: Option<SocketAddrV4>,
    /// What arrived from this end's peer.
    pub rx: RtpStats,
    /// Whether the peer receives (its negotiated direction): `false` drops
    /// what would be relayed toward it, as [`DropReason::NoDestination`].
    pub receives: bool,
    /// The payload type the peer's SDP gives RFC 4733 `telephone-event`: the
    /// number it receives events with, and usually sends them with.
    pub telephone_event: Option<u8>,
}

impl End {
    /// An end on lane 0, nothing latched, statistics at zero.
    pub fn new(side: Side, port: u16, sdp: Option<SocketAddrV4>) -> End {
        End::on_lane(side, 0, port, sdp)
    }

    /// An end on `lane`, nothing latched, statistics at zero.
    pub fn on_lane(side: Side, lane: u8, port: u16, sdp: Option<SocketAddrV4>) -> End {
        End {
            side,
            lane,
            port,
            sdp,
            latched: None,
            rx: RtpStats::default(),
            receives: true,
            telephone_event: None,
        }
    }
}

/// A relayed flow: RTP or RTCP of one media line, with its two ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stream {
    /// The two ends, one on each side: a packet accepted at one leaves from the other. The engine
    /// puts the caller's end first, which [`RelayTable::idle`] reports.
    pub ends: [End; 2],
    /// Whether this is the RTCP flow (RTP port + 1): it keeps no RTP statistics and never times
    /// out.
    pub rtcp: bool,
    /// Engine time (ms) of the last relayed packet, for the media timeout.
    pub last_active: Ms,
}

/// An end as the packet path keeps it: [`End`] without its statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Route {
    sdp: Option<SocketAddrV4>,
    latched: Option<SocketAddrV4>,
    port: u16,
    side: Side,
    lane: u8,
    receives: bool,
    telephone_event: Option<u8>,
}

impl Route {
    fn of(e: &End) -> Route {
        Route {
            sdp: e.sdp,
            latched: e.latched,
            port: e.port,
            side: e.side,
            lane: e.lane,
            receives: e.receives,
            telephone_event: e.telephone_event,
        }
    }

    fn end(&self, rx: RtpStats) -> End {
        End {
            side: self.side,
            lane: self.lane,
            port: self.port,
            sdp: self.sdp,
            latched: self.latched,
            rx,
            receives: self.receives,
            telephone_event: self.telephone_event,
        }
    }

    /// A telephone event from the peer: a packet whose payload type is the
    /// event type of this end's SDP or of the receiver's (`to`, the other
    /// end's; RFC 3264 section 5.1 has senders use the receiver's numbers,
    /// many carriers use their own). A new event (a timestamp not seen last)
    /// is counted and gets the marker bit on its first packet if the sender
    /// left it off (RFC 4733 section 2.5.1.3; receivers such as LiveKit lose
    /// digits without it); every packet of it leaves with the receiver's
    /// payload type when the two sides negotiated different numbers.
    fn take_event(&self, rx: &mut RtpStats, pkt: &mut [u8], receiver: &Route) {
        let (Some(pt), Some(&mpt)) = (self.telephone_event, pkt.get(1)) else {
            return;
        };
        let got = mpt & 0x7f;
        // Audio leaves here: the receiver's end is read for events only.
        let to = receiver.telephone_event;
        if got != pt && Some(got) != to {
            return;
        }
        let Some(&[t0, t1, t2, t3]) = pkt.get(4..8) else {
            return;
        };
        let ts = u32::from_be_bytes([t0, t1, t2, t3]);
        let mut out = mpt;
        if rx.dtmf_events == 0 || rx.last_event != ts {
            rx.last_event = ts;
            rx.dtmf_events = rx.dtmf_events.saturating_add(1);
            out |= 0x80;
        }
        if let Some(to) = to {
            out = (out & 0x80) | (to & 0x7f);
        }
        if let Some(m) = pkt.get_mut(1) {
            *m = out;
        }
    }

    fn destination(&self) -> Option<SocketAddrV4> {
        if !self.receives {
            return None;
        }
        self.latched
            .or(self.sdp)
            .filter(|a| !a.ip().is_unspecified() && a.port() != 0)
    }

    /// Whether a packet from `src` is the peer's: the latched source; else
    /// the SDP's exact address, which always wins the latch (so a packet
    /// still in flight from an old port, latched just after a port-only
    /// move was committed, gives way to the new port's first packet); else,
    /// with nothing latched, any port on the SDP's IP (a peer whose RTP
    /// leaves from another port than the SDP names).
    fn accepts(&mut self, src: SocketAddrV4) -> bool {
        if self.latched == Some(src) {
            return true;
        }
        match self.sdp {
            Some(sdp) if sdp.ip().is_unspecified() => false,
            Some(sdp) if sdp == src || (self.latched.is_none() && sdp.ip() == src.ip()) => {
                self.latched = Some(src);
                true
            }
            _ => false,
        }
    }
}

/// A stream as the packet path keeps it: both ends' addressing and latch,
/// the RTCP flag and the clock in one 64-byte cache line. The statistics
/// live apart ([`EndStats`]), so a packet touches two lines, this one and
/// its arriving end's statistics, both known from the index entry and
/// prefetched a burst ahead ([`RelayTable::prefetch_stream`]).
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Slot {
    ends: [Route; 2],
    rtcp: bool,
    last_active: Ms,
}

/// One end's statistics on a cache line of its own.
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct EndStats(RtpStats);

/// Streams indexed by (side, lane, local port).
#[derive(Debug)]
pub struct RelayTable {
    port_min: u16,
    lanes: u8,
    /// Per (side, lane): an entry per port, `id << 1 | end` (the stream and
    /// which of its two ends owns the port), or `NONE`.
    index: Vec<Vec<u32>>,
    /// The packet path's part of each stream, by id.
    slots: Vec<Option<Slot>>,
    /// Each stream's two ends' statistics, by id.
    stats: Vec<[EndStats; 2]>,
    free: Vec<u32>,
    /// Packets dropped, indexed by `DropReason as usize`.
    pub drops: [u64; DROP_REASONS],
    /// Packets given a [`Verdict::Relay`].
    pub relayed: u64,
    /// Stale streams removed to install a new one on their ports.
    pub replaced: u64,
    /// Of the [`DropReason::Srtp`] drops, the replays (RFC 3711 section 3.3.2).
    pub srtp_replays: u64,
    /// The SRTP of each stream that has one, by stream id.
    #[cfg(feature = "srtp")]
    crypto: Vec<Option<Box<StreamCrypto>>>,
    /// Streams asked for SRTP (`MediaCmd::Srtp`), whose packets are dropped
    /// as [`DropReason::Srtp`] by a relay built without the `srtp` feature.
    #[cfg(not(feature = "srtp"))]
    crypto: Vec<bool>,
}

/// The SRTP of one stream: the end that faces the SRTP peer, and the two
/// directions' sessions.
#[cfg(feature = "srtp")]
#[derive(Debug)]
struct StreamCrypto {
    /// (side, lane, port) of the end the SRTP peer is behind.
    at: (Side, u8, u16),
    /// Unprotects what arrives at that end.
    inbound: crate::srtp::SrtpSession,
    /// Protects what leaves from that end.
    outbound: crate::srtp::SrtpSession,
    /// The keys the two sessions were made with.
    keys: super::SrtpKeys,
}

/// Which way a packet crosses an SRTP end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crossing {
    /// Arriving from the SRTP peer: unprotect.
    In,
    /// Leaving toward it: protect.
    Out,
}

const NONE: u32 = u32::MAX;

impl RelayTable {
    /// A table for one media address per side.
    pub fn new(port_min: u16, port_max: u16) -> RelayTable {
        RelayTable::with_lanes(1, port_min, port_max)
    }

    /// A table for `lanes` media addresses per side, each with the range.
    pub fn with_lanes(lanes: u8, port_min: u16, port_max: u16) -> RelayTable {
        let n = usize::from(port_max.saturating_sub(port_min)) + 1;
        let lanes = lanes.max(1);
        RelayTable {
            port_min,
            lanes,
            index: (0..2 * usize::from(lanes)).map(|_| vec![NONE; n]).collect(),
            slots: Vec::new(),
            stats: Vec::new(),
            free: Vec::new(),
            drops: [0; DROP_REASONS],
            relayed: 0,
            replaced: 0,
            srtp_replays: 0,
            crypto: Vec::new(),
        }
    }

    /// Which per-port array serves (side, lane).
    fn lane_index(&self, side: Side, lane: u8) -> Option<usize> {
        (lane < self.lanes).then_some(2 * usize::from(lane) + side.index())
    }

    /// (array, offset) of our `port` of `lane` on `side`.
    fn slot(&self, side: Side, lane: u8, port: u16) -> Option<(usize, usize)> {
        let array = self.lane_index(side, lane)?;
        let off = usize::from(port.checked_sub(self.port_min)?);
        (off < self.index.get(array)?.len()).then_some((array, off))
    }

    /// Installs a stream; returns its id, or `None` if a port is outside the
    /// range or already taken.
    pub fn install(&mut self, stream: Stream) -> Option<u32> {
        let slots: Vec<(usize, usize)> = stream
            .ends
            .iter()
            .map(|e| self.slot(e.side, e.lane, e.port))
            .collect::<Option<_>>()?;
        if slots
            .iter()
            .any(|&(side, s)| self.index.get(side).and_then(|v| v.get(s)) != Some(&NONE))
        {
            return None;
        }
        let slot = Slot {
            ends: stream.ends.map(|e| Route::of(&e)),
            rtcp: stream.rtcp,
            last_active: stream.last_active,
        };
        let stats = stream.ends.map(|e| EndStats(e.rx));
        let id = match self.free.pop() {
            Some(id) => {
                if let Some(s) = self.slots.get_mut(id as usize) {
                    *s = Some(slot);
                }
                if let Some(s) = self.stats.get_mut(id as usize) {
                    *s = stats;
                }
                id
            }
            None => {
                // Ids leave a bit for the end in index entries.
                let id = u32::try_from(self.slots.len())
                    .ok()
                    .filter(|&id| id < NONE >> 1)?;
                self.slots.push(Some(slot));
                self.stats.push(stats);
                id
            }
        };
        for (end, (side, s)) in slots.into_iter().enumerate() {
            if let Some(x) = self.index.get_mut(side).and_then(|v| v.get_mut(s)) {
                *x = id << 1 | end as u32;
            }
        }
        Some(id)
    }

    /// Removes a stream and frees its ports in the table.
    pub fn remove(&mut self, id: u32) -> Option<Stream> {
        let stream = self.get(id)?;
        self.slots.get_mut(id as usize)?.take();
        if let Some(c) = self.crypto.get_mut(id as usize) {
            *c = Default::default();
        }
        for e in &stream.ends {
            if let Some((array, s)) = self.slot(e.side, e.lane, e.port) {
                if let Some(x) = self.index.get_mut(array).and_then(|v| v.get_mut(s)) {
                    *x = NONE;
                }
            }
        }
        self.free.push(id);
        Some(stream)
    }

    /// The stream that owns our `port` on `side`. The engine's commands name
    /// lane 0: it allocates ports on one media address per side.
    pub fn id_at(&self, side: Side, port: u16) -> Option<u32> {
        self.id_on(side, 0, port)
    }

    /// Bytes each installed stream takes in the table: its slot and its two
    /// ends' statistics, one 64-byte cache line each (the per-port index,
    /// 4 bytes a port per side and lane, comes on top).
    pub const STREAM_BYTES: usize =
        std::mem::size_of::<Option<Slot>>() + std::mem::size_of::<[EndStats; 2]>();

    /// Whether the streams outgrow what a core's caches keep (256 KiB of
    /// slots and statistics): only then does prefetching a burst ahead pay
    /// for the extra pass over it.
    pub fn outgrows_cache(&self) -> bool {
        self.len() * Self::STREAM_BYTES > 256 << 10
    }

    /// Prefetching for a burst, first step: hands `hint` the address of the
    /// index entry of our `port` of `lane` on `side` (nothing outside the
    /// table). A poll loop calls it for every packet of a burst, then
    /// [`RelayTable::prefetch_stream`] for every packet, then judges them, so
    /// the burst's cache misses overlap.
    pub fn prefetch_index(&self, side: Side, lane: u8, port: u16, hint: impl Fn(*const u8)) {
        if let Some(e) = self.entry(side, lane, port) {
            hint((e as *const u32).cast());
        }
    }

    /// Prefetching for a burst, second step: hands `hint` the addresses of
    /// the two cache lines a packet arriving on our `port` of `lane` on
    /// `side` will touch, its stream's slot and its end's statistics (nothing
    /// when no stream owns the port).
    pub fn prefetch_stream(&self, side: Side, lane: u8, port: u16, hint: impl Fn(*const u8)) {
        let Some((id, end)) = self.owner(side, lane, port) else {
            return;
        };
        if let Some(s) = self.slots.get(id) {
            hint((s as *const Option<Slot>).cast());
        }
        if let Some(s) = self.stats.get(id).and_then(|s| s.get(end)) {
            hint((s as *const EndStats).cast());
        }
    }

    /// The index entry of our `port` of `lane` on `side`; `None` outside the table.
    fn entry(&self, side: Side, lane: u8, port: u16) -> Option<&u32> {
        let (array, slot) = self.slot(side, lane, port)?;
        self.index.get(array)?.get(slot)
    }

    /// (stream id, which of its ends) owning our `port` of `lane` on `side`.
    fn owner(&self, side: Side, lane: u8, port: u16) -> Option<(usize, usize)> {
        let entry = *self.entry(side, lane, port)?;
        (entry != NONE).then_some(((entry >> 1) as usize, (entry & 1) as usize))
    }

    fn id_on(&self, side: Side, lane: u8, port: u16) -> Option<u32> {
        self.owner(side, lane, port).map(|(id, _)| id as u32)
    }

    /// Applies a control message from the engine. `removed` sees every
    /// stream taken out; a finished call's record is returned, media filled.
    pub fn apply(
        &mut self,
        cmd: MediaCmd,
        mut removed: impl FnMut(&Stream),
    ) -> Option<Box<CallRecord>> {
        match cmd {
            MediaCmd::Install(stream) => {
                if self.install(stream).is_none() {
                    // Its ports are still held: a stream whose removal was
                    // lost (a full command ring). The new call wins.
                    for e in &stream.ends {
                        if let Some(id) = self.id_on(e.side, e.lane, e.port) {
                            self.remove(id);
                        }
                    }
                    self.replaced += 1;
                    self.install(stream);
                }
                None
            }
            MediaCmd::Peer { side, port, peer } => {
                if let Some(id) = self.id_at(side, port) {
                    self.update_peer(id, side, peer);
                }
                None
            }
            MediaCmd::Negotiated {
                side,
                port,
                receives,
                telephone_event,
            } => {
                let stream = self
                    .id_at(side, port)
                    .and_then(|id| self.slots.get_mut(id as usize));
                if let Some(Some(s)) = stream {
                    for e in s.ends.iter_mut().filter(|e| e.side == side) {
                        e.receives = receives;
                        e.telephone_event = telephone_event;
                    }
                }
                None
            }
            // Sent by the backend, which owns the sockets or ports.
            MediaCmd::Dtmf { .. } => None,
            MediaCmd::Srtp { side, port, keys } => {
                for p in [port, port.wrapping_add(1)] {
                    if let Some(id) = self.id_at(side, p) {
                        self.set_crypto(id, (side, 0, p), keys.as_deref());
                    }
                }
                None
            }
            MediaCmd::Release {
                rtp_ports,
                mut record,
            } => {
                for (side, port) in rtp_ports {
                    let mut line = MediaLine::default();
                    for p in [port, port.wrapping_add(1)] {
                        let Some(stream) = self.id_at(side, p).and_then(|id| self.remove(id))
                        else {
                            continue;
                        };
                        if !stream.rtcp {
                            for e in &stream.ends {
                                if e.side == side {
                                    line.from_caller = e.rx.summary();
                                } else {
                                    line.from_callee = e.rx.summary();
                                }
                            }
                        }
                        removed(&stream);
                    }
                    record.media.push(line);
                }
                Some(record)
            }
        }
    }

    /// The installed stream with this id, statistics included (a copy); `None` when the id is free
    /// or was never handed out.
    pub fn get(&self, id: u32) -> Option<Stream> {
        let slot = self.slots.get(id as usize)?.as_ref()?;
        let [a, b] = self.stats.get(id as usize)?;
        let [ra, rb] = &slot.ends;
        Some(Stream {
            ends: [ra.end(a.0), rb.end(b.0)],
            rtcp: slot.rtcp,
            last_active: slot.last_active,
        })
    }

    /// A new SDP address for one end (re-INVITE/UPDATE): the latch restarts.
    pub fn update_peer(&mut self, id: u32, side: Side, sdp: Option<SocketAddrV4>) {
        if let Some(Some(s)) = self.slots.get_mut(id as usize) {
            for e in s.ends.iter_mut().filter(|e| e.side == side) {
                if e.sdp != sdp {
                    e.sdp = sdp;
                    e.latched = None;
                }
            }
        }
    }

    /// Where packets leaving our `port` on `side` go, and from which lane:
    /// the peer of the end there (latched, else its SDP address); `None`
    /// when there is no stream or nowhere to send.
    pub fn sends_to(&self, side: Side, port: u16) -> Option<(u8, SocketAddrV4)> {
        let (id, end) = self.owner(side, 0, port)?;
        let end = self.slots.get(id)?.as_ref()?.ends.get(end)?;
        Some((end.lane, end.destination()?))
    }

    /// What each RTP stream received so far, by the port of its first end
    /// (the caller's, as the engine installs them): for the live calls
    /// list, built only when asked.
    pub fn figures(&self) -> Vec<crate::call::LiveMedia> {
        self.slots
            .iter()
            .zip(&self.stats)
            .filter_map(|(s, [a, b])| {
                let s = s.as_ref().filter(|s| !s.rtcp)?;
                let [first, _] = &s.ends;
                Some(crate::call::LiveMedia {
                    side: first.side,
                    port: first.port,
                    line: MediaLine {
                        from_caller: a.0.summary(),
                        from_callee: b.0.summary(),
                    },
                })
            })
            .collect()
    }

    /// Copies the table's counters into the relay's shared ones (plain
    /// stores: the backends call it after busy rounds).
    pub fn publish(&self, m: &crate::stats::MediaStats) {
        m.relayed.set(self.relayed);
        let [unknown, wrong, nowhere, srtp] = self.drops;
        m.dropped_unknown_port.set(unknown);
        m.dropped_wrong_source.set(wrong);
        m.dropped_no_destination.set(nowhere);
        m.dropped_srtp.set(srtp);
        m.srtp_replays.set(self.srtp_replays);
        m.streams.set(self.len() as u64);
    }

    /// Installed streams (RTP and RTCP each count one).
    pub fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Calls `f` with the first end of every RTP stream that relayed nothing
    /// for `timeout` ms, and restarts its clock (so it is reported again one
    /// timeout later if it stays silent).
    pub fn idle(&mut self, now: Ms, timeout: Ms, mut f: impl FnMut(Side, u16)) {
        for s in self.slots.iter_mut().flatten() {
            if !s.rtcp && now.saturating_sub(s.last_active) >= timeout {
                s.last_active = now;
                let [first, _] = &s.ends;
                f(first.side, first.port);
            }
        }
    }

    /// Whether no stream is installed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets (or, `None`, takes off) the SRTP of stream `id`, whose end at
    /// `at` faces the SRTP peer. Sessions are made here, on the relay's
    /// thread, never per packet; a direction whose key did not change (a
    /// re-INVITE that keeps the peer's key) keeps its session, rollover
    /// counter and replay list with it (RFC 3711 section 3.3.1). Keys that
    /// libsrtp refuses leave the stream without SRTP and its packets dropped.
    fn set_crypto(&mut self, id: u32, at: (Side, u8, u16), keys: Option<&super::SrtpKeys>) {
        let i = id as usize;
        if self.crypto.len() <= i {
            self.crypto.resize_with(i + 1, Default::default);
        }
        #[cfg(feature = "srtp")]
        let value = keys.and_then(|k| {
            use crate::srtp::{Role, SrtpSession};
            let old = self
                .crypto
                .get_mut(i)
                .and_then(Option::take)
                .filter(|c| c.at == at);
            let (mut keep_in, mut keep_out) = (None, None);
            if let Some(c) = old {
                let c = *c;
                if c.keys.inbound == k.inbound {
                    keep_in = Some(c.inbound);
                }
                if c.keys.outbound == k.outbound {
                    keep_out = Some(c.outbound);
                }
            }
            let inbound = match keep_in {
                Some(s) => Ok(s),
                None => SrtpSession::new(k.inbound.suite, &k.inbound.key, Role::Unprotect),
            };
            let outbound = match keep_out {
                Some(s) => Ok(s),
                None => SrtpSession::new(k.outbound.suite, &k.outbound.key, Role::Protect),
            };
            match (inbound, outbound) {
                (Ok(inbound), Ok(outbound)) => Some(Box::new(StreamCrypto {
                    at,
                    inbound,
                    outbound,
                    keys: k.clone(),
                })),
                _ => None,
            }
        });
        #[cfg(not(feature = "srtp"))]
        let value = {
            let _ = at;
            keys.is_some()
        };
        if let Some(slot) = self.crypto.get_mut(i) {
            *slot = value;
        }
    }

    /// SRTP on a packet `buf[..len]` crossing our end at `at`: unprotected
    /// when it arrives from the SRTP peer, protected when it leaves toward
    /// it (`buf` then needs room for the tag after `len`). The new length,
    /// or the drop (counted by the caller).
    #[cfg(feature = "srtp")]
    fn srtp(
        &mut self,
        at: (Side, u8, u16),
        way: Crossing,
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, DropReason> {
        let Some(id) = self.id_on(at.0, at.1, at.2) else {
            return Ok(len);
        };
        let rtcp_stream = matches!(self.slots.get(id as usize), Some(Some(s)) if s.rtcp);
        let Some(Some(c)) = self.crypto.get_mut(id as usize) else {
            return Ok(len);
        };
        if c.at != at {
            return Ok(len);
        }
        // RTCP on its own port, or muxed on the RTP port (RFC 5761 section 4).
        let rtcp = rtcp_stream || super::rtcp::is_rtcp(buf.get(..len).unwrap_or_default());
        let done = match (way, rtcp) {
            (Crossing::In, false) => c.inbound.unprotect_rtp(buf, len),
            (Crossing::In, true) => c.inbound.unprotect_rtcp(buf, len),
            (Crossing::Out, false) => c.outbound.protect_rtp(buf, len),
            (Crossing::Out, true) => c.outbound.protect_rtcp(buf, len),
        };
        done.map_err(|e| {
            if e == crate::srtp::SrtpError::Replay {
                self.srtp_replays += 1;
            }
            DropReason::Srtp
        })
    }

    /// Without the `srtp` feature: a stream asked for SRTP drops everything.
    #[cfg(not(feature = "srtp"))]
    fn srtp(
        &mut self,
        at: (Side, u8, u16),
        _way: Crossing,
        _buf: &mut [u8],
        len: usize,
    ) -> Result<usize, DropReason> {
        match self.id_on(at.0, at.1, at.2) {
            Some(id) if self.crypto.get(id as usize) == Some(&true) => Err(DropReason::Srtp),
            _ => Ok(len),
        }
    }

    /// Whether any stream has (or had) SRTP keys: only then may a packet
    /// through [`RelayTable::relay_packet`] change length, and need room
    /// after it for a tag.
    pub fn has_srtp(&self) -> bool {
        !self.crypto.is_empty()
    }

    /// One packet through the relay, SRTP included: the packet `buf[..len]`
    /// that arrived on our `port` of `lane` on `side` from `src` is
    /// unprotected when that end faces an SRTP peer, judged
    /// ([`RelayTable::verdict`]), and protected when the end it leaves from
    /// faces one. `buf` needs room after `len` for the tag (20 bytes at
    /// most, [`super::sdes::Suite::rtcp_overhead`]). Returns the verdict and
    /// the length to send. Streams without SRTP cost one table look-up more
    /// than the verdict alone.
    pub fn relay_packet(
        &mut self,
        at: (Side, u8, u16),
        src: SocketAddrV4,
        buf: &mut [u8],
        len: usize,
        now_ms: Ms,
    ) -> (Verdict, usize) {
        let drop = |t: &mut RelayTable, r: DropReason| {
            if let Some(c) = t.drops.get_mut(r as usize) {
                *c += 1;
            }
            (Verdict::Drop(r), len)
        };
        let srtp = self.has_srtp();
        let len = if srtp {
            match self.srtp(at, Crossing::In, buf, len) {
                Ok(n) => n,
                Err(r) => return drop(self, r),
            }
        } else {
            len
        };
        let Some(pkt) = buf.get_mut(..len) else {
            return drop(self, DropReason::Srtp);
        };
        let verdict = self.verdict(at, src, pkt, now_ms);
        match verdict {
            Verdict::Relay {
                side, lane, port, ..
            } if srtp => match self.srtp((side, lane, port), Crossing::Out, buf, len) {
                Ok(n) => (verdict, n),
                Err(r) => {
                    // Counted as relayed by the verdict; it did not leave.
                    self.relayed = self.relayed.saturating_sub(1);
                    drop(self, r)
                }
            },
            _ => (verdict, len),
        }
    }

    /// The verdict for one packet that arrived on our `port` of `lane` on
    /// `side` from `src`, at engine time `now_ms`.
    pub fn verdict(
        &mut self,
        (side, lane, port): (Side, u8, u16),
        src: SocketAddrV4,
        pkt: &mut [u8],
        now_ms: Ms,
    ) -> Verdict {
        let verdict = self.decide(side, lane, port, src, pkt, now_ms);
        match verdict {
            Verdict::Relay { .. } => self.relayed += 1,
            Verdict::Drop(r) => {
                if let Some(c) = self.drops.get_mut(r as usize) {
                    *c += 1;
                }
            }
        }
        verdict
    }

    fn decide(
        &mut self,
        side: Side,
        lane: u8,
        port: u16,
        src: SocketAddrV4,
        pkt: &mut [u8],
        now_ms: Ms,
    ) -> Verdict {
        let Some((id, this)) = self.owner(side, lane, port) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let Some(Some(stream)) = self.slots.get_mut(id) else {
            return Verdict::Drop(DropReason::UnknownPort);
        };
        let [a, b] = &mut stream.ends;
        let (end, out) = if this == 0 { (a, &*b) } else { (b, &*a) };
        if !end.accepts(src) {
            return Verdict::Drop(DropReason::WrongSource);
        }
        if !stream.rtcp {
            if let Some(EndStats(rx)) = self.stats.get_mut(id).and_then(|s| s.get_mut(this)) {
                // 8 kHz clock: audio's usual rate; jitter is indicative for others.
                rx.update(pkt, (now_ms * 8) as i64);
                end.take_event(rx, pkt, out);
            }
        }
        stream.last_active = now_ms;
        match out.destination() {
            Some(to) => Verdict::Relay {
                side: out.side,
                lane: out.lane,
                port: out.port,
                to,
            },
            None => Verdict::Drop(DropReason::NoDestination),
        }
    }
}

#[cfg(test)]
mod tests;
