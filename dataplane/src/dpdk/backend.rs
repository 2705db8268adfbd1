//! The DPDK backend: one poll-mode lcore owns both ports.
//!
//! ```text
//!  priv port ─rx burst─┐                                  ┌─tx burst─► priv port
//!                      ├─ classify: ARP ─ reply in place ─┤
//!  pub port ──rx burst─┤           ICMP echo ─ reply ─────┤─tx burst─► pub port
//!                      │           RTP ─ verdict ─ readdress in place, other port
//!                      │           SIP ─ copy ─► rx_ring ─► SIP engine thread
//!                      └───────────────────── tx_ring ◄─┘  (same engine as sockets)
//! ```
//! Relayed RTP never leaves its mbuf: headers are rewritten where they are
//! and the mbuf goes out of the other port. The SIP engine, its rings and the
//! relay table are the socket backend's; only the I/O differs.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{launch, wait, Burst, DpdkError, Eal, Mbuf, Mempool, Port};
use crate::engine::{EngineConfig, Outgoing, SipEngine};
use crate::media::{MediaCmd, RelayTable, Verdict};
use crate::net::{self, ArpCache, Kind, Mac};
use crate::routing::RouteSnapshot;
use crate::side::Side;
use crate::socket::{start_engine, Backend, Datagram, Shared};
use crate::stats::IoStats;

/// Settings of the DPDK backend.
#[derive(Debug, Clone)]
pub struct DpdkSettings {
    pub eal_args: Vec<String>,
    /// DPDK port ids of the private and the public side.
    pub ports: [u16; 2],
    /// Prefix length of each side's subnet.
    pub prefixes: [u8; 2],
    /// Router of each side; `None`: every destination is on-link.
    pub next_hops: [Option<Ipv4Addr>; 2],
    /// Sleep after 1,024 empty polls in a row (0: never).
    pub idle_sleep_us: u32,
    pub engine: EngineConfig,
    /// Core of the SIP engine thread; `None`: core 0, EAL's main lcore (the
    /// poll loop owns the first worker lcore's core).
    pub sip_core: Option<usize>,
    pub ring_size: usize,
}

/// Why the backend did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    #[error("{0}")]
    Config(String),
    #[error("starting the SIP engine thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Datagram buffers handed to the engine (SIP over UDP in one frame).
const SIP_BUF: usize = 2048;
/// SIP datagrams waiting for their next hop's MAC, and for how long.
const PENDING_MAX: usize = 1024;
const PENDING_MS: u64 = 1000;
/// An unanswered ARP request is repeated after this long.
const ARP_RETRY_MS: u64 = 200;

