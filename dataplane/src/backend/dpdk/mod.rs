//! The DPDK backend: one poll-mode lcore owns both ports.
//!
//! ```text
//!  priv port ─rx burst─┐                                  ┌─tx burst─► priv port
//!                      ├─ classify: ARP ─ reply in place ─┤
//!  pub port ──rx burst─┤           ICMP echo ─ reply ─────┤─tx burst─► pub port
//!                      │           RTP ─ verdict ─ readdress in place, other port
//!                      │           SIP ─ copy ─► intake ─► SIP engine thread
//!                      └───────────────────── tx_ring ◄─┘  (same engine as sockets)
//! ```
//! Relayed RTP never leaves its mbuf: headers are rewritten where they are
//! and the mbuf goes out of the other port. The SIP engine, its rings and the
//! relay table are the socket backend's; only the I/O differs. The poll loop
//! is safe code over the wrappers of [`crate::dpdk`], the one place `unsafe`
//! is allowed; `side_io` holds each port's addressing and output.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::engine_thread::start_engine;
use super::{Datagram, Dataplane, EngineIo, Shared, StartError};
use crate::dpdk::{launch, wait, Burst, Eal, Mbuf, Mempool, Port, BURST};
use crate::engine::{EngineConfig, Outgoing, SipEngine};
use crate::media::{MediaCmd, RelayTable, Verdict};
use crate::net::{self, ArpCache, Kind};
use crate::routing::RouteSnapshot;
use crate::side::{BySide, Side};
use crate::stats::IoStats;
use crate::time::Ms;
use crate::transport::Transport;
use side_io::{SideIo, PENDING_MAX};

#[cfg(feature = "bench")]
mod bench;
pub mod exception;
mod side_io;

#[cfg(feature = "bench")]
pub use bench::{bench_relay, AddedLatency, BenchSide, RelayRun};

/// Settings of the DPDK backend (`[dataplane.dpdk]`).
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// EAL's own arguments (`-l`, `-a`, `--vdev`, `--no-huge`, ...).
    pub eal_args: Vec<String>,
    /// DPDK port id of each side.
    pub ports: BySide<u16>,
    /// Prefix length of each side's subnet.
    pub prefixes: BySide<u8>,
    /// Router of each side; `None`: every destination is on-link.
    pub next_hops: BySide<Option<Ipv4Addr>>,
    /// Sleep after 1,024 empty polls in a row, in µs (0: never).
    pub idle_sleep_us: u32,
    /// The exception path's kernel interface ([`exception`]); `None`: none.
    pub exception_iface: Option<String>,
    /// The SIP engine's settings; its media settings are required here, with each side's media
    /// address equal to its SIP address.
    pub engine: EngineConfig,
    /// Core of the SIP engine thread; `None`: core 0, EAL's main lcore (the
    /// poll loop owns the first worker lcore's core).
    pub sip_core: Option<usize>,
    /// Capacity of the rings between the poll loop and the engine.
    pub ring_size: usize,
}

/// Datagram buffers handed to the engine (SIP over UDP in one frame).
const SIP_BUF: usize = 2048;

/// Room after a relayed payload for an SRTP tag.
const SRTP_ROOM: usize = crate::media::sdes::Suite::MAX_OVERHEAD;

