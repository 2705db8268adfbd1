//! The socket backend: kernel UDP with batched I/O (`recvmmsg`/`sendmmsg`).
//!
//! One RX thread polls the private and public SIP sockets and moves each
//! datagram, in a recycled buffer, over a bounded ring to the SIP engine
//! thread (pinned with `core_affinity`). The engine thread also takes new
//! routing snapshots from their ring between batches, fires timers, and sends
//! its output with one `sendmmsg` per side. A full ring is a counted drop,
//! never a wait.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn,
};

use crate::engine::{EngineConfig, Outgoing, SipEngine};
use crate::media::MediaCmd;
use crate::routing::RouteSnapshot;
use crate::side::{BySide, Side};
use crate::stats::{EngineStats, IoStats, MediaStats};

mod media;

/// The largest UDP payload.
const BUF_SIZE: usize = 65_536;
/// Datagrams per `recvmmsg`/`sendmmsg` call.
const BATCH: usize = 32;
/// Stream commands in flight from the engine to the media relay.
const MEDIA_RING: usize = 65_536;
/// Datagrams the engine handles before it sends and looks at timers.
const MAX_PER_TURN: usize = 1024;

/// Settings of the socket backend.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub engine: EngineConfig,
    /// Core to pin the SIP engine thread to; `None`: the last core.
    pub sip_core: Option<usize>,
    /// Capacity of the RX ring toward the engine.
    pub ring_size: usize,
}

/// One received datagram in a pooled buffer.
#[derive(Debug)]
pub struct Datagram {
    pub side: Side,
    pub src: SocketAddr,
    pub len: usize,
    pub buf: Vec<u8>,
}

/// What the threads of the backend share: rings, counters, the quit flag.
/// Every backend's packet threads and the SIP engine thread share these.
#[derive(Debug)]
pub struct Shared {
    pub(crate) quit: AtomicBool,
    /// Received SIP datagrams toward the engine.
    pub(crate) rx_ring: ArrayQueue<Datagram>,
    /// Recycled datagram buffers.
    pub(crate) free: ArrayQueue<Vec<u8>>,
    snapshots: ArrayQueue<Arc<RouteSnapshot>>,
    /// Stream changes from the engine to whoever relays media.
    pub(crate) media_cmds: ArrayQueue<MediaCmd>,
    /// Streams the relay found silent for the media timeout: (side, port).
    pub(crate) media_idle: ArrayQueue<(Side, u16)>,
    /// The engine thread, for the packet threads to wake it.
    pub(crate) engine_waker: std::sync::OnceLock<thread::Thread>,
    /// Wakes the socket relay out of its epoll wait when commands arrive.
    media_wake: Option<EventFd>,
    /// The engine's output, for a backend that sends from a poll loop.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) tx_ring: ArrayQueue<Outgoing>,
    pub io: Arc<IoStats>,
    pub media: Arc<MediaStats>,
    /// The engine's counters and rings (the relay hands call records on).
    pub(crate) engine: Arc<EngineStats>,
}

impl Shared {
    pub(crate) fn new(ring_size: usize) -> Shared {
        Shared {
            quit: AtomicBool::new(false),
            rx_ring: ArrayQueue::new(ring_size.max(BATCH)),
            free: ArrayQueue::new(ring_size.max(BATCH) + BATCH),
            snapshots: ArrayQueue::new(4),
            media_cmds: ArrayQueue::new(MEDIA_RING),
            media_idle: ArrayQueue::new(MEDIA_RING),
            media_wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).ok(),
            engine_waker: std::sync::OnceLock::new(),
            tx_ring: ArrayQueue::new(ring_size.max(BATCH)),
            io: Arc::default(),
            media: Arc::default(),
            engine: Arc::new(EngineStats::default()),
        }
    }

    /// Wakes the engine thread (new datagrams, idle streams).
    pub(crate) fn wake_engine(&self) {
        if let Some(t) = self.engine_waker.get() {
            t.unpark();
        }
    }
}

