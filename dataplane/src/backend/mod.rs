//! The I/O backends and the pipeline they share.
//!
//! ```text
//!   socket: EngineIo::receive ─┐                         ┌─ sendmmsg (socket)
//!     (recvmmsg, engine thread)├─► Shared.intake ─► engine thread ─► EngineIo::send
//!   dpdk::start ── poll loop ──┘      (engine_thread)    └─ Shared.tx_ring ─► poll loop (DPDK)
//!        relay (socket::relay | the poll loop) ◄── Shared.media_cmds ──┘
//! ```
//! Both backends return a [`Dataplane`]: the same rings ([`Shared`]), the
//! same engine thread, the same relay table; only where packets come from
//! and go to differs. [`socket`] runs anywhere on kernel UDP sockets;
//! `dpdk` (feature `dpdk`) owns two DPDK ports from one poll-mode lcore.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crossbeam_queue::ArrayQueue;

use crate::engine::Outgoing;
use crate::health::HealthCmd;
use crate::media::MediaCmd;
use crate::routing::RouteSnapshot;
use crate::side::Side;
use crate::stats::{EngineStats, IoStats, MediaStats};
use crate::transport::Transport;

#[cfg(feature = "dpdk")]
pub mod dpdk;
mod engine_thread;
pub mod intake;
pub mod socket;

pub use engine_thread::EngineIo;

/// Datagrams per batch (`recvmmsg`/`sendmmsg`, ring minimums).
pub(crate) const BATCH: usize = 32;
/// Stream commands in flight from the engine to the media relay.
const MEDIA_RING: usize = 65_536;
/// SIP messages in flight from the engine to the TCP/TLS stream layer.
const STREAM_RING: usize = 8_192;

/// Why a backend did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Binding a socket or starting a thread.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A setting that cannot work, naming its config key.
    #[error("{0}")]
    Config(String),
    /// A DPDK call failed (EAL, mempool or port setup); the error names the `rte_*` call.
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] crate::dpdk::DpdkError),
}

/// One received datagram in a pooled buffer.
#[derive(Debug)]
pub struct Datagram {
    /// The side whose SIP address it arrived on.
    pub side: Side,
    /// UDP from the backends; TCP or TLS from the control plane's stream
    /// layer ([`Dataplane::inject`]), whose `buf` is then not recycled.
    pub transport: Transport,
    /// The sender's address and port.
    pub src: SocketAddr,
    /// Length in bytes of the datagram (the UDP payload) at the start of `buf`.
    pub len: usize,
    /// The pooled buffer; only `buf[..len]` is the datagram. It goes back to the free ring after
    /// use.
    pub buf: Vec<u8>,
    /// When it entered the engine's intake (ms on the intake's clock; set
    /// by [`intake::Intake::push`]): how long it waited is the overload signal.
    pub queued_ms: u64,
}

/// A callback that wakes another thread's work (it must not block).
pub(crate) use crate::stats::Waker;

/// What a backend's threads share: rings, counters, the quit flag. The
/// packet threads (the socket relay, or the DPDK poll loop), the stream
/// layer and the SIP engine thread meet only here; a full ring is a counted
/// drop.
#[derive(Debug)]
pub struct Shared {
    pub(crate) quit: AtomicBool,
    /// Shutting down: the engine refuses new calls (`Dataplane::drain`).
    pub(crate) draining: AtomicBool,
    /// Received SIP messages toward the engine: two lanes, a share per
    /// source ([`intake`]).
    pub(crate) intake: intake::Intake,
    /// Recycled datagram buffers.
    pub(crate) free: ArrayQueue<Vec<u8>>,
    /// New routing snapshots toward the engine (the newest wins).
    pub(crate) snapshots: ArrayQueue<Arc<RouteSnapshot>>,
    /// Stream changes from the engine to whoever relays media.
    pub(crate) media_cmds: ArrayQueue<MediaCmd>,
    /// Streams the relay found silent for the media timeout: (side, port).
    pub(crate) media_idle: ArrayQueue<(Side, u16)>,
    /// Operators' health requests toward the engine (probe now, set state).
    pub(crate) health_cmds: ArrayQueue<HealthCmd>,
    /// TCP/TLS destinations the stream layer could not reach (or lost).
    pub(crate) transport_errors: ArrayQueue<(Transport, SocketAddr)>,
    /// The control plane's admission verdicts toward the engine (token, verdict).
    pub(crate) admission_verdicts: ArrayQueue<(u64, crate::call::Verdict)>,
    /// The engine thread, for the packet threads to wake it.
    pub(crate) engine_waker: std::sync::OnceLock<thread::Thread>,
    /// An eventfd the engine thread also waits on, for a backend whose
    /// engine waits in `poll` on its own sockets (the socket backend).
    pub(crate) engine_wake_fd: std::sync::OnceLock<Arc<nix::sys::eventfd::EventFd>>,
    /// The engine's output, for a backend that sends from a poll loop.
    #[cfg_attr(not(feature = "dpdk"), allow(dead_code))]
    pub(crate) tx_ring: ArrayQueue<Outgoing>,
    /// The engine's output over TCP/TLS, for the control plane's stream
    /// layer ([`Dataplane::take_stream_output`]); full = counted drop.
    pub(crate) stream_tx: ArrayQueue<Outgoing>,
    /// Called (on the engine thread) after messages were queued on
    /// `stream_tx`: the stream layer wakes its sender. Unset: none runs, and
    /// what goes to TCP/TLS is dropped and counted.
    pub(crate) stream_waker: std::sync::OnceLock<Waker>,
    /// Counters of the packet threads (sockets, or the DPDK ports and their L2/L3 handling).
    pub io: Arc<IoStats>,
    /// Media relay counters.
    pub media: Arc<MediaStats>,
    /// The engine's counters and rings (the relay hands call records on).
    pub(crate) engine: Arc<EngineStats>,
    /// Calls from the journal for the engine to put back
    /// ([`Dataplane::restore`]); taken once by the engine thread when
    /// `restore_pending` says so.
    pub(crate) restore: Mutex<Vec<crate::engine::CallImage>>,
    pub(crate) restore_pending: AtomicBool,
}