/// Starts EAL, both ports, the SIP engine thread and the poll loop on the
/// first worker lcore. Errors name the EAL call or the config key at fault.
pub fn start(cfg: DpdkConfig, snapshot: Arc<RouteSnapshot>) -> Result<Dataplane, StartError> {
    let mut eal_args = cfg.eal_args.clone();
    if let Some(iface) = &cfg.exception_iface {
        eal_args.push(exception::vdev_arg(iface));
    }
    let eal = Eal::init(&eal_args)?;
    let Some(&lcore) = eal.workers().first() else {
        return Err(StartError::Config(
            "dataplane.dpdk.eal_args: EAL has no worker lcore for the poll loop (give two cores, e.g. \"-l\", \"0,1\")".into(),
        ));
    };
    let media = cfg.engine.media.ok_or_else(|| {
        StartError::Config("the DPDK backend relays media: [media] must be set".into())
    })?;
    for (side, addr) in cfg.engine.sip.iter() {
        if media.ip[side] != *addr.ip() {
            let name = side.name();
            return Err(StartError::Config(format!(
                "media.{name}_ip ({}) must equal the address of sip.{name} ({}) on the DPDK backend: one address per port",
                media.ip[side],
                addr.ip()
            )));
        }
    }
    let pool = Mempool::new(&eal, "sbc_pkts", 16_383)?;
    let mut ports = BySide::new(
        Port::by_id(&eal, cfg.ports[Side::Private])?,
        Port::by_id(&eal, cfg.ports[Side::Public])?,
    );
    let mut macs = BySide::new([0u8; 6], [0u8; 6]);
    for (side, p) in ports.iter_mut() {
        p.start(1, 1024, &pool)?;
        // Frames for other hosts on the segment are ours to ignore, not the NIC's.
        let _ = p.set_promiscuous(true);
        macs[side] = p.mac()?;
    }
    let exception = match &cfg.exception_iface {
        Some(iface) => {
            let public = cfg.engine.sip[Side::Public];
            Some(exception::open(
                &eal,
                &pool,
                iface,
                macs[Side::Public],
                (*public.ip(), cfg.prefixes[Side::Public]),
                cfg.next_hops[Side::Public],
            )?)
        }
        None => None,
    };
    let shared = Arc::new(Shared::new(cfg.ring_size));
    for _ in 0..cfg.ring_size {
        let _ = shared.free.push(vec![0u8; SIP_BUF]);
    }
    let engine = SipEngine::new(cfg.engine.clone(), snapshot, shared.engine.clone());
    let to_poll = shared.clone();
    let engine_thread = start_engine(engine, &shared, cfg.sip_core.or(Some(0)), move || TxRing {
        shared: to_poll,
    })?;
    let sides = BySide::from_fn(|side| {
        let addr = cfg.engine.sip[side];
        SideIo::new(
            vec![*addr.ip()],
            addr.port(),
            cfg.prefixes[side],
            cfg.next_hops[side],
            macs[side],
            ArpCache::new(1024, 300_000),
        )
    });
    let (min, max) = media.port_span();
    let mut poller = Poller::new(
        ports,
        pool,
        shared.clone(),
        sides,
        RelayTable::new(min, max),
    );
    poller.media_timeout = media.timeout;
    poller.exception = exception;
    poller.idle_sleep = std::time::Duration::from_micros(u64::from(cfg.idle_sleep_us));
    launch(&eal, lcore, move || {
        poller.run();
        // Ports stop (they drop first) before the pool they receive into goes.
        drop(poller);
        0
    })?;
    let on_stop: Box<dyn FnOnce() + Send> = Box::new(move || {
        wait(&eal, lcore);
        drop(eal);
    });
    Ok(Dataplane::new(
        "dpdk",
        shared,
        engine_thread,
        Vec::new(),
        Some(on_stop),
    ))
}

/// The engine thread's half: its output goes over the TX ring to the poll
/// loop, which frames and sends it.
struct TxRing {
    shared: Arc<Shared>,
}

impl EngineIo for TxRing {
    fn send(&mut self, out: &mut Vec<Outgoing>) {
        for o in out.drain(..) {
            if self.shared.tx_ring.push(o).is_err() {
                self.shared.io.tx_errors.inc();
            }
        }
    }
}

