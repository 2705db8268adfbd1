//! The media relay thread of the socket backend.
//!
//! It owns one UDP socket per relay port (bound on the side's media address
//! when the engine first installs a stream there, then kept bound for later
//! calls, up to [`KEEP_IDLE`] idle ones), waits on
//! all of them with epoll, reads each ready socket in `recvmmsg` batches and
//! sends every packet the [`RelayTable`] verdict relays out of the socket of
//! the other end. Stream changes arrive from the SIP engine over a ring.

use std::io::IoSlice;
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::EventFd;
use nix::sys::socket::{sendmmsg, MsgFlags, MultiHeaders, SockaddrIn};

use super::super::Shared;
use super::receive_batch;
use crate::engine::MediaSettings;
use crate::media::{MediaCmd, RelayTable, Verdict};
use crate::side::{BySide, Side};
use crate::stats::{EngineStats, MediaStats};

/// The epoll key of the engine's wake-up eventfd (port keys stay below 2^17).
const WAKE: u64 = u64::MAX;
/// Largest RTP/RTCP datagram we relay whole.
const MEDIA_BUF: usize = 2048;
const MEDIA_BATCH: usize = 32;
/// Relay sockets kept bound after their call, for the next ones: binding,
/// registering and closing four sockets per call cost ~0.19 ms of CPU.
pub const KEEP_IDLE: u64 = 4096;

/// Sockets indexed by (side, port - min).
struct Sockets {
    min: u16,
    by_side: BySide<Vec<Option<UdpSocket>>>,
}

fn key(side: Side, port: u16) -> u64 {
    (side.index() as u64) << 16 | u64::from(port)
}

fn unkey(k: u64) -> (Side, u16) {
    let side = if k >> 16 == 0 {
        Side::Private
    } else {
        Side::Public
    };
    (side, (k & 0xffff) as u16)
}

impl Sockets {
    fn get(&self, side: Side, port: u16) -> Option<&UdpSocket> {
        let off = usize::from(port.checked_sub(self.min)?);
        self.by_side[side].get(off)?.as_ref()
    }

    fn slot(&mut self, side: Side, port: u16) -> Option<&mut Option<UdpSocket>> {
        let off = usize::from(port.checked_sub(self.min)?);
        self.by_side[side].get_mut(off)
    }
}

pub(super) fn relay_loop(settings: MediaSettings, shared: &Shared, wake: &EventFd) {
    let stats = &shared.media;
    let (min, max) = settings.port_span();
    let mut table = RelayTable::new(min, max);
    let n = usize::from(max - min) + 1;
    let mut sockets = Sockets {
        min,
        by_side: BySide::from_fn(|_| (0..n).map(|_| None).collect()),
    };
    let Ok(epoll) = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC) else {
        tracing::error!("media relay: cannot create an epoll instance");
        return;
    };
    let _ = epoll.add(wake, EpollEvent::new(EpollFlags::EPOLLIN, WAKE));
    let mut events = [EpollEvent::empty(); 64];
    let mut bufs: [Vec<u8>; MEDIA_BATCH] = std::array::from_fn(|_| vec![0u8; MEDIA_BUF]);
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(MEDIA_BATCH, None);
    let mut tx_headers = MultiHeaders::<SockaddrIn>::preallocate(MEDIA_BATCH, None);
    let mut got = Vec::with_capacity(MEDIA_BATCH);
    let mut tx: Vec<Tx> = Vec::with_capacity(MEDIA_BATCH);
    let start = Instant::now();
    let mut next_scan = 1_000;
    while !shared.quit.load(Ordering::Relaxed) {
        let now = start.elapsed().as_millis() as u64;
        if now >= next_scan {
            next_scan = now + 1_000;
            shared.engine.answer_media(&table);
            let mut reported = false;
            table.idle(now, settings.timeout, |side, port| {
                if shared.media_idle.push((side, port)).is_err() {
                    stats.commands_dropped.inc();
                }
                reported = true;
            });
            if reported {
                shared.wake_engine();
            }
        }
        let ready = epoll
            .wait(&mut events, EpollTimeout::from(20u16))
            .unwrap_or(0);
        let now = start.elapsed().as_millis() as u64;
        // Stream commands before any packet of this round: the engine sends
        // the SDP that names a port only after queueing its stream.
        while let Some(mut cmd) = shared.media_cmds.pop() {
            if let MediaCmd::Install(stream) = &mut cmd {
                stream.last_active = now;
            }
            if let MediaCmd::Dtmf { side, port, event } = &cmd {
                let to = table.sends_to(*side, *port);
                if let (Some(sock), Some((_, to))) = (sockets.get(*side, *port), to) {
                    for p in event.packets() {
                        match sock.send_to(&p, to) {
                            Ok(_) => stats.dtmf_injected.inc(),
                            Err(_) => stats.tx_errors.inc(),
                        }
                    }
                }
                continue;
            }
            apply(
                cmd,
                &settings,
                &mut table,
                &mut sockets,
                &epoll,
                stats,
                &shared.engine,
            );
        }
        for ev in events.get(..ready).unwrap_or_default() {
            if ev.data() == WAKE {
                let _ = wake.read();
                continue;
            }
            let (side, port) = unkey(ev.data());
            let Some(sock) = sockets.get(side, port) else {
                continue;
            };
            // Drain the socket in batches; what a batch relays leaves in one
            // `sendmmsg` from the socket of the stream's other end.
            loop {
                receive_batch(sock, &mut headers, &mut bufs, &mut got);
                let mut from = None;
                for (slot, &(len, src, _)) in got.iter().enumerate() {
                    let Some(buf) = bufs.get_mut(slot) else {
                        continue;
                    };
                    // One media address per side: everything is on lane 0.
                    // The buffer has room after the packet for an SRTP tag.
                    let (verdict, len) = table.relay_packet((side, 0, port), src, buf, len, now);
                    let pkt = buf.get(..len).unwrap_or_default();
                    if let Verdict::Relay {
                        side: out_side,
                        port: out_port,
                        to,
                        ..
                    } = verdict
                    {
                        let ours = |s: Side, p: u16| SocketAddrV4::new(settings.ip[s], p);
                        shared.engine.capture_media(src, ours(side, port), pkt);
                        shared.engine.capture_rtcp(side, src, ours(side, port), pkt);
                        shared
                            .engine
                            .capture_media(ours(out_side, out_port), to, pkt);
                        let out = (out_side, out_port);
                        if from.is_some_and(|f| f != out) {
                            send_batch(&sockets, from, &mut tx_headers, &bufs, &mut tx, stats);
                        }
                        from = Some(out);
                        tx.push(Tx { slot, len, to });
                    }
                }
                send_batch(&sockets, from, &mut tx_headers, &bufs, &mut tx, stats);
                if got.len() < MEDIA_BATCH {
                    break;
                }
            }
        }
        table.publish(stats);
    }
}