impl Shared {
    pub(crate) fn new(ring_size: usize) -> Shared {
        Shared {
            quit: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            intake: intake::Intake::new(ring_size.max(BATCH)),
            free: ArrayQueue::new(ring_size.max(BATCH) + BATCH),
            snapshots: ArrayQueue::new(4),
            media_cmds: ArrayQueue::new(MEDIA_RING),
            media_idle: ArrayQueue::new(MEDIA_RING),
            health_cmds: ArrayQueue::new(1_024),
            transport_errors: ArrayQueue::new(1_024),
            admission_verdicts: ArrayQueue::new(16_384),
            engine_waker: std::sync::OnceLock::new(),
            engine_wake_fd: std::sync::OnceLock::new(),
            tx_ring: ArrayQueue::new(ring_size.max(BATCH)),
            stream_tx: ArrayQueue::new(STREAM_RING),
            stream_waker: std::sync::OnceLock::new(),
            io: Arc::default(),
            media: Arc::default(),
            engine: Arc::new(EngineStats::default()),
            restore: Mutex::new(Vec::new()),
            restore_pending: AtomicBool::new(false),
        }
    }

    /// Wakes the engine thread (new datagrams, idle streams).
    pub(crate) fn wake_engine(&self) {
        if let Some(fd) = self.engine_wake_fd.get() {
            let _ = fd.write(1);
        } else if let Some(t) = self.engine_waker.get() {
            t.unpark();
        }
    }
}

/// A running backend (socket or DPDK), as the control plane holds it: hand
/// it routing snapshots, read its counters, stop it.
pub struct Dataplane {
    shared: Arc<Shared>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Runs once the threads are joined (the DPDK backend waits for its
    /// lcores and releases EAL there).
    on_stop: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The engine's counters and its call event and call record rings, for the control plane.
    pub stats: Arc<EngineStats>,
    /// Which backend runs: `"socket"` or `"dpdk"`.
    pub name: &'static str,
}

impl std::fmt::Debug for Dataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataplane")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Dataplane {
    pub(crate) fn new(
        name: &'static str,
        shared: Arc<Shared>,
        engine: JoinHandle<()>,
        mut threads: Vec<JoinHandle<()>>,
        on_stop: Option<Box<dyn FnOnce() + Send>>,
    ) -> Dataplane {
        threads.push(engine);
        Dataplane {
            stats: shared.engine.clone(),
            shared,
            threads: Mutex::new(threads),
            on_stop: Mutex::new(on_stop),
            name,
        }
    }

    /// I/O counters (the DPDK backend's L2/L3 ones included).
    pub fn io(&self) -> Arc<IoStats> {
        self.shared.io.clone()
    }

    /// Media relay counters.
    pub fn media(&self) -> Arc<MediaStats> {
        self.shared.media.clone()
    }

