//! `rtpload`: an RTP load generator and sink for measuring a media relay.
//!
//! Two endpoints, one on each side of the relay, each with ONE media socket
//! that carries every flow (the relay tells flows apart by its own ports, we
//! by the SSRC), so all media I/O is batched: `sendmmsg` of one tick's due
//! packets across flows, `recvmmsg` on the receive side. Every packet is a
//! 172-byte PCMA-sized RTP packet whose SSRC names the flow and whose payload
//! starts with the CLOCK_MONOTONIC send time (shared by all namespaces of one
//! host), so the receiver measures one-way latency into an hdrhistogram and
//! loss from sequence numbers.
//!
//! Calls are set up through the SBC with plain SIP (`uac` sends INVITEs, `uas`
//! answers them) or, for a reference relay without signalling, `--direct`
//! sends flow i to a fixed address and port base + 2i (see `forward`).
//!
//! The `uac` prints `RTP START` and `RTP END` lines on stdout around the
//! media phase (for the driver to sample the relay's CPU), then one JSON
//! report; the `uas` prints its JSON report when it ends.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut, Write};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{
    recvmmsg, sendmmsg, setsockopt, sockopt, MsgFlags, MultiHeaders, SockaddrIn,
};
use nix::time::{clock_gettime, ClockId};
use sbc_dataplane::media::rtp::{self, RtpPacket};
use sbc_dataplane::media::sdp::SdpRepr;
use sbc_dataplane::sip::message::{SipMessage, StartLine};
use sbc_dataplane::sip::Method;
use sbc_perf::sipgen::{ok_200, sdp, Dialog, Uac};
use serde_json::json;

const PKT: usize = 172;
const BATCH: usize = 64;
const UAC_SSRC: u32 = 0x1000_0000;
const UAS_SSRC: u32 = 0x2000_0000;

#[derive(Debug, Parser)]
#[command(about = "RTP load generator and sink (perf/README.md)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Place calls, send and receive their RTP, hang up, report.
    Uac {
        /// Our SIP address.
        #[arg(long)]
        sip: SocketAddrV4,
        /// The SBC's SIP address on our side.
        #[arg(long)]
        sbc: SocketAddrV4,
        /// Our media socket (every flow).
        #[arg(long)]
        media: SocketAddrV4,
        #[arg(long, default_value_t = 100)]
        calls: u32,
        /// Call set-up rate.
        #[arg(long, default_value_t = 200)]
        cps: u32,
        /// Packets per second per flow (50: 20 ms audio).
        #[arg(long, default_value_t = 50)]
        pps: u32,
        /// Length of the media phase.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// No SIP: flow i goes to this address with port + 2i.
        #[arg(long)]
        direct: Option<SocketAddrV4>,
    },
    /// Answer calls (any number), send and receive their RTP, report at the end.
    Uas {
        #[arg(long)]
        sip: SocketAddrV4,
        #[arg(long)]
        media: SocketAddrV4,
        #[arg(long, default_value_t = 50)]
        pps: u32,
        /// Stop after this long.
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
        /// No SIP: `calls` flows to this address with port + 2i, from the start.
        #[arg(long)]
        direct: Option<SocketAddrV4>,
        #[arg(long, default_value_t = 100)]
        calls: u32,
    },
    /// The reference relay: a minimal socket forwarder with the relay's I/O
    /// pattern (epoll, recvmmsg, sendmmsg), no session table: port P on
    /// `a` forwards to `peer_b` from port P on `b`, and back.
    Forward {
        #[arg(long)]
        a: Ipv4Addr,
        #[arg(long)]
        b: Ipv4Addr,
        #[arg(long)]
        port: u16,
        #[arg(long, default_value_t = 100)]
        flows: u16,
        #[arg(long)]
        peer_a: SocketAddrV4,
        #[arg(long)]
        peer_b: SocketAddrV4,
        #[arg(long, default_value_t = 60.0)]
        seconds: f64,
    },
}

fn mono_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// What one endpoint sends: a destination per flow, the sequence counters.
struct Flows {
    dst: Vec<Option<SocketAddrV4>>,
    seq: Vec<u16>,
    ssrc_base: u32,
}

