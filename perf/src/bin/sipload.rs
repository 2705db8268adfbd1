//! `sipload`: a SIP call load generator cheap enough not to be the limit
//! when measuring the SBC's call rate on the same cores (sipp spends about
//! a core per 2,000 calls/s; this spends a fraction of that).
//!
//! `sipload uac` places calls at `--rate` calls/s for `--seconds`: INVITE
//! with an SDP offer, ACK to the 2xx, BYE after `--hold-ms`, each answer
//! read with the SBC's own scanner. INVITE and BYE are retransmitted as
//! RFC 3261 timers A and E do for UDP (T1 = 500 ms doubling, stopped by a
//! provisional answer for the INVITE), and a call without its final answer
//! after 32 s (timers B and F) fails. Calls are started by a 1 ms clock, in
//! a batch for each tick, and one thread waits in `poll` between ticks. It
//! prints one JSON report: calls, ok, failed by reason (status line, or
//! timeout), the rate achieved
//! (calls started over the time it took to start them), setup latency
//! (INVITE to 2xx) percentiles, retransmissions.
//!
//! `sipload uas` answers every INVITE 200 with an SDP answer, every BYE,
//! OPTIONS and CANCEL 200, ACKs nothing, until `--seconds` have passed;
//! then prints its JSON report (a driver that stops it earlier with a
//! signal gets none).
//!
//! The messages are `sbc_perf::sipgen`'s (shared with `rtpload`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hdrhistogram::Histogram;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use sbc_dataplane::sip::message::{SipMessage, StartLine};
use sbc_dataplane::sip::Method;
use sbc_perf::sipgen::{ok_200, sdp, Dialog, Uac};
use serde_json::json;

/// RFC 3261 T1.
const T1: Duration = Duration::from_millis(500);
/// Timers B and F: 64 × T1.
const GIVE_UP: Duration = Duration::from_secs(32);

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Place calls.
    Uac {
        /// Our SIP address (UDP).
        #[arg(long)]
        bind: SocketAddrV4,
        /// The SBC's SIP address.
        #[arg(long)]
        target: SocketAddrV4,
        /// Calls started per second.
        #[arg(long)]
        rate: f64,
        /// For how long calls are started (seconds).
        #[arg(long)]
        seconds: f64,
        /// How long each answered call stays up before our BYE (ms).
        #[arg(long, default_value_t = 200)]
        hold_ms: u64,
        /// The Request-URI user (the called number).
        #[arg(long, default_value = "919876543210")]
        user: String,
        /// The media address the SDP offer names.
        #[arg(long)]
        media: Option<SocketAddrV4>,
        /// Stop after this many seconds in all and report the calls still
        /// open as `unfinished` (default: until every call is over, at most
        /// `--seconds` + the hold + 64 s).
        #[arg(long)]
        max_wall: Option<f64>,
    },
    /// Answer calls.
    Uas {
        /// Our SIP address (UDP).
        #[arg(long)]
        bind: SocketAddrV4,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 3600.0)]
        seconds: f64,
        /// The media address the SDP answer names.
        #[arg(long)]
        media: Option<SocketAddrV4>,
    },
}

/// Where a call is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// INVITE sent, no answer yet (retransmitting).
    Calling,
    /// A provisional answer came: waiting for the final one.
    Proceeding,
    /// Answered and ACKed, BYE due at its hold's end.
    Up,
    /// BYE sent, waiting for its answer (retransmitting).
    Ending,
    /// Over: answered and hung up.
    Done,
    /// Over: failed (a final answer other than 2xx, or no answer).
    Failed,
}

struct Call {
    state: State,
    invited: Instant,
    /// Retransmission interval of the request in flight (timer A or E).
    interval: Duration,
    /// When the request in flight was first sent (for timers B and F).
    since: Instant,
    dialog: Dialog,
}

/// What a timer does when it fires; stale ones (the call moved on) do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Retransmit,
    Bye,
}