/// What the control plane keeps of a running backend (socket or DPDK).
pub struct Backend {
    shared: Arc<Shared>,
    engine_thread: thread::Thread,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Runs once the threads are joined (the DPDK backend waits for its
    /// lcores and releases EAL there).
    on_stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    pub stats: Arc<EngineStats>,
    pub name: &'static str,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Starts the SIP engine thread (pinned to `core`, or the last core) that
/// takes datagrams from `shared` and hands its output to the sender that
/// `make_send` builds on that thread.
pub(crate) fn start_engine<F: FnMut(&mut Vec<Outgoing>)>(
    engine: SipEngine,
    shared: &Arc<Shared>,
    core: Option<usize>,
    make_send: impl FnOnce() -> F + Send + 'static,
) -> io::Result<JoinHandle<()>> {
    let core = pick_core(core);
    let shared2 = shared.clone();
    let handle = thread::Builder::new()
        .name("sip-engine".into())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            engine_loop(engine, &shared2, make_send());
        })?;
    let _ = shared.engine_waker.set(handle.thread().clone());
    Ok(handle)
}

impl Backend {
    pub(crate) fn new(
        name: &'static str,
        shared: Arc<Shared>,
        engine: JoinHandle<()>,
        mut threads: Vec<JoinHandle<()>>,
        on_stop: Option<Box<dyn FnOnce() + Send>>,
    ) -> Backend {
        let engine_thread = engine.thread().clone();
        threads.push(engine);
        Backend {
            stats: shared.engine.clone(),
            shared,
            engine_thread,
            threads: Mutex::new(threads),
            on_stop: Mutex::new(on_stop),
            name,
        }
    }

    /// Socket backend: binds both SIP sockets and starts the RX, engine and
    /// (with media settings) media relay threads.
    pub fn start_socket(cfg: SocketConfig, snapshot: Arc<RouteSnapshot>) -> io::Result<Backend> {
        let sockets = BySide::new(
            bind(cfg.engine.sip[Side::Private])?,
            bind(cfg.engine.sip[Side::Public])?,
        );
        let tx_sockets = BySide::new(
            sockets[Side::Private].try_clone()?,
            sockets[Side::Public].try_clone()?,
        );
        let shared = Arc::new(Shared::new(cfg.ring_size));
        let stats = shared.engine.clone();
        let mut threads = Vec::new();
        if let Some(settings) = cfg.engine.media {
            let shared = shared.clone();
            threads.push(
                thread::Builder::new()
                    .name("media-relay".into())
                    .spawn(move || crate::socket::media::relay_loop(settings, &shared))?,
            );
        }
        let engine = SipEngine::new(cfg.engine.clone(), snapshot, stats);
        let io = shared.io.clone();
        let engine_thread = start_engine(engine, &shared, cfg.sip_core, move || {
            let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
            move |out: &mut Vec<Outgoing>| send_all(&tx_sockets, &mut headers, out, &io)
        })?;
        let waker = engine_thread.thread().clone();
        let rx_thread = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("sip-rx".into())
                .spawn(move || {
                    rx_loop(sockets, &shared, &waker);
                })?
        };
        threads.push(rx_thread);
        Ok(Backend::new("socket", shared, engine_thread, threads, None))
    }

    pub fn io(&self) -> Arc<IoStats> {
        self.shared.io.clone()
    }

    pub fn media(&self) -> Arc<MediaStats> {
        self.shared.media.clone()
    }

    /// Hands a new routing snapshot to the engine (the oldest queued one is
    /// dropped if the engine has not caught up: only the newest matters).
    pub fn publish(&self, snapshot: Arc<RouteSnapshot>) {
        let _ = self.shared.snapshots.force_push(snapshot);
        self.engine_thread.unpark();
    }

    /// Stops both threads and waits for them (once; later calls return at once).
    pub fn stop(&self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        self.engine_thread.unpark();
        let threads = match self.threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(_) => return,
        };
        for t in threads {
            let _ = t.join();
        }
        if let Some(f) = self.on_stop.lock().ok().and_then(|mut f| f.take()) {
            f();
        }
    }
}