/// The poll loop's state: the ports, the relay table, each side's I/O.
pub(super) struct Poller {
    /// Declared before `pool`: dropped (stopped) first.
    ports: BySide<Port>,
    /// The exception path of the public side (a `net_tap` to the kernel);
    /// before `pool` too.
    exception: Option<Port>,
    pool: Mempool,
    shared: Arc<Shared>,
    sides: BySide<SideIo>,
    table: RelayTable,
    /// SIP waiting for ARP: (datagram, deadline).
    pending: VecDeque<(Outgoing, Ms)>,
    media_timeout: Ms,
    idle_sleep: std::time::Duration,
    /// IPv4 reassembly for SIP over UDP larger than the MTU.
    reasm: net::Reassembler,
    /// IPv4 id of our fragmented datagrams.
    ip_id: u16,
    /// The exception path's TX burst.
    exception_tx: Burst,
    /// The relay benchmark's added-latency histogram (`None` outside it).
    #[cfg(feature = "bench")]
    latency: Option<bench::AddedLatency>,
}

impl Poller {
    /// A poll loop over started `ports`: no media timeout and pure busy
    /// polling until the caller says otherwise.
    fn new(
        ports: BySide<Port>,
        pool: Mempool,
        shared: Arc<Shared>,
        sides: BySide<SideIo>,
        table: RelayTable,
    ) -> Poller {
        Poller {
            ports,
            pool,
            shared,
            sides,
            table,
            pending: VecDeque::with_capacity(PENDING_MAX),
            media_timeout: Ms::MAX,
            idle_sleep: std::time::Duration::ZERO,
            reasm: net::Reassembler::new(64, 2_000),
            ip_id: 0,
            exception: None,
            exception_tx: Burst::default(),
            #[cfg(feature = "bench")]
            latency: None,
        }
    }

    /// Polls both ports until the quit flag: stream commands, RX bursts,
    /// SIP from the engine, TX bursts, and once a second the scan.
    pub(super) fn run(&mut self) {
        let start = Instant::now();
        let mut next_scan = 1_000;
        let mut rx = Burst::default();
        let io = self.shared.io.clone();
        let mut idle_polls = 0u32;
        let (mut polls, mut busy_polls) = (0u64, 0u64);
        // Time spent in busy iterations: each iteration's start closes the
        // previous one, so no clock is read beyond the one `now` needs.
        let (mut busy_ns, mut last_ns, mut last_busy) = (0u64, 0u64, false);
        while !self.shared.quit.load(Ordering::Relaxed) {
            let elapsed = start.elapsed();
            let now = elapsed.as_millis() as Ms;
            let now_ns = elapsed.as_nanos() as u64;
            if last_busy {
                busy_ns += now_ns.saturating_sub(last_ns);
            }
            last_ns = now_ns;
            #[cfg(feature = "bench")]
            let relayed_before = self.table.relayed;
            let mut busy = false;
            while let Some(mut cmd) = self.shared.media_cmds.pop() {
                if let MediaCmd::Install(stream) = &mut cmd {
                    stream.last_active = now;
                }
                if let MediaCmd::Dtmf { side, port, event } = &cmd {
                    if let Some((lane, to)) = self.table.sends_to(*side, *port) {
                        for p in event.packets() {
                            if self.send_from((*side, lane, *port), to, &p, now, &io) {
                                self.shared.media.dtmf_injected.inc();
                            }
                        }
                    }
                    busy = true;
                    continue;
                }
                if let Some(record) = self.table.apply(cmd, |_| {}) {
                    self.shared.engine.record(*record);
                }
                busy = true;
            }
            let mut sip_in = false;
            for side in Side::ALL {
                let n = self.ports[side].rx_burst(0, &mut rx);
                if n == 0 {
                    continue;
                }
                busy = true;
                io.rx_packets.add(n as u64);
                self.prefetch_streams(side, &rx);
                for m in rx.drain() {
                    sip_in |= self.handle(side, m, now, &io);
                }
            }
            if sip_in {
                self.shared.wake_engine();
            }
            // What the kernel sends through the exception path leaves by
            // the public port as it is.
            if let Some(exc) = &self.exception {
                let n = exc.rx_burst(0, &mut rx);
                if n > 0 {
                    busy = true;
                    io.exception_out.add(n as u64);
                    for m in rx.drain() {
                        self.push(Side::Public, m, &io);
                    }
                }
            }
            // What waited for ARP goes before newer SIP to the same hop.
            self.retry_pending(now, &io);
            while let Some(o) = self.shared.tx_ring.pop() {
                busy = true;
                self.send_sip(o, now, &io);
            }
            for side in Side::ALL {
                self.flush(side, &io);
            }
            self.flush_exception(&io);
            #[cfg(feature = "bench")]
            if let Some(l) = self.latency.as_mut() {
                let relayed = self.table.relayed.saturating_sub(relayed_before);
                if relayed > 0 {
                    let ns = (start.elapsed().as_nanos() as u64).saturating_sub(now_ns);
                    l.record(ns, relayed);
                }
            }
            // Poll counts are plain locals, published once a second.
            polls += 1;
            last_busy = busy;
            if busy {
                self.publish_relay_counters();
                busy_polls += 1;
                idle_polls = 0;
            } else {
                idle_polls = idle_polls.saturating_add(1);
                if idle_polls >= 1024 && !self.idle_sleep.is_zero() {
                    std::thread::sleep(self.idle_sleep);
                }
            }
            if now >= next_scan {
                next_scan = now + 1_000;
                io.polls.set(polls);
                io.busy_polls.set(busy_polls);
                io.busy_us.set(busy_ns / 1_000);
                self.scan(now);
            }
        }
        io.polls.set(polls);
        io.busy_polls.set(busy_polls);
        io.busy_us.set(busy_ns / 1_000);
    }

