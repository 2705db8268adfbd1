//! The socket backend: kernel UDP with batched I/O (`recvmmsg`/`sendmmsg`).
//!
//! The SIP engine thread (pinned with `core_affinity`) owns the private and
//! public SIP sockets: at the start of every turn it drains them with
//! `recvmmsg` into the intake (two lanes, a share per source), handles what
//! is there, sends its output with one `sendmmsg` per side, and when idle
//! waits in `poll` on both sockets and an eventfd the other threads write to
//! wake it (TCP/TLS messages, routing snapshots, the relay's idle streams)
//! until its next timer. One thread from socket to socket: no hand-over and
//! no wake-up between a receiving thread and the engine per datagram (at 300
//! calls/s that hand-over was a fifth of the SBC's CPU, perf/README.md). A
//! full intake is a counted drop, never a wait.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::thread;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn,
};

use super::engine_thread::start_engine;
use super::{Datagram, Dataplane, EngineIo, Shared, StartError, BATCH};
use crate::engine::{EngineConfig, Outgoing, SipEngine};
use crate::routing::RouteSnapshot;
use crate::side::{BySide, Side};
use crate::stats::IoStats;
use crate::transport::Transport;

mod relay;

pub use relay::KEEP_IDLE;

/// The largest UDP payload.
const BUF_SIZE: usize = 65_536;
/// IPv4 (no options) and UDP headers in front of a datagram's payload.
const UDP_IP_HEADERS: usize = 28;

/// Settings of the socket backend.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// The SIP engine's settings: our SIP addresses (the sockets bound), timers, media relay,
    /// policy.
    pub engine: EngineConfig,
    /// Core to pin the SIP engine thread to; `None`: the last core.
    pub sip_core: Option<usize>,
    /// Capacity of the RX ring toward the engine.
    pub ring_size: usize,
}

/// Binds both SIP sockets and starts the RX, engine and (with media
/// settings) media relay threads. Fails naming the address it could not bind.
pub fn start(cfg: SocketConfig, snapshot: Arc<RouteSnapshot>) -> Result<Dataplane, StartError> {
    let sockets = BySide::new(
        bind(cfg.engine.sip[Side::Private])?,
        bind(cfg.engine.sip[Side::Public])?,
    );
    let tx_sockets = BySide::new(
        sockets[Side::Private].try_clone()?,
        sockets[Side::Public].try_clone()?,
    );
    let shared = Arc::new(Shared::new(cfg.ring_size));
    // Wakes the relay out of its epoll wait when stream commands arrive.
    let media_wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .map_err(io::Error::from)?;
    let media_wake = Arc::new(media_wake);
    let mut threads = Vec::new();
    if let Some(settings) = cfg.engine.media {
        let (shared, wake) = (shared.clone(), media_wake.clone());
        threads.push(
            thread::Builder::new()
                .name("media-relay".into())
                .spawn(move || relay::relay_loop(settings, &shared, &wake))?,
        );
    }
    let engine = SipEngine::new(cfg.engine.clone(), snapshot, shared.engine.clone());
    let io = shared.io.clone();
    // Wakes the engine out of its poll on the SIP sockets.
    let engine_wake = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)
        .map_err(io::Error::from)?;
    let engine_wake = Arc::new(engine_wake);
    let _ = shared.engine_wake_fd.set(engine_wake.clone());
    let read_cap = cfg.ring_size.max(BATCH);
    let engine_thread = start_engine(engine, &shared, cfg.sip_core, move || SocketIo {
        rx: sockets,
        sockets: tx_sockets,
        headers: MultiHeaders::<SockaddrIn>::preallocate(BATCH, None),
        rx_headers: MultiHeaders::<SockaddrIn>::preallocate(BATCH, None),
        rx_bufs: Box::new(std::array::from_fn(|_| vec![0u8; BUF_SIZE])),
        got: Vec::with_capacity(BATCH),
        read_cap,
        io,
        media_wake,
        engine_wake,
    })?;
    Ok(Dataplane::new(
        "socket",
        shared,
        engine_thread,
        threads,
        None,
    ))
}