/// One packet to send: where it is in the receive buffers, and to whom.
struct Tx {
    slot: usize,
    len: usize,
    to: SocketAddrV4,
}

/// Sends the packets in `tx` from our socket at `from` in one `sendmmsg`
/// (the rest again if the kernel took only part), then empties `tx`. A
/// full socket buffer drops what is left, counted: media never waits.
fn send_batch<const N: usize>(
    sockets: &Sockets,
    from: Option<(Side, u16)>,
    headers: &mut MultiHeaders<SockaddrIn>,
    bufs: &[Vec<u8>; N],
    tx: &mut Vec<Tx>,
    stats: &MediaStats,
) {
    let Some(sock) = from.and_then(|(side, port)| sockets.get(side, port)) else {
        stats.tx_errors.add(tx.len() as u64);
        tx.clear();
        return;
    };
    let mut pending: &[Tx] = tx;
    while !pending.is_empty() {
        let mut slices: [[IoSlice<'_>; 1]; N] = std::array::from_fn(|_| [IoSlice::new(&[])]);
        let mut addrs: [Option<SockaddrIn>; N] = [None; N];
        let n = pending.len().min(N);
        for ((t, slice), addr) in pending.iter().zip(&mut slices).zip(&mut addrs) {
            let pkt = bufs.get(t.slot).and_then(|b| b.get(..t.len));
            *slice = [IoSlice::new(pkt.unwrap_or_default())];
            *addr = Some(SockaddrIn::from(t.to));
        }
        let sent = sendmmsg(
            sock.as_raw_fd(),
            headers,
            slices.get(..n).unwrap_or_default(),
            addrs.get(..n).unwrap_or_default(),
            [],
            MsgFlags::MSG_DONTWAIT,
        )
        .map(Iterator::count);
        match sent {
            Ok(k) if k > 0 => pending = pending.get(k..).unwrap_or_default(),
            // The first packet cannot go (no route): skip it alone.
            Err(e) if e != Errno::EAGAIN => {
                stats.tx_errors.inc();
                pending = pending.get(1..).unwrap_or_default();
            }
            _ => {
                stats.tx_errors.add(pending.len() as u64);
                break;
            }
        }
    }
    tx.clear();
}

fn apply(
    cmd: MediaCmd,
    settings: &MediaSettings,
    table: &mut RelayTable,
    sockets: &mut Sockets,
    epoll: &Epoll,
    stats: &MediaStats,
    records: &EngineStats,
) {
    if let MediaCmd::Install(stream) = &cmd {
        for end in &stream.ends {
            let Some(slot) = sockets.slot(end.side, end.port) else {
                continue;
            };
            if slot.is_some() {
                // Bound by an earlier call and kept: no bind, no epoll change.
                stats.sockets_idle.dec();
                stats.sockets.inc();
                continue;
            }
            let addr = SocketAddrV4::new(settings.ip[end.side], end.port);
            match UdpSocket::bind(addr).and_then(|s| s.set_nonblocking(true).map(|()| s)) {
                Ok(sock) => {
                    let ev = EpollEvent::new(EpollFlags::EPOLLIN, key(end.side, end.port));
                    if epoll.add(&sock, ev).is_ok() {
                        *slot = Some(sock);
                        stats.sockets.inc();
                    }
                }
                Err(e) => {
                    stats.bind_errors.inc();
                    tracing::warn!(%addr, error = %e, "media relay: cannot bind");
                }
            }
        }
    }
    let record = table.apply(cmd, |stream| {
        for end in &stream.ends {
            let Some(slot) = sockets.slot(end.side, end.port) else {
                continue;
            };
            if slot.is_none() {
                continue;
            }
            stats.sockets.dec();
            if stats.sockets_idle.get() < KEEP_IDLE {
                // Kept bound for the next call on this port (ports are handed
                // out last-freed first); what arrives meanwhile is read and
                // dropped as unknown.
                stats.sockets_idle.inc();
            } else {
                // Closing the socket also removes it from the epoll set.
                *slot = None;
            }
        }
    });
    if let Some(record) = record {
        records.record(*record);
    }
}