fn udp(bind: SocketAddrV4) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind(bind).with_context(|| format!("binding {bind}"))?;
    let size = 8 << 20;
    if setsockopt(&s, sockopt::RcvBufForce, &size).is_err() {
        let _ = setsockopt(&s, sockopt::RcvBuf, &size);
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Waits up to `timeout` for `sock` to be readable.
fn wait(sock: &UdpSocket, timeout: Duration) {
    let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
    let mut fds = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    let _ = poll(&mut fds, PollTimeout::from(ms));
}

#[allow(clippy::too_many_arguments)]
fn uac(
    bind: SocketAddrV4,
    target: SocketAddrV4,
    rate: f64,
    seconds: f64,
    hold: Duration,
    user: &str,
    media: SocketAddrV4,
    max_wall: Option<f64>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        rate > 0.0 && seconds > 0.0,
        "--rate and --seconds must be above 0"
    );
    let sock = udp(bind)?;
    let me = Uac {
        local: bind,
        target,
        prefix: format!("sl{}", std::process::id()),
    };
    let total = (rate * seconds).round() as u32;
    let mut calls: Vec<Call> = Vec::with_capacity(total as usize);
    let mut timers: BinaryHeap<Reverse<(Instant, u32, Due)>> = BinaryHeap::new();
    let mut setup = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut failures: HashMap<String, u64> = HashMap::new();
    let (mut open, mut retransmissions) = (0u32, 0u64);
    let mut buf = vec![0u8; 65536];
    let start = Instant::now();
    let mut last_start = start;
    let end_by = match max_wall {
        Some(s) => start + Duration::from_secs_f64(s),
        None => start + Duration::from_secs_f64(seconds) + hold + GIVE_UP * 2,
    };
    let send = |msg: &str| -> std::io::Result<()> {
        match sock.send_to(msg.as_bytes(), target) {
            // A full socket buffer: counted as lost, retransmission covers it.
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            r => r.map(|_| ()),
        }
    };
    let fail = |c: &mut Call, why: String, failures: &mut HashMap<String, u64>, open: &mut u32| {
        c.state = State::Failed;
        *failures.entry(why).or_default() += 1;
        *open -= 1;
    };
    loop {
        let now = Instant::now();
        // Start what is due by now.
        let due = ((now - start).as_secs_f64() * rate) as u32 + 1;
        while (calls.len() as u32) < due.min(total) {
            let i = calls.len() as u32;
            send(&me.invite(i, user, media))?;
            calls.push(Call {
                state: State::Calling,
                invited: now,
                interval: T1,
                since: now,
                dialog: Dialog::default(),
            });
            timers.push(Reverse((now + T1, i, Due::Retransmit)));
            open += 1;
            last_start = now;
        }
        // Answers.
        loop {
            let n = match sock.recv_from(&mut buf) {
                Ok((n, _)) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("receiving"),
            };
            let Ok(msg) = SipMessage::parse(&buf[..n]) else {
                continue;
            };
            let (code, reason) = match msg.start {
                StartLine::Response { code, reason } => (code, reason),
                StartLine::Request { method, .. } => {
                    // The SBC's OPTIONS (or anything else): 200.
                    if method != Method::Ack {
                        send(&ok_200(&msg, bind, "l", None))?;
                    }
                    continue;
                }
            };
            let Some(i) = me.call_of(&msg) else {
                continue;
            };
            let Some(c) = calls.get_mut(i as usize) else {
                continue;
            };
            let now = Instant::now();
            match (msg.cseq.method, code, c.state) {
                (Method::Invite, 100..=199, State::Calling) => c.state = State::Proceeding,
                (Method::Invite, 200..=299, State::Calling | State::Proceeding) => {
                    let us = (now - c.invited).as_micros() as u64;
                    setup.saturating_record(us.max(1));
                    c.dialog = Dialog::from_2xx(&msg);
                    send(&me.in_dialog(&c.dialog, "ACK", 1, i))?;
                    c.state = State::Up;
                    timers.push(Reverse((now + hold, i, Due::Bye)));
                }
                // A retransmitted 2xx: its ACK again (RFC 3261 §13.2.2.4).
                (Method::Invite, 200..=299, _) => {
                    send(&me.in_dialog(&c.dialog, "ACK", 1, i))?;
                }
                (Method::Invite, 300.., State::Calling | State::Proceeding) => {
                    send(&me.ack_failure(i, user, &msg))?;
                    let why = format!("{code} {}", String::from_utf8_lossy(reason));
                    fail(c, why, &mut failures, &mut open);
                }
                (Method::Invite, 300.., _) => send(&me.ack_failure(i, user, &msg))?,
                (Method::Bye, 200..=299, State::Ending) => {
                    c.state = State::Done;
                    open -= 1;
                }
                (Method::Bye, 300.., State::Ending) => {
                    fail(c, format!("BYE {code}"), &mut failures, &mut open)
                }
                _ => {}
            }
        }
        // Timers.
        let now = Instant::now();
        while let Some(&Reverse((at, i, what))) = timers.peek() {
            if at > now {
                break;
            }
            timers.pop();
            let Some(c) = calls.get_mut(i as usize) else {
                continue;
            };
            match (what, c.state) {
                (Due::Bye, State::Up) => {
                    send(&me.in_dialog(&c.dialog, "BYE", 2, i))?;
                    (c.state, c.interval, c.since) = (State::Ending, T1, now);
                    timers.push(Reverse((now + T1, i, Due::Retransmit)));
                }
                (Due::Retransmit, State::Calling | State::Ending | State::Proceeding) => {
                    if now - c.since >= GIVE_UP {
                        let why = if c.state == State::Ending {
                            "BYE timeout"
                        } else {
                            "timeout"
                        };
                        fail(c, why.into(), &mut failures, &mut open);
                        continue;
                    }
                    // Timer A stops at a provisional answer; timer B runs on.
                    match c.state {
                        State::Calling => {
                            send(&me.invite(i, user, media))?;
                            retransmissions += 1;
                        }
                        State::Ending => {
                            send(&me.in_dialog(&c.dialog, "BYE", 2, i))?;
                            retransmissions += 1;
                        }
                        _ => {}
                    }
                    c.interval = (c.interval * 2).min(Duration::from_secs(4));
                    timers.push(Reverse((now + c.interval, i, Due::Retransmit)));
                }
                _ => {}
            }
        }
        let started_all = calls.len() as u32 >= total;
        if (started_all && open == 0) || now > end_by {
            break;
        }
        // Until the next call is due (1 ms ticks) or an answer arrives.
        let next = if started_all {
            timers
                .peek()
                .map_or(Duration::from_millis(50), |Reverse((at, ..))| {
                    at.saturating_duration_since(now)
                })
        } else {
            Duration::from_millis(1)
        };
        wait(&sock, next.min(Duration::from_millis(50)));
    }
    let unfinished = open;
    if unfinished > 0 {
        *failures.entry("unfinished".into()).or_default() += u64::from(unfinished);
    }
    let started = calls.len();
    let ok = calls.iter().filter(|c| c.state == State::Done).count();
    let span = (last_start - start).as_secs_f64();
    let q = |p: f64| setup.value_at_quantile(p) as f64 / 1000.0;
    let report = json!({
        "role": "uac",
        "rate": rate,
        "calls": total,
        "started": started,
        "ok": ok,
        "failed": started - ok,
        "failures": failures,
        "achieved": if span > 0.0 { (started.saturating_sub(1)) as f64 / span } else { 0.0 },
        "setup_ms": {"n": setup.len(), "p50": q(0.5), "p90": q(0.9), "p99": q(0.99), "p99.9": q(0.999)},
        "retransmissions": retransmissions,
        "wall_s": start.elapsed().as_secs_f64(),
    });
    println!("{report}");
    Ok(())
}