fn bind(addr: SocketAddrV4) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind SIP socket {addr}: {e}")))?;
    s.set_nonblocking(true)?;
    // Bigger kernel buffers absorb bursts; failure to grow them is harmless.
    let _ = setsockopt(&s, sockopt::RcvBuf, &(4 << 20));
    let _ = setsockopt(&s, sockopt::SndBuf, &(4 << 20));
    Ok(s)
}

fn pick_core(wanted: Option<usize>) -> Option<core_affinity::CoreId> {
    let cores = core_affinity::get_core_ids()?;
    match wanted {
        Some(id) => cores.into_iter().find(|c| c.id == id),
        None => cores.last().copied(),
    }
}

fn rx_loop(sockets: BySide<UdpSocket>, shared: &Shared, waker: &thread::Thread) {
    let (quit, ring, free, stats) = (&shared.quit, &shared.rx_ring, &shared.free, &shared.io);
    let mut bufs: [Vec<u8>; BATCH] = std::array::from_fn(|_| vec![0u8; BUF_SIZE]);
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut got = Vec::with_capacity(BATCH);
    while !quit.load(Ordering::Relaxed) {
        let mut fds = [
            PollFd::new(sockets[Side::Private].as_fd(), PollFlags::POLLIN),
            PollFd::new(sockets[Side::Public].as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) <= 0 {
            continue;
        }
        let ready: [bool; 2] = [0, 1].map(|i| {
            fds.get(i)
                .and_then(|f| f.revents())
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        });
        for (side, sock) in sockets.iter() {
            if !ready.get(side.index()).copied().unwrap_or(false) {
                continue;
            }
            // Drain the socket in batches.
            loop {
                receive_batch(sock, &mut headers, &mut bufs, &mut got);
                if got.is_empty() {
                    break;
                }
                let n = got.len();
                for (slot, &(len, src, truncated)) in got.iter().enumerate() {
                    stats.rx_packets.inc();
                    if truncated {
                        stats.rx_truncated.inc();
                        continue;
                    }
                    let Some(buf) = bufs.get_mut(slot) else {
                        continue;
                    };
                    let fresh = free.pop().unwrap_or_else(|| vec![0u8; BUF_SIZE]);
                    let buf = std::mem::replace(buf, fresh);
                    if let Err(d) = ring.push(Datagram {
                        side,
                        src: SocketAddr::V4(src),
                        len,
                        buf,
                    }) {
                        stats.rx_ring_full.inc();
                        let _ = free.push(d.buf);
                    }
                }
                waker.unpark();
                if n < BATCH {
                    break;
                }
            }
        }
    }
}

/// One `recvmmsg` into `bufs`: `got` gets (length, source, truncated) per
/// datagram received. Nothing is allocated: the I/O vectors live on the stack.
pub(crate) fn receive_batch<B: AsMut<[u8]>, const N: usize>(
    sock: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    bufs: &mut [B; N],
    got: &mut Vec<(usize, SocketAddrV4, bool)>,
) {
    got.clear();
    let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b.as_mut())]);
    if let Ok(results) = recvmmsg(
        sock.as_raw_fd(),
        headers,
        iovs.iter_mut(),
        MsgFlags::MSG_DONTWAIT,
        None,
    ) {
        got.extend(results.map(|r| {
            let src = r
                .address
                .map_or(SocketAddrV4::new([0, 0, 0, 0].into(), 0), Into::into);
            (r.bytes, src, r.flags.contains(MsgFlags::MSG_TRUNC))
        }));
    }
}