    /// How full each ring between the threads is now: the backend's
    /// (`rx` toward the engine, `tx` from it on DPDK, `media_cmds`,
    /// `media_idle`, `health_cmds`) and the engine's toward the control
    /// plane ([`EngineStats::rings`](crate::stats::EngineStats::rings)).
    pub fn rings(&self) -> Vec<crate::stats::RingFill> {
        use crate::stats::RingFill;
        let s = &self.shared;
        let mut rings = s.intake.fills().to_vec();
        if self.name == "dpdk" {
            rings.push(RingFill::of("tx", &s.tx_ring));
        }
        rings.extend([
            RingFill::of("stream_tx", &s.stream_tx),
            RingFill::of("media_cmds", &s.media_cmds),
            RingFill::of("media_idle", &s.media_idle),
            RingFill::of("health_cmds", &s.health_cmds),
            RingFill::of("admission_verdicts", &s.admission_verdicts),
        ]);
        rings.extend(self.stats.rings());
        rings
    }

    /// Hands one SIP message that arrived over TCP or TLS (framed by the
    /// control plane's stream layer) to the engine, as if it came on
    /// `side` from `src` (the connection's peer). `false` when the ring to
    /// the engine is full (counted in `rx_ring_full`): the stream layer
    /// drops it, as a socket would.
    pub fn inject(&self, side: Side, transport: Transport, src: SocketAddr, bytes: &[u8]) -> bool {
        let d = Datagram {
            side,
            transport,
            src,
            len: bytes.len(),
            buf: bytes.to_vec(),
            queued_ms: 0,
        };
        if !self
            .shared
            .intake
            .push_counted(d, &self.shared.io, &self.shared.free)
        {
            return false;
        }
        self.shared.wake_engine();
        true
    }

    /// Tells the engine that a TCP/TLS connection to `dst` could not be had
    /// or broke: its requests waiting there fail over or get 503 at once
    /// ([`SipEngine::transport_error`](crate::engine::SipEngine::transport_error)).
    /// `false` when the ring is full (they then end by their timers).
    pub fn transport_failed(&self, transport: Transport, dst: SocketAddr) -> bool {
        let ok = self.shared.transport_errors.push((transport, dst)).is_ok();
        self.shared.wake_engine();
        ok
    }

    /// The next message the engine sends over TCP or TLS, if any.
    pub fn take_stream_output(&self) -> Option<Outgoing> {
        self.shared.stream_tx.pop()
    }

    /// Sets what the engine thread calls after it queued messages for TCP
    /// or TLS (it must not block: wake a task). Only the first call counts.
    pub fn on_stream_output(&self, wake: Box<dyn Fn() + Send + Sync>) {
        let _ = self.shared.stream_waker.set(Waker(wake));
    }

    /// Hands a new routing snapshot to the engine (the oldest queued one is
    /// dropped if the engine has not caught up: only the newest matters).
    pub fn publish(&self, snapshot: Arc<RouteSnapshot>) {
        let _ = self.shared.snapshots.force_push(snapshot);
        self.shared.wake_engine();
    }

    /// Hands the control plane's verdict on the INVITE put aside as `token`
    /// to the engine ([`SipEngine::admission_verdict`](crate::engine::SipEngine::admission_verdict));
    /// `false` when 16,384 are already waiting (the INVITE's deadline then
    /// lets the node's share decide).
    pub fn admission_verdict(&self, token: u64, verdict: crate::call::Verdict) -> bool {
        let queued = self
            .shared
            .admission_verdicts
            .push((token, verdict))
            .is_ok();
        self.shared.wake_engine();
        queued
    }

    /// Hands an operator's health request (probe a gateway now, set its
    /// state) to the engine; `false` when 1,024 are already waiting.
    pub fn health(&self, cmd: HealthCmd) -> bool {
        let queued = self.shared.health_cmds.push(cmd).is_ok();
        self.shared.wake_engine();
        queued
    }

    /// Puts calls from the call journal back into the engine (before any
    /// other message it handles next; see
    /// [`SipEngine::restore`](crate::engine::SipEngine::restore)). Each one
    /// put back counts in `sip.calls_restored`, each refused in
    /// `sip.restore_failed` with a warning naming it.
    pub fn restore(&self, calls: Vec<crate::engine::CallImage>) {
        if let Ok(mut r) = self.shared.restore.lock() {
            r.extend(calls);
        }
        self.shared.restore_pending.store(true, Ordering::Release);
        self.shared.wake_engine();
    }

    /// Starts draining for a shutdown
    /// ([`SipEngine::set_draining`](crate::engine::SipEngine::set_draining)): new
    /// calls are refused 503, calls in progress go on.
    pub fn drain(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        self.shared.wake_engine();
    }

    /// Ends a drain ([`Dataplane::drain`]): new calls are taken again.
    pub fn undrain(&self) {
        self.shared.draining.store(false, Ordering::Relaxed);
        self.shared.wake_engine();
    }

    /// Stops both threads and waits for them (once; later calls return at once).
    pub fn stop(&self) {
        self.shared.quit.store(true, Ordering::Relaxed);
        self.shared.wake_engine();
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