fn uas(bind: SocketAddrV4, seconds: f64, media: SocketAddrV4) -> anyhow::Result<()> {
    let sock = udp(bind)?;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let answer = sdp(media);
    let mut buf = vec![0u8; 65536];
    let (mut invites, mut byes, mut other) = (0u64, 0u64, 0u64);
    while Instant::now() < until {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                wait(&sock, Duration::from_millis(100));
                continue;
            }
            Err(e) => return Err(e).context("receiving"),
        };
        let Ok(msg) = SipMessage::parse(&buf[..n]) else {
            continue;
        };
        let StartLine::Request { method, .. } = msg.start else {
            continue;
        };
        // One tag per call, the same for its retransmissions.
        let tag = format!("u{:x}", fnv(msg.call_id));
        let resp = match method {
            Method::Ack => continue,
            Method::Invite => {
                invites += 1;
                ok_200(&msg, bind, &tag, Some(&answer))
            }
            Method::Bye => {
                byes += 1;
                ok_200(&msg, bind, &tag, None)
            }
            _ => {
                other += 1;
                ok_200(&msg, bind, &tag, None)
            }
        };
        let _ = sock.send_to(resp.as_bytes(), from);
    }
    println!(
        "{}",
        json!({"role": "uas", "invites": invites, "byes": byes, "other": other})
    );
    Ok(())
}

/// FNV-1a of a Call-ID: a To tag that stays the same across retransmissions.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Uac {
            bind,
            target,
            rate,
            seconds,
            hold_ms,
            user,
            media,
            max_wall,
        } => uac(
            bind,
            target,
            rate,
            seconds,
            Duration::from_millis(hold_ms),
            &user,
            media.unwrap_or(SocketAddrV4::new(*bind.ip(), 40_000)),
            max_wall,
        ),
        Cmd::Uas {
            bind,
            seconds,
            media,
        } => uas(
            bind,
            seconds,
            media.unwrap_or(SocketAddrV4::new(*bind.ip(), 30_000)),
        ),
    }
}