    /// Prefetches, for a burst received on `side`, the relay table's index
    /// entry and then the stream of every packet that looks like relayed
    /// UDP, so the burst's cache misses overlap instead of each stalling its
    /// packet's verdict: with 100k sessions in random order, 225 ns a packet
    /// where it was 348 (`perf/dpdk_relay.py`). Skipped while the table fits
    /// the caches. A hint only: [`Poller::handle`] judges every frame in full.
    fn prefetch_streams(&self, side: Side, rx: &Burst) {
        if rx.len() < 2 || !self.table.outgrows_cache() {
            return;
        }
        let s = &self.sides[side];
        let mut keys = [(0u8, 0u16); BURST];
        let mut n = 0;
        for frame in rx.frames() {
            let (Some(dst), Some(key)) = (net::peek_udp_dst(frame), keys.get_mut(n)) else {
                continue;
            };
            let lane = s.lane_of(dst.ip());
            self.table
                .prefetch_index(side, lane, dst.port(), crate::dpdk::prefetch);
            *key = (lane, dst.port());
            n += 1;
        }
        for &(lane, port) in keys.iter().take(n) {
            self.table
                .prefetch_stream(side, lane, port, crate::dpdk::prefetch);
        }
    }

    /// One received frame; `true` when it was SIP handed to the engine.
    fn handle(&mut self, side: Side, mut m: Mbuf, now: Ms, io: &IoStats) -> bool {
        let s = &mut self.sides[side];
        // Promiscuous ports see frames for other hosts: ours or broadcast only.
        let to = m.data().get(..6);
        if to != Some(&s.mac[..]) && to != Some(&net::BROADCAST[..]) {
            io.dropped(net::Reason::NotForUs).inc();
            return false;
        }
        let kind = net::classify(m.data(), &s.ips);
        // The kernel's share of the public side: what the poll loop does not own.
        let kernel = side == Side::Public && self.exception.is_some();
        if kernel && exception::for_kernel(&kind) {
            self.push_exception(m, io);
            return false;
        }
        match kind {
            Kind::Arp {
                request,
                sender_mac,
                sender_ip,
                target_ip,
            } => {
                // RFC 826: update an entry we have; add one only when the
                // ARP is for us (a request to us, or the answer to ours).
                let merged = s.arp.update(sender_ip, sender_mac, now);
                if !merged && s.ips.contains(&target_ip) && net::on_link(sender_ip, s.ip, s.prefix)
                {
                    s.arp.learn(sender_ip, sender_mac, now);
                }
                if request
                    && s.ips.contains(&target_ip)
                    && net::arp_reply(m.data_mut(), s.mac, target_ip)
                {
                    io.arp_replies.inc();
                    self.push(side, m, io);
                } else if kernel && !request {
                    // The kernel resolves its own next hops: it sees the replies too.
                    self.push_exception(m, io);
                }
                false
            }
            Kind::EchoRequest => {
                if net::icmp_echo_reply(m.data_mut()) {
                    io.icmp_echo_replies.inc();
                    self.push(side, m, io);
                }
                false
            }
            Kind::Udp {
                src,
                dst,
                payload: (off, len),
                ..
            } => {
                if dst.port() == s.sip_port && *dst.ip() == s.ip {
                    if !net::udp_checksum_ok(m.data()) {
                        io.dropped(net::Reason::BadChecksum).inc();
                        return false;
                    }
                    self.to_engine(side, src, m.data().get(off..off + len), io);
                    return true;
                }
                let lane = s.lane_of(dst.ip());
                // SRTP changes the length: room for a tag after the payload
                // (in the mbuf's tailroom; without it a packet to protect
                // is dropped, never sent in clear).
                let frame_len = m.len();
                let room = if self.table.has_srtp() {
                    let tail = frame_len.saturating_sub(off + len);
                    let more = SRTP_ROOM.saturating_sub(tail);
                    match u16::try_from(more) {
                        Ok(0) => tail,
                        Ok(more) if m.append(more).is_some() => SRTP_ROOM,
                        _ => tail,
                    }
                } else {
                    0
                };
                let Some(pkt) = m.data_mut().get_mut(off..off + len + room) else {
                    return false;
                };
                // The relay may set an RTP marker bit (a telephone event's first packet).
                let before = pkt.get(..2).and_then(|w| <[u8; 2]>::try_from(w).ok());
                let (verdict, n) =
                    self.table
                        .relay_packet((side, lane, dst.port()), src, pkt, len, now);
                let after = pkt.get(..2).and_then(|w| <[u8; 2]>::try_from(w).ok());
                if n != len {
                    // Protected or unprotected: the payload is new, lengths and checksums follow.
                    m.truncate(off + n);
                    if !net::payload_resized(m.data_mut(), off, n) {
                        return false;
                    }
                } else {
                    m.truncate(frame_len);
                    if let (Some(b), Some(a)) = (before, after) {
                        if a != b {
                            net::payload_word_changed(m.data_mut(), off, b, a);
                        }
                    }
                }
                let len = n;
                if let Verdict::Relay {
                    side: out,
                    lane: out_lane,
                    port,
                    to,
                } = verdict
                {
                    let Some(dmac) = self.resolve(out, *to.ip(), now, io) else {
                        io.arp_unresolved.inc();
                        return false;
                    };
                    let os = &self.sides[out];
                    let ip = os.ips.get(usize::from(out_lane)).copied().unwrap_or(os.ip);
                    let from = SocketAddrV4::new(ip, port);
                    if let Some(pkt) = m.data().get(off..off + len) {
                        let engine = &self.shared.engine;
                        engine.capture_media(src, dst, pkt);
                        engine.capture_rtcp(side, src, dst, pkt);
                        engine.capture_media(from, to, pkt);
                    }
                    if net::readdress(m.data_mut(), os.mac, dmac, from, to) {
                        self.push(out, m, io);
                    }
                }
                false
            }
            Kind::Fragment => match self.reasm.push(m.data(), now) {
                // SIP larger than the MTU, whole again.
                Some(d) if d.dst == SocketAddrV4::new(s.ip, s.sip_port) => {
                    io.reassembled.inc();
                    self.to_engine(side, d.src, Some(&d.payload), io);
                    true
                }
                Some(_) => {
                    io.fragments_dropped.inc();
                    false
                }
                None => false,
            },
            Kind::Drop(reason) => {
                io.dropped(reason).inc();
                false
            }
        }
    }