fn engine_loop(mut engine: SipEngine, shared: &Shared, mut send: impl FnMut(&mut Vec<Outgoing>)) {
    let (quit, ring, free, snapshots) = (
        &shared.quit,
        &shared.rx_ring,
        &shared.free,
        &shared.snapshots,
    );
    let mut media_cmds: Vec<MediaCmd> = Vec::new();
    let start = Instant::now();
    let mut out: Vec<Outgoing> = Vec::with_capacity(256);
    let mut skipped_ticks = 0u32;
    while !quit.load(Ordering::Relaxed) {
        while let Some(s) = snapshots.pop() {
            engine.set_snapshot(s);
        }
        let now = start.elapsed().as_millis() as u64;
        let mut handled = 0;
        let mut drained = false;
        while handled < MAX_PER_TURN {
            let Some(d) = ring.pop() else {
                drained = true;
                break;
            };
            engine.handle(
                now,
                d.side,
                d.src,
                d.buf.get(..d.len).unwrap_or_default(),
                &mut out,
            );
            let _ = free.push(d.buf);
            handled += 1;
        }
        // Timers fire once what already arrived is handled: after a stall, a
        // queued answer must stop a retransmission rather than race it.
        if drained || skipped_ticks >= 8 {
            engine.tick(now, &mut out);
            while let Some((side, port)) = shared.media_idle.pop() {
                engine.media_idle(side, port, &mut out);
            }
            skipped_ticks = 0;
        } else {
            skipped_ticks += 1;
        }
        // Streams first, then the SIP that announces them: the relay is
        // ready before a peer can send to a port it just learned.
        engine.take_media_commands(&mut media_cmds);
        if !media_cmds.is_empty() {
            for cmd in media_cmds.drain(..) {
                if shared.media_cmds.push(cmd).is_err() {
                    shared.media.commands_dropped.inc();
                }
            }
            if let Some(wake) = &shared.media_wake {
                let _ = wake.write(1);
            }
        }
        if !out.is_empty() {
            send(&mut out);
            out.clear();
        }
        if handled == 0 {
            let wait = engine
                .next_timer()
                .map_or(50, |t| t.saturating_sub(now))
                .clamp(1, 50);
            thread::park_timeout(Duration::from_millis(wait));
        }
    }
}

/// Sends everything in `out`, grouped per side, `BATCH` datagrams a call.
fn send_all(
    sockets: &BySide<UdpSocket>,
    headers: &mut MultiHeaders<SockaddrIn>,
    out: &mut Vec<Outgoing>,
    stats: &IoStats,
) {
    for (side, sock) in sockets.iter() {
        let batch: Vec<&Outgoing> = out.iter().filter(|o| o.side == side).collect();
        let mut pending: &[&Outgoing] = &batch;
        let mut stalls = 0;
        while !pending.is_empty() {
            let chunk = pending.get(..BATCH.min(pending.len())).unwrap_or_default();
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|o| [IoSlice::new(&o.data)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = chunk
                .iter()
                .map(|o| match o.dst {
                    SocketAddr::V4(a) => Some(SockaddrIn::from(a)),
                    SocketAddr::V6(_) => None,
                })
                .collect();
            let result = sendmmsg(
                sock.as_raw_fd(),
                headers,
                slices.iter(),
                addrs,
                [],
                MsgFlags::empty(),
            )
            .map(Iterator::count);
            let sent = match result {
                Ok(n) if n > 0 => n,
                Ok(_) | Err(Errno::EAGAIN) => {
                    // The socket buffer is full: wait a little for room, a few
                    // times, then count the rest as lost (SIP retransmissions
                    // recover them) rather than block the engine.
                    stalls += 1;
                    if stalls > 3 {
                        stats.tx_errors.add(pending.len() as u64);
                        break;
                    }
                    let mut fd = [PollFd::new(sock.as_fd(), PollFlags::POLLOUT)];
                    let _ = poll(&mut fd, PollTimeout::from(5u16));
                    continue;
                }
                // The first datagram cannot go (no route, bad address): skip it.
                Err(_) => {
                    stats.tx_errors.inc();
                    pending = pending.get(1..).unwrap_or_default();
                    continue;
                }
            };
            stats.tx_packets.add(sent as u64);
            pending = pending.get(sent..).unwrap_or_default();
        }
    }
    out.clear();
}