/// What one endpoint received.
struct Sink {
    latency_us: Histogram<u64>,
    received: u64,
    /// Per flow: first and highest (extended) sequence number, packets.
    flows: HashMap<u32, (u32, u32, u64)>,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
            received: 0,
            flows: HashMap::new(),
        }
    }

    fn account(&mut self, pkt: &[u8], now: u64) {
        // The send time rides in the first 8 payload bytes.
        let Some(rtp) = RtpPacket::new_checked(pkt).filter(|p| p.payload().len() >= 8) else {
            return;
        };
        let seq = u32::from(rtp.sequence_number());
        let ssrc = rtp.ssrc();
        let mut sent = [0u8; 8];
        sent.copy_from_slice(&rtp.payload()[..8]);
        let sent = u64::from_be_bytes(sent);
        self.received += 1;
        let _ = self
            .latency_us
            .record((now.saturating_sub(sent) / 1000).max(1));
        let e = self.flows.entry(ssrc).or_insert((seq, seq, 0));
        e.2 += 1;
        // Extended highest sequence number (packets are sent in order).
        let last = e.1 & 0xffff;
        if seq != last && (seq.wrapping_sub(last) & 0xffff) < 0x8000 {
            e.1 = if seq < last {
                (e.1 & !0xffff) + 0x1_0000 + seq
            } else {
                (e.1 & !0xffff) | seq
            };
        }
    }

    fn report(&self) -> serde_json::Value {
        let expected: u64 = self
            .flows
            .values()
            .map(|(first, max, _)| u64::from(max - first) + 1)
            .sum();
        let h = &self.latency_us;
        // The latency distribution for a CDF plot: [quantile, microseconds]
        // at every percent and the tail's 99.9 %, 99.99 % and max.
        let cdf: Vec<(f64, u64)> = (1..100)
            .map(|p| f64::from(p) / 100.0)
            .chain([0.995, 0.999, 0.9999, 1.0])
            .map(|q| (q, h.value_at_quantile(q)))
            .collect();
        json!({
            "received": self.received,
            "flows": self.flows.len(),
            "expected": expected,
            "lost": expected.saturating_sub(self.received),
            "latency_us": {
                "p50": h.value_at_quantile(0.5), "p90": h.value_at_quantile(0.9),
                "p99": h.value_at_quantile(0.99), "p999": h.value_at_quantile(0.999),
                "max": h.max(), "mean": (h.mean() * 10.0).round() / 10.0,
            },
            "cdf": cdf,
        })
    }
}

/// One `recvmmsg` into `bufs`; `lens` gets each datagram's length.
fn recv_batch(
    sock: &UdpSocket,
    headers: &mut MultiHeaders<SockaddrIn>,
    bufs: &mut [[u8; 2048]; BATCH],
    lens: &mut Vec<usize>,
    flags: MsgFlags,
) {
    lens.clear();
    let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
    if let Ok(r) = recvmmsg(sock.as_raw_fd(), headers, iovs.iter_mut(), flags, None) {
        lens.extend(r.map(|m| m.bytes));
    }
}

/// Receives on `sock` until `stop`, into `sink`.
fn receive(sock: &UdpSocket, stop: &AtomicBool, sink: &Mutex<Sink>) {
    let mut bufs = [[0u8; 2048]; BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
    let mut lens = Vec::with_capacity(BATCH);
    while !stop.load(Ordering::Relaxed) {
        // Blocking for the first datagram (read timeout), then whatever is queued.
        recv_batch(
            sock,
            &mut headers,
            &mut bufs,
            &mut lens,
            MsgFlags::MSG_WAITFORONE,
        );
        if lens.is_empty() {
            continue;
        }
        let now = mono_ns();
        if let Ok(mut s) = sink.lock() {
            for (b, &len) in bufs.iter().zip(&lens) {
                s.account(&b[..len], now);
            }
        }
    }
}

/// Sends every flow at `pps` until `stop` or `until`; returns packets sent.
/// The packet interval is cut into 1 ms ticks and each tick sends the flows
/// of its slice, so the load is smooth rather than one burst per interval.
fn send(
    sock: &UdpSocket,
    flows: &Mutex<Flows>,
    pps: u32,
    until: Instant,
    stop: &AtomicBool,
) -> u64 {
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut pkts = vec![[0u8; PKT]; BATCH];
    let mut sent = 0u64;
    let start = Instant::now();
    let slices = (1000 / pps.max(1)).max(1) as usize;
    let tick = Duration::from_secs_f64(1.0 / f64::from(pps.max(1)) / slices as f64);
    let mut round = 0u64;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        let due = start + tick * round as u32;
        let slice = round as usize % slices;
        round += 1;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let Ok(mut f) = flows.lock() else { break };
        let n = f.dst.len();
        let mut i = slice;
        while i < n {
            let mut addrs: Vec<Option<SockaddrIn>> = Vec::with_capacity(BATCH);
            let mut k = 0;
            while i < n && k < BATCH {
                if let Some(dst) = f.dst[i] {
                    let seq = f.seq[i];
                    f.seq[i] = seq.wrapping_add(1);
                    let p = &mut pkts[k];
                    let ssrc = f.ssrc_base + i as u32;
                    let _ = RtpPacket::emit(&mut p[..], 8, seq, u32::from(seq) * 160, ssrc);
                    p[rtp::HEADER_LEN..rtp::HEADER_LEN + 8]
                        .copy_from_slice(&mono_ns().to_be_bytes());
                    addrs.push(Some(SockaddrIn::from(dst)));
                    k += 1;
                }
                i += slices;
            }
            let slices: Vec<[IoSlice<'_>; 1]> =
                pkts[..k].iter().map(|p| [IoSlice::new(p)]).collect();
            let mut off = 0;
            while off < k {
                match sendmmsg(
                    sock.as_raw_fd(),
                    &mut headers,
                    &slices[off..k],
                    &addrs[off..k],
                    [],
                    MsgFlags::empty(),
                ) {
                    Ok(r) => {
                        let c = r.count();
                        sent += c as u64;
                        off += c.max(1);
                    }
                    Err(_) => off += 1,
                }
            }
        }
    }
    sent
}

/// Our media socket, with buffers big enough for every flow's packet of a
/// tick arriving at once (root may exceed rmem_max/wmem_max).
fn media_socket(addr: SocketAddrV4) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind(addr).with_context(|| format!("binding media {addr}"))?;
    let size = 16 << 20;
    if setsockopt(&s, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(&s, sockopt::RcvBuf, &size);
    }
    if setsockopt(&s, sockopt::SndBufForce, &size).is_err() {
        let _ = setsockopt(&s, sockopt::SndBuf, &size);
    }
    Ok(s)
}