    fn to_engine(&self, side: Side, src: SocketAddrV4, payload: Option<&[u8]>, io: &IoStats) {
        let Some(payload) = payload else { return };
        let mut buf = self.shared.free.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(payload);
        let d = Datagram {
            transport: Transport::Udp,
            side,
            src: SocketAddr::V4(src),
            len: payload.len(),
            buf,
            queued_ms: 0,
        };
        self.shared.intake.push_counted(d, io, &self.shared.free);
    }

    /// Once a second: silent streams to the engine, relay counters out.
    fn scan(&mut self, now: Ms) {
        let shared = &self.shared;
        shared.engine.answer_media(&self.table);
        let mut reported = false;
        self.table.idle(now, self.media_timeout, |side, port| {
            if shared.media_idle.push((side, port)).is_err() {
                shared.media.commands_dropped.inc();
            }
            reported = true;
        });
        if reported {
            shared.wake_engine();
        }
        for ((_, port), (_, c)) in self.ports.iter().zip(shared.io.ports.iter()) {
            if let Ok(s) = port.stats() {
                c.rx_packets.set(s.rx_packets);
                c.tx_packets.set(s.tx_packets);
                c.rx_missed.set(s.rx_missed);
                c.rx_errors.set(s.rx_errors);
                c.tx_errors.set(s.tx_errors);
                c.rx_no_mbuf.set(s.rx_no_mbuf);
            }
        }
        self.publish_relay_counters();
    }