/// Starts EAL, both ports, the SIP engine thread and the poll loop on the
/// first worker lcore.
pub fn start(s: DpdkSettings, snapshot: Arc<RouteSnapshot>) -> Result<Backend, StartError> {
    let eal = Eal::init(&s.eal_args)?;
    let Some(&lcore) = eal.workers().first() else {
        return Err(StartError::Config(
            "dataplane.dpdk.eal_args: EAL has no worker lcore for the poll loop (give two cores, e.g. \"-l\", \"0,1\")".into(),
        ));
    };
    let media = s.engine.media.ok_or_else(|| {
        StartError::Config("the DPDK backend relays media: [media] must be set".into())
    })?;
    let sip = s.engine.sip.0;
    for (side, addr) in s.engine.sip.iter() {
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
    let [private_port, public_port] = s.ports;
    let mut ports = [
        Port::by_id(&eal, private_port)?,
        Port::by_id(&eal, public_port)?,
    ];
    let mut macs = [[0u8; 6]; 2];
    for (i, p) in ports.iter_mut().enumerate() {
        p.start(1, 1024, &pool)?;
        // Frames for other hosts on the segment are ours to ignore, not the NIC's.
        let _ = p.set_promiscuous(true);
        if let Some(m) = macs.get_mut(i) {
            *m = p.mac()?;
        }
    }
    let shared = Arc::new(Shared::new(s.ring_size));
    for _ in 0..s.ring_size {
        let _ = shared.free.push(vec![0u8; SIP_BUF]);
    }
    let engine = SipEngine::new(s.engine.clone(), snapshot, shared.engine.clone());
    let to_poll = shared.clone();
    let engine_thread = start_engine(engine, &shared, s.sip_core.or(Some(0)), move || {
        move |out: &mut Vec<Outgoing>| {
            for o in out.drain(..) {
                if to_poll.tx_ring.push(o).is_err() {
                    to_poll.io.tx_errors.inc();
                }
            }
        }
    })?;
    let (min, max) = media.port_span();
    let sides = {
        let side = |((addr, prefix), next_hop), mac| {
            let arp = ArpCache::new(1024, 300_000);
            SideIo::new(
                vec![*SocketAddrV4::ip(&addr)],
                addr.port(),
                prefix,
                next_hop,
                mac,
                arp,
            )
        };
        let [a, b] = sip;
        let [pa, pb] = s.prefixes;
        let [na, nb] = s.next_hops;
        let [ma, mb] = macs;
        [side(((a, pa), na), ma), side(((b, pb), nb), mb)]
    };
    let mut poller = Poller::new(
        ports,
        pool,
        shared.clone(),
        sides,
        RelayTable::new(min, max),
    );
    poller.media_timeout = media.timeout;
    poller.idle_sleep = std::time::Duration::from_micros(u64::from(s.idle_sleep_us));
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
    Ok(Backend::new(
        "dpdk",
        shared,
        engine_thread,
        Vec::new(),
        Some(on_stop),
    ))
}

impl SideIo {
    /// `ips[0]` is the SIP (and first media) address.
    fn new(
        ips: Vec<Ipv4Addr>,
        sip_port: u16,
        prefix: u8,
        next_hop: Option<Ipv4Addr>,
        mac: Mac,
        arp: ArpCache,
    ) -> SideIo {
        SideIo {
            ip: ips.first().copied().unwrap_or(Ipv4Addr::UNSPECIFIED),
            ips,
            sip_port,
            prefix,
            next_hop,
            mac,
            arp,
            asked: Vec::with_capacity(64),
            tx: Burst::default(),
        }
    }
}

/// One port's addressing and output.
struct SideIo {
    /// The SIP (and first media) address.
    ip: Ipv4Addr,
    /// Every address of the port: lane i of the relay table is `ips[i]`.
    ips: Vec<Ipv4Addr>,
    sip_port: u16,
    prefix: u8,
    next_hop: Option<Ipv4Addr>,
    mac: Mac,
    arp: ArpCache,
    /// Next hops we asked for lately: (ip, when).
    asked: Vec<(Ipv4Addr, u64)>,
    tx: Burst,
}

struct Poller {
    /// Declared before `pool`: dropped (stopped) first.
    ports: [Port; 2],
    pool: Mempool,
    shared: Arc<Shared>,
    sides: [SideIo; 2],
    table: RelayTable,
    /// SIP waiting for ARP: (datagram, deadline).
    pending: VecDeque<(Outgoing, u64)>,
    media_timeout: u64,
    idle_sleep: std::time::Duration,
    /// IPv4 reassembly for SIP over UDP larger than the MTU.
    reasm: net::Reassembler,
    /// IPv4 id of our fragmented datagrams.
    ip_id: u16,
}

fn index(side: Side) -> usize {
    match side {
        Side::Private => 0,
        Side::Public => 1,
    }
}

const SIDES: [Side; 2] = [Side::Private, Side::Public];

impl Poller {
    /// A poll loop over started `ports`: no media timeout and pure busy
    /// polling until the caller says otherwise.
    fn new(
        ports: [Port; 2],
        pool: Mempool,
        shared: Arc<Shared>,
        sides: [SideIo; 2],
        table: RelayTable,
    ) -> Poller {
        Poller {
            ports,
            pool,
            shared,
            sides,
            table,
            pending: VecDeque::with_capacity(PENDING_MAX),
            media_timeout: u64::MAX,
            idle_sleep: std::time::Duration::ZERO,
            reasm: net::Reassembler::new(64, 2_000),
            ip_id: 0,
        }
    }

    fn run(&mut self) {
        let start = Instant::now();
        let mut next_scan = 1_000;
        let mut rx = Burst::default();
        let io = self.shared.io.clone();
        let mut idle_polls = 0u32;
        let (mut polls, mut busy_polls) = (0u64, 0u64);
        while !self.shared.quit.load(Ordering::Relaxed) {
            let now = start.elapsed().as_millis() as u64;
            let mut busy = false;
            while let Some(mut cmd) = self.shared.media_cmds.pop() {
                if let MediaCmd::Install(stream) = &mut cmd {
                    stream.last_active = now;
                }
                if let Some(record) = self.table.apply(cmd, |_| {}) {
                    self.shared.engine.record(*record);
                }
                busy = true;
            }
            let mut sip_in = false;
            for (i, side) in SIDES.into_iter().enumerate() {
                let n = self.ports.get(i).map_or(0, |p| p.rx_burst(0, &mut rx));
                if n == 0 {
                    continue;
                }
                busy = true;
                io.rx_packets.add(n as u64);
                for m in rx.drain() {
                    sip_in |= self.handle(side, m, now, &io);
                }
            }
            if sip_in {
                self.shared.wake_engine();
            }
            // What waited for ARP goes before newer SIP to the same hop.
            self.retry_pending(now, &io);
            while let Some(o) = self.shared.tx_ring.pop() {
                busy = true;
                self.send_sip(o, now, &io);
            }
            for i in 0..2 {
                self.flush(i, &io);
            }
            // Poll counts are plain locals, published once a second.
            polls += 1;
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
                self.scan(now);
            }
        }
        io.polls.set(polls);
        io.busy_polls.set(busy_polls);
    }

    /// One received frame; `true` when it was SIP handed to the engine.
    fn handle(&mut self, side: Side, mut m: Mbuf, now: u64, io: &IoStats) -> bool {
        let i = index(side);
        let Some(s) = self.sides.get_mut(i) else {
            return false;
        };
        // Promiscuous ports see frames for other hosts: ours or broadcast only.
        let to = m.data().get(..6);
        if to != Some(&s.mac[..]) && to != Some(&net::BROADCAST[..]) {
            if let Some(c) = io.dropped.get(net::Reason::NotForUs as usize) {
                c.inc();
            }
            return false;
        }
        match net::classify(m.data(), &s.ips) {
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
                    self.push(i, m, io);
                }
                false
            }
            Kind::EchoRequest => {
                if net::icmp_echo_reply(m.data_mut()) {
                    io.icmp_echo_replies.inc();
                    self.push(i, m, io);
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
                        if let Some(c) = io.dropped.get(net::Reason::BadChecksum as usize) {
                            c.inc();
                        }
                        return false;
                    }
                    self.to_engine(side, src, m.data().get(off..off + len), io);
                    return true;
                }
                let Some(pkt) = m.data().get(off..off + len) else {
                    return false;
                };
                let lane = s.ips.iter().position(|a| a == dst.ip()).unwrap_or(0) as u8;
                if let Verdict::Relay {
                    side: out,
                    lane: out_lane,
                    port,
                    to,
                } = self.table.verdict((side, lane, dst.port()), src, pkt, now)
                {
                    let o = index(out);
                    let Some(dmac) = self.resolve(o, *to.ip(), now, io) else {
                        io.arp_unresolved.inc();
                        return false;
                    };
                    let Some(os) = self.sides.get(o) else {
                        return false;
                    };
                    let ip = os.ips.get(usize::from(out_lane)).copied().unwrap_or(os.ip);
                    let from = SocketAddrV4::new(ip, port);
                    if net::readdress(m.data_mut(), os.mac, dmac, from, to) {
                        self.push(o, m, io);
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
                if let Some(c) = io.dropped.get(reason as usize) {
                    c.inc();
                }
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
            side,
            src: SocketAddr::V4(src),
            len: payload.len(),
            buf,
        };
        if let Err(d) = self.shared.rx_ring.push(d) {
            io.rx_ring_full.inc();
            let _ = self.shared.free.push(d.buf);
        }
    }

    /// The MAC to send to `ip` from side `i`, asking ARP (rate-limited) when
    /// it is not known.
    fn resolve(&mut self, i: usize, ip: Ipv4Addr, now: u64, io: &IoStats) -> Option<Mac> {
        let s = self.sides.get_mut(i)?;
        let hop = if net::on_link(ip, s.ip, s.prefix) {
            ip
        } else {
            s.next_hop.unwrap_or(ip)
        };
        let known = s.arp.get_aged(hop, now);
        // Past half its lifetime an entry is asked for again while still used,
        // so a busy next hop never expires under its traffic.
        if let Some((mac, age)) = known {
            if age < s.arp.ttl_ms() / 2 {
                return Some(mac);
            }
        }
        let found = known.map(|(mac, _)| mac);
        s.asked
            .retain(|(_, at)| now.saturating_sub(*at) < ARP_RETRY_MS);
        if s.asked.iter().any(|(a, _)| *a == hop) || s.asked.len() >= 64 {
            return found;
        }
        s.asked.push((hop, now));
        let (mac, ours) = (s.mac, s.ip);
        let request = self.pool.alloc().and_then(|mut m| {
            net::arp_request(m.append(60)?, mac, ours, hop)?;
            Some(m)
        });
        if let Some(m) = request {
            io.arp_requests.inc();
            self.push(i, m, io);
        }
        found
    }

    fn send_sip(&mut self, o: Outgoing, now: u64, io: &IoStats) {
        let i = index(o.side);
        let SocketAddr::V4(dst) = o.dst else {
            io.tx_errors.inc();
            return;
        };
        let Some(dmac) = self.resolve(i, *dst.ip(), now, io) else {
            if self.pending.len() < PENDING_MAX {
                self.pending.push_back((o, now + PENDING_MS));
            } else {
                io.arp_unresolved.inc();
            }
            return;
        };
        let Some(s) = self.sides.get(i) else { return };
        let (src, mac) = (SocketAddrV4::new(s.ip, s.sip_port), s.mac);
        let frame_len = net::UDP_HEADERS + o.data.len();
        if frame_len > net::ETH_LEN + net::MTU {
            // SIP over UDP larger than the MTU leaves in IPv4 fragments.
            self.ip_id = self.ip_id.wrapping_add(1);
            let mut frames: [Option<Mbuf>; 48] = std::array::from_fn(|_| None);
            let mut k = 0;
            let pool = &self.pool;
            let done = net::udp_fragments((mac, dmac), src, dst, &o.data, self.ip_id, |f| {
                let m = u16::try_from(f.len()).ok().and_then(|len| {
                    let mut m = pool.alloc()?;
                    m.append(len)?.copy_from_slice(f);
                    Some(m)
                });
                if let Some(slot) = frames.get_mut(k) {
                    *slot = m;
                }
                k += 1;
            });
            if done.is_none() || frames.iter().take(k).any(Option::is_none) || k > frames.len() {
                io.tx_errors.inc();
                return;
            }
            for m in frames.into_iter().flatten() {
                self.push(i, m, io);
            }
            return;
        }
        let built = u16::try_from(frame_len).ok().and_then(|len| {
            let mut m = self.pool.alloc()?;
            net::build_udp(m.append(len)?, mac, dmac, src, dst, &o.data, 0)?;
            Some(m)
        });
        match built {
            Some(m) => self.push(i, m, io),
            // Larger than an mbuf (IP fragmentation is not done yet) or no mbuf.
            None => io.tx_errors.inc(),
        }
    }

    fn retry_pending(&mut self, now: u64, io: &IoStats) {
        for _ in 0..self.pending.len() {
            let Some((o, deadline)) = self.pending.pop_front() else {
                break;
            };
            if now > deadline {
                io.arp_unresolved.inc();
                continue;
            }
            let i = index(o.side);
            let known = match (o.dst, self.sides.get(i)) {
                (SocketAddr::V4(d), Some(s)) => {
                    let hop = if net::on_link(*d.ip(), s.ip, s.prefix) {
                        *d.ip()
                    } else {
                        s.next_hop.unwrap_or(*d.ip())
                    };
                    s.arp.get(hop, now).is_some()
                }
                _ => false,
            };
            if known {
                self.send_sip(o, now, io);
            } else {
                self.pending.push_back((o, deadline));
            }
        }
    }

    /// Once a second: silent streams to the engine, relay counters out.
    fn scan(&mut self, now: u64) {
        let shared = &self.shared;
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
        for (port, c) in self.ports.iter().zip(&shared.io.ports) {
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
        let m = &self.shared.media;
        m.relayed.set(self.table.relayed);
        let [unknown, wrong, nowhere] = self.table.drops;
        m.dropped_unknown_port.set(unknown);
        m.dropped_wrong_source.set(wrong);
        m.dropped_no_destination.set(nowhere);
        m.streams.set(self.table.len() as u64);
    }
}

impl Poller {
    /// Queues a frame on side `i`'s burst, sending the burst first if full.
    fn push(&mut self, i: usize, m: Mbuf, io: &IoStats) {
        let full = self
            .sides
            .get(i)
            .is_some_and(|s| s.tx.len() == super::BURST);
        if full {
            self.flush(i, io);
        }
        if let Some(s) = self.sides.get_mut(i) {
            if let Err(m) = s.tx.push(m) {
                io.tx_errors.inc();
                drop(m);
            }
        }
    }

    /// Sends side `i`'s burst; what the port does not take is dropped, counted.
    fn flush(&mut self, i: usize, io: &IoStats) {
        let (Some(port), Some(s)) = (self.ports.get(i), self.sides.get_mut(i)) else {
            return;
        };
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

/// What [`bench_relay`] measured, with every reason a received frame was
/// not relayed (all zero when the run relayed everything it received).
#[derive(Debug, Clone, Copy, Default)]
pub struct RelayRun {
    pub received: u64,
    pub sent: u64,
    pub seconds: f64,
    pub polls: u64,
    pub busy_polls: u64,
    pub relayed: u64,
    /// Frames dropped before the relay, by [`net::Reason`].
    pub dropped: [u64; net::REASONS],
    /// Packets the relay table refused: unknown port, wrong source, no destination.
    pub relay_drops: [u64; 3],
    pub arp_unresolved: u64,
    pub tx_errors: u64,
}

/// Addresses, MACs and static neighbours of one side for [`bench_relay`].
#[derive(Debug, Clone)]
pub struct BenchSide {
    /// The MAC the side answers to; `None`: the port's own. A replayed
    /// capture's frames are addressed to a MAC the vdev may not have.
    pub mac: Option<Mac>,
    /// The port's addresses: lane i is `ips[i]`.
    pub ips: Vec<Ipv4Addr>,
    pub prefix: u8,
    /// Next hops known without ARP.
    pub neighbours: Vec<(Ipv4Addr, Mac)>,
}

/// The relay ceiling benchmark's harness (`perf/src/bin/dpdk_relay.rs`):
/// the poll loop itself, on the calling lcore, over two started ports, with
/// `streams` installed in a table of `lanes` addresses per side, until
/// `seconds` have passed.
#[doc(hidden)]
pub fn bench_relay(
    ports: [Port; 2],
    pool: Mempool,
    sides: [BenchSide; 2],
    lanes: u8,
    port_range: (u16, u16),
    streams: Vec<crate::media::Stream>,
    seconds: f64,
) -> RelayRun {
    let shared = Arc::new(Shared::new(1024));
    let mut table = RelayTable::with_lanes(lanes, port_range.0, port_range.1);
    for s in streams {
        table.install(s);
    }
    let macs = [
        ports[0].mac().unwrap_or_default(),
        ports[1].mac().unwrap_or_default(),
    ];
    let [a, b] = sides;
    let side = |s: BenchSide, mac: Mac| {
        let mut arp = ArpCache::new(s.neighbours.len() * 2 + 8, u64::MAX);
        for (ip, m) in &s.neighbours {
            arp.learn(*ip, *m, 0);
        }
        SideIo::new(s.ips, 5060, s.prefix, None, s.mac.unwrap_or(mac), arp)
    };
    let [ma, mb] = macs;
    let sides = [side(a, ma), side(b, mb)];
    let mut poller = Poller::new(ports, pool, shared.clone(), sides, table);
    let stopper = shared.clone();
    let timer = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs_f64(seconds));
        stopper.quit.store(true, Ordering::Relaxed);
    });
    let start = Instant::now();
    poller.run();
    let elapsed = start.elapsed().as_secs_f64();
    let _ = timer.join();
    let io = &shared.io;
    RelayRun {
        received: io.rx_packets.get(),
        sent: io.tx_packets.get(),
        seconds: elapsed,
        polls: io.polls.get(),
        busy_polls: io.busy_polls.get(),
        relayed: poller.table.relayed,
        dropped: std::array::from_fn(|i| io.dropped.get(i).map_or(0, |c| c.get())),
        relay_drops: poller.table.drops,
        arp_unresolved: io.arp_unresolved.get(),
        tx_errors: io.tx_errors.get(),
    }
}