/// The engine thread's sockets: `recvmmsg` into the intake, `sendmmsg` per
/// side, `poll` while idle, and the relay's wake-up.
struct SocketIo {
    /// The SIP sockets, read by the engine thread.
    rx: BySide<UdpSocket>,
    /// The same sockets, for sending.
    sockets: BySide<UdpSocket>,
    headers: MultiHeaders<SockaddrIn>,
    rx_headers: MultiHeaders<SockaddrIn>,
    /// One batch of receive buffers (64 KiB each: any UDP datagram whole),
    /// swapped for recycled ones as datagrams go into the intake.
    rx_bufs: Box<[Vec<u8>; BATCH]>,
    got: Vec<(usize, SocketAddrV4, bool)>,
    /// Datagrams read per turn at most (the intake's size): a flood cannot
    /// keep the engine reading instead of handling.
    read_cap: usize,
    io: Arc<IoStats>,
    media_wake: Arc<EventFd>,
    engine_wake: Arc<EventFd>,
}

impl EngineIo for SocketIo {
    fn send(&mut self, out: &mut Vec<Outgoing>) {
        send_all(&self.sockets, &mut self.headers, out, &self.io);
    }

    fn media_changed(&mut self) {
        let _ = self.media_wake.write(1);
    }

    fn receive(&mut self, shared: &Shared) {
        let (intake, free, stats) = (&shared.intake, &shared.free, &self.io);
        let mut read = 0;
        for (side, sock) in self.rx.iter() {
            // Drain the socket in batches, up to the cap for this turn.
            while read < self.read_cap {
                receive_batch(sock, &mut self.rx_headers, &mut self.rx_bufs, &mut self.got);
                if self.got.is_empty() {
                    break;
                }
                let n = self.got.len();
                read += n;
                for (slot, &(len, src, truncated)) in self.got.iter().enumerate() {
                    stats.rx_packets.inc();
                    if truncated {
                        stats.rx_truncated.inc();
                        continue;
                    }
                    let Some(buf) = self.rx_bufs.get_mut(slot) else {
                        continue;
                    };
                    let fresh = free.pop().unwrap_or_else(|| vec![0u8; BUF_SIZE]);
                    let buf = std::mem::replace(buf, fresh);
                    let d = Datagram {
                        transport: Transport::Udp,
                        side,
                        src: SocketAddr::V4(src),
                        len,
                        buf,
                        queued_ms: 0,
                    };
                    intake.push_counted(d, stats, free);
                }
                if n < BATCH {
                    break;
                }
            }
        }
    }

    fn wait(&mut self, timeout: std::time::Duration) {
        let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
        let mut fds = [
            PollFd::new(self.rx[Side::Private].as_fd(), PollFlags::POLLIN),
            PollFd::new(self.rx[Side::Public].as_fd(), PollFlags::POLLIN),
            PollFd::new(self.engine_wake.as_fd(), PollFlags::POLLIN),
        ];
        if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0
            && fds
                .get(2)
                .and_then(|f| f.revents())
                .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            // Reset the counter: the wake-up is taken.
            let _ = self.engine_wake.read();
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

/// One `recvmmsg` into `bufs`: `got` gets (length, source, truncated) per
/// datagram received. Nothing is allocated: the I/O vectors live on the stack.
pub(super) fn receive_batch<B: AsMut<[u8]>, const N: usize>(
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

/// Sends everything in `out`, grouped per side, `BATCH` datagrams a call.
fn send_all(
    sockets: &BySide<UdpSocket>,
    headers: &mut MultiHeaders<SockaddrIn>,
    out: &mut Vec<Outgoing>,
    stats: &IoStats,
) {
    // The kernel fragments what exceeds the MTU: counted, as on DPDK.
    let oversized = out
        .iter()
        .filter(|o| o.data.len() + UDP_IP_HEADERS > crate::net::MTU)
        .count();
    stats.tx_fragmented.add(oversized as u64);
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