    /// The relay table's counters into the shared stats (plain stores, after
    /// each busy poll, so the API is never more than one burst behind).
    fn publish_relay_counters(&self) {
        self.table.publish(&self.shared.media);
    }

    /// Queues a frame on `side`'s burst, sending the burst first if full.
    pub(super) fn push(&mut self, side: Side, m: Mbuf, io: &IoStats) {
        if self.sides[side].tx.len() == BURST {
            self.flush(side, io);
        }
        if let Err(m) = self.sides[side].tx.push(m) {
            io.tx_errors.inc();
            drop(m);
        }
    }

    /// Queues a frame toward the kernel's exception interface.
    fn push_exception(&mut self, m: Mbuf, io: &IoStats) {
        if self.exception_tx.len() == BURST {
            self.flush_exception(io);
        }
        io.exception_in.inc();
        if let Err(m) = self.exception_tx.push(m) {
            io.tx_errors.inc();
            drop(m);
        }
    }

    /// Sends the exception burst to the kernel; what it does not take is dropped, counted.
    fn flush_exception(&mut self, io: &IoStats) {
        let Some(port) = &self.exception else { return };
        if self.exception_tx.is_empty() {
            return;
        }
        port.tx_burst(0, &mut self.exception_tx);
        let left = self.exception_tx.len();
        if left > 0 {
            io.tx_errors.add(left as u64);
            for m in self.exception_tx.drain() {
                drop(m);
            }
        }
    }

    /// Sends `side`'s burst; what the port does not take is dropped, counted.
    fn flush(&mut self, side: Side, io: &IoStats) {
        let (port, s) = (&self.ports[side], &mut self.sides[side]);
        if s.tx.is_empty() {
            return;
        }
        let sent = port.tx_burst(0, &mut s.tx);
        io.tx_packets.add(sent as u64);
        let left = s.tx.len();
        if left > 0 {
            io.tx_errors.add(left as u64);
            for m in s.tx.drain() {
                drop(m);
            }
        }
    }
}