/// The first media line's address and port of an SDP body.
fn sdp_target(body: &[u8]) -> Option<SocketAddrV4> {
    let sdp = SdpRepr::parse(body).ok()?;
    let m = sdp.media.first()?;
    Some(SocketAddrV4::new(m.addr, m.port))
}

#[allow(clippy::too_many_arguments)]
fn uac(
    sip: SocketAddrV4,
    sbc: SocketAddrV4,
    media: SocketAddrV4,
    calls: u32,
    cps: u32,
    pps: u32,
    seconds: f64,
    direct: Option<SocketAddrV4>,
) -> anyhow::Result<()> {
    let msock = Arc::new(media_socket(media)?);
    let flows = Arc::new(Mutex::new(Flows {
        dst: vec![None; calls as usize],
        seq: vec![0; calls as usize],
        ssrc_base: UAC_SSRC,
    }));
    let sink = Arc::new(Mutex::new(Sink::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let (s, st, k) = (msock.clone(), stop.clone(), sink.clone());
        std::thread::spawn(move || receive(&s, &st, &k))
    };
    let ssock = UdpSocket::bind(sip).with_context(|| format!("binding SIP {sip}"))?;
    ssock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let me = Uac {
        local: sip,
        target: sbc,
        prefix: format!("rtpload-{}", std::process::id()),
    };
    let mut dialogs: HashMap<String, (u32, Dialog)> = HashMap::new();
    let setup_start = Instant::now();
    if let Some(base) = direct {
        if let Ok(mut f) = flows.lock() {
            for i in 0..calls {
                f.dst[i as usize] = Some(SocketAddrV4::new(*base.ip(), base.port() + 2 * i as u16));
            }
        }
    } else {
        // Send the INVITEs at `cps`, collect the answers (retransmitting once a second).
        let mut next = 0u32;
        let mut sent_at: HashMap<u32, Instant> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(30 + u64::from(calls / cps.max(1)));
        let invite = |i: u32| me.invite(i, &i.to_string(), media);
        let mut buf = vec![0u8; 65536];
        while dialogs.len() < calls as usize {
            if Instant::now() > deadline {
                bail!("only {} of {calls} calls answered in time", dialogs.len());
            }
            let due = (setup_start.elapsed().as_secs_f64() * f64::from(cps)) as u32;
            while next < calls && next <= due {
                ssock.send_to(invite(next).as_bytes(), sbc)?;
                sent_at.insert(next, Instant::now());
                next += 1;
            }
            for (i, at) in sent_at.iter_mut() {
                if at.elapsed() > Duration::from_secs(1) && !dialogs.values().any(|d| d.0 == *i) {
                    ssock.send_to(invite(*i).as_bytes(), sbc)?;
                    *at = Instant::now();
                }
            }
            let Ok(n) = ssock.recv(&mut buf) else {
                continue;
            };
            let Ok(msg) = SipMessage::parse(&buf[..n]) else {
                continue;
            };
            let StartLine::Response { code, .. } = msg.start else {
                // A request of the SBC's (OPTIONS): answer 200.
                ssock.send_to(ok_200(&msg, sip, "o", None).as_bytes(), sbc)?;
                continue;
            };
            let cid = String::from_utf8_lossy(msg.call_id).into_owned();
            let Some(i) = me.call_of(&msg) else {
                continue;
            };
            if code < 200 || msg.cseq.method != Method::Invite {
                continue;
            }
            if code >= 300 {
                bail!("call {i} answered {code}");
            }
            let call = Dialog::from_2xx(&msg);
            ssock.send_to(me.in_dialog(&call, "ACK", 1, i).as_bytes(), sbc)?;
            if let std::collections::hash_map::Entry::Vacant(e) = dialogs.entry(cid) {
                if let (Some(dst), Ok(mut f)) = (sdp_target(msg.body), flows.lock()) {
                    f.dst[i as usize] = Some(dst);
                }
                e.insert((i, call));
            }
        }
    }
    let setup_s = setup_start.elapsed().as_secs_f64();
    println!("RTP START");
    std::io::stdout().flush()?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let sent = send(&msock, &flows, pps, until, &stop);
    println!("RTP END");
    std::io::stdout().flush()?;
    // Let the last packets (and the far side's) arrive.
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let _ = rx.join();
    // Hang up.
    let mut buf = vec![0u8; 65536];
    let mut open: HashMap<String, (u32, Dialog)> = dialogs;
    let mut rounds = 0;
    while !open.is_empty() && rounds < 4 {
        rounds += 1;
        for (k, (i, call)) in open.values().enumerate() {
            ssock.send_to(me.in_dialog(call, "BYE", 2, *i).as_bytes(), sbc)?;
            if k % 200 == 199 {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let wait = Instant::now() + Duration::from_secs(2);
        while Instant::now() < wait && !open.is_empty() {
            let Ok(n) = ssock.recv(&mut buf) else {
                continue;
            };
            if let Ok(msg) = SipMessage::parse(&buf[..n]) {
                if msg.cseq.method == Method::Bye {
                    open.remove(&*String::from_utf8_lossy(msg.call_id));
                }
            }
        }
    }
    let report = json!({
        "role": "uac",
        "calls": calls,
        "setup_s": setup_s,
        "media_s": seconds,
        "sent": sent,
        "rx": sink.lock().map(|s| s.report()).unwrap_or_default(),
        "unfinished_byes": open.len(),
    });
    println!("{report}");
    Ok(())
}

fn uas(
    sip: SocketAddrV4,
    media: SocketAddrV4,
    pps: u32,
    seconds: f64,
    direct: Option<SocketAddrV4>,
    calls: u32,
) -> anyhow::Result<()> {
    let msock = Arc::new(media_socket(media)?);
    let flows = Arc::new(Mutex::new(Flows {
        dst: Vec::new(),
        seq: Vec::new(),
        ssrc_base: UAS_SSRC,
    }));
    if let (Some(base), Ok(mut f)) = (direct, flows.lock()) {
        for i in 0..calls {
            f.dst.push(Some(SocketAddrV4::new(
                *base.ip(),
                base.port() + 2 * i as u16,
            )));
            f.seq.push(0);
        }
    }
    let sink = Arc::new(Mutex::new(Sink::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let rx = {
        let (s, st, k) = (msock.clone(), stop.clone(), sink.clone());
        std::thread::spawn(move || receive(&s, &st, &k))
    };
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tx = {
        let (s, f, st) = (msock.clone(), flows.clone(), stop.clone());
        std::thread::spawn(move || send(&s, &f, pps, until, &st))
    };
    let ssock = UdpSocket::bind(sip).with_context(|| format!("binding SIP {sip}"))?;
    ssock.set_read_timeout(Some(Duration::from_millis(50)))?;
    let mut buf = vec![0u8; 65536];
    // Call-ID -> flow index.
    let mut index: HashMap<String, usize> = HashMap::new();
    let (mut answered, mut ended) = (0u64, 0u64);
    while Instant::now() < until {
        let Ok((n, from)) = ssock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = SipMessage::parse(&buf[..n]) else {
            continue;
        };
        let StartLine::Request { method, .. } = msg.start else {
            continue;
        };
        let cid = String::from_utf8_lossy(msg.call_id).into_owned();
        let resp = match method {
            Method::Invite => {
                if !index.contains_key(&cid) {
                    if let (Some(dst), Ok(mut f)) = (sdp_target(msg.body), flows.lock()) {
                        f.dst.push(Some(dst));
                        f.seq.push(0);
                        index.insert(cid.clone(), f.dst.len() - 1);
                        answered += 1;
                    }
                }
                let tag = format!("u{}", index.get(&cid).copied().unwrap_or(0));
                ok_200(&msg, sip, &tag, Some(&sdp(media)))
            }
            Method::Ack => continue,
            Method::Bye => {
                if let (Some(&i), Ok(mut f)) = (index.get(&cid), flows.lock()) {
                    if f.dst[i].take().is_some() {
                        ended += 1;
                    }
                }
                ok_200(&msg, sip, "u", None)
            }
            _ => ok_200(&msg, sip, "u", None),
        };
        // A peer we cannot answer (a relay that sent from an address with
        // no route back) is its fault, not the end of the run.
        let _ = ssock.send_to(resp.as_bytes(), from);
        if direct.is_none() && answered > 0 && ended == answered {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let sent = tx.join().unwrap_or(0);
    let _ = rx.join();
    let report = json!({
        "role": "uas",
        "answered": answered,
        "ended": ended,
        "sent": sent,
        "rx": sink.lock().map(|s| s.report()).unwrap_or_default(),
    });
    println!("{report}");
    Ok(())
}

fn forward(
    a: Ipv4Addr,
    b: Ipv4Addr,
    port: u16,
    flows: u16,
    peer_a: SocketAddrV4,
    peer_b: SocketAddrV4,
    seconds: f64,
) -> anyhow::Result<()> {
    let mut socks: Vec<UdpSocket> = Vec::new();
    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
    for i in 0..flows {
        for ip in [a, b] {
            let s = UdpSocket::bind(SocketAddrV4::new(ip, port + 2 * i))?;
            s.set_nonblocking(true)?;
            epoll.add(&s, EpollEvent::new(EpollFlags::EPOLLIN, socks.len() as u64))?;
            socks.push(s);
        }
    }
    let mut events = [EpollEvent::empty(); 64];
    let mut bufs = [[0u8; 2048]; BATCH];
    let mut headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let mut tx_headers = MultiHeaders::<SockaddrIn>::preallocate(BATCH, None);
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut relayed = 0u64;
    let mut lens = Vec::with_capacity(BATCH);
    let mut report_at = Instant::now();
    while Instant::now() < until {
        if report_at.elapsed() >= Duration::from_secs(1) {
            report_at = Instant::now();
            println!("{}", json!({"role": "forward", "relayed": relayed}));
            std::io::stdout().flush()?;
        }
        let ready = epoll
            .wait(&mut events, EpollTimeout::from(50u16))
            .unwrap_or(0);
        for ev in &events[..ready] {
            let k = ev.data() as usize;
            // Even keys are on `a` (forward to peer_b from the `b` twin), odd the reverse.
            let (out, to) = if k.is_multiple_of(2) {
                (k + 1, peer_b)
            } else {
                (k - 1, peer_a)
            };
            loop {
                recv_batch(
                    &socks[k],
                    &mut headers,
                    &mut bufs,
                    &mut lens,
                    MsgFlags::MSG_DONTWAIT,
                );
                if lens.is_empty() {
                    break;
                }
                let slices: Vec<[IoSlice<'_>; 1]> = bufs
                    .iter()
                    .zip(&lens)
                    .map(|(b, &l)| [IoSlice::new(&b[..l])])
                    .collect();
                let addrs = vec![Some(SockaddrIn::from(to)); lens.len()];
                if let Ok(r) = sendmmsg(
                    socks[out].as_raw_fd(),
                    &mut tx_headers,
                    &slices,
                    &addrs,
                    [],
                    MsgFlags::MSG_DONTWAIT,
                ) {
                    relayed += r.count() as u64;
                }
                if lens.len() < BATCH {
                    break;
                }
            }
        }
    }
    println!("{}", json!({"role": "forward", "relayed": relayed}));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Uac {
            sip,
            sbc,
            media,
            calls,
            cps,
            pps,
            seconds,
            direct,
        } => uac(sip, sbc, media, calls, cps, pps, seconds, direct),
        Cmd::Uas {
            sip,
            media,
            pps,
            seconds,
            direct,
            calls,
        } => uas(sip, media, pps, seconds, direct, calls),
        Cmd::Forward {
            a,
            b,
            port,
            flows,
            peer_a,
            peer_b,
            seconds,
        } => forward(a, b, port, flows, peer_a, peer_b, seconds),
    }
}
