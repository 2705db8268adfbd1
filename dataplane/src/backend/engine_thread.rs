//! The SIP engine thread both backends run: it takes datagrams and routing
//! snapshots from the rings, fires timers and media timeouts, hands stream
//! commands to the relay before the SIP that announces them, and gives its
//! output to the backend's [`EngineIo`].

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::Shared;
use crate::engine::{Outgoing, SipEngine};
use crate::guard::GuardDrop;
use crate::media::MediaCmd;
use crate::stats::EngineStats;
use crate::time::Ms;
use crate::transport::Transport;

/// Datagrams the engine handles before it sends and looks at timers.
const MAX_PER_TURN: usize = 1024;

/// Engine time (ms) when the engine thread starts: 30 days, so that the
/// times of a call restored from the journal, taken before this start,
/// stay positive on this engine's clock.
const CLOCK_BASE: Ms = 30 * 86_400_000;

/// Puts back the calls [`super::Dataplane::restore`] handed over.
fn restore_calls(engine: &mut SipEngine, shared: &Shared, now: Ms) {
    let calls = match shared.restore.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(_) => return,
    };
    let total = calls.len();
    for image in calls {
        let (call, call_id) = (image.call(), image.caller_call_id());
        if let Err(e) = engine.restore(image, now) {
            shared.engine.restore_failed.inc();
            tracing::warn!(call, call_id = %call_id, error = %e, "call journal: call not restored");
            // Forgotten, unless it is a call the engine has (the same one twice).
            if e != crate::engine::RestoreError::Duplicate {
                let _ = shared
                    .engine
                    .journal
                    .push(crate::engine::JournalOp::Down(call));
            }
        }
    }
    tracing::info!(
        calls = total,
        failed = shared.engine.restore_failed.get(),
        "call journal: calls restored"
    );
}

/// Where the engine thread's output goes: the backend's half of the
/// pipeline, built on the engine thread.
pub trait EngineIo {
    /// Sends (or queues) everything in `out`; `out` is cleared after.
    fn send(&mut self, out: &mut Vec<Outgoing>);
    /// Stream commands were queued for the relay (wake it if it sleeps).
    fn media_changed(&mut self) {}
    /// Moves what arrived on the backend's own sockets into the intake, at
    /// the start of every turn (the socket backend reads its SIP sockets on
    /// the engine thread; DPDK's poll lcore pushes, so nothing here).
    fn receive(&mut self, _shared: &Shared) {}
    /// Waits until something may have arrived or `timeout` passed: parked
    /// until [`Shared::wake_engine`] unless the backend waits on its sockets.
    fn wait(&mut self, timeout: Duration) {
        thread::park_timeout(timeout);
    }
}

/// Starts the SIP engine thread (pinned to `core`, or the last core) that
/// takes datagrams from `shared` and hands its output to the [`EngineIo`]
/// that `make_io` builds on that thread.
pub(crate) fn start_engine<I: EngineIo>(
    engine: SipEngine,
    shared: &Arc<Shared>,
    core: Option<usize>,
    make_io: impl FnOnce() -> I + Send + 'static,
) -> std::io::Result<JoinHandle<()>> {
    let core = pick_core(core);
    let shared2 = shared.clone();
    let handle = thread::Builder::new()
        .name("sip-engine".into())
        .spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            engine_loop(engine, &shared2, make_io());
        })?;
    let _ = shared.engine_waker.set(handle.thread().clone());
    Ok(handle)
}

fn pick_core(wanted: Option<usize>) -> Option<core_affinity::CoreId> {
    let cores = core_affinity::get_core_ids()?;
    match wanted {
        Some(id) => cores.into_iter().find(|c| c.id == id),
        None => cores.last().copied(),
    }
}

fn engine_loop(mut engine: SipEngine, shared: &Shared, mut io: impl EngineIo) {
    let (quit, intake, free, snapshots) = (
        &shared.quit,
        &shared.intake,
        &shared.free,
        &shared.snapshots,
    );
    let mut media_cmds: Vec<MediaCmd> = Vec::new();
    let start = Instant::now();
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // Engine time starts at CLOCK_BASE, so that a call restored from the
    // journal keeps its (earlier) times on this clock.
    let epoch = wall.saturating_sub(CLOCK_BASE);
    shared.engine.epoch_unix_ms.set(epoch);
    engine.set_epoch(epoch);
    let mut journal = Vec::new();
    let mut out: Vec<Outgoing> = Vec::with_capacity(256);
    let mut skipped_ticks = 0u32;
    let mut health = Vec::new();
    let mut guard = crate::guard::Guard::new(engine.config().guard.clone());
    guard.trust(engine.snapshot());
    let mut overload = Overload::new(intake.capacity());
    // How long the previous turn took (ms): the loop's lag; and the longest
    // a message it took had waited in the intake.
    let mut turn_ms = 0u64;
    let mut waited_ms = 0u64;
    while !quit.load(Ordering::Relaxed) {
        io.receive(shared);
        let turn = Instant::now();
        let waited_before = std::mem::take(&mut waited_ms);
        while let Some(s) = snapshots.pop() {
            guard.trust(&s);
            engine.set_snapshot(s);
        }
        engine.set_draining(shared.draining.load(Ordering::Relaxed));
        if overload.update(intake.new_requests(), turn_ms, waited_before) {
            shared.engine.overloads.inc();
        }
        engine.set_overloaded(overload.on);
        let now = CLOCK_BASE + start.elapsed().as_millis() as u64;
        if shared.restore_pending.swap(false, Ordering::Acquire) {
            restore_calls(&mut engine, shared, now);
        }
        if shared.engine.active_wanted.swap(false, Ordering::Relaxed) {
            let _ = shared
                .engine
                .active_calls
                .force_push((now, engine.active_calls()));
        }
        while let Some(cmd) = shared.health_cmds.pop() {
            engine.health_command(now, cmd, &mut out);
        }
        while let Some(failed) = shared.transport_errors.pop() {
            engine.transport_error(now, failed, &mut out);
        }
        while let Some((token, verdict)) = shared.admission_verdicts.pop() {
            engine.admission_verdict(now, token, verdict, &mut out);
        }
        if shared
            .engine
            .admission_resync
            .swap(false, Ordering::Relaxed)
        {
            engine.push_admission_counts();
        }
        guard_commands(&mut guard, &shared.engine, now);
        let mut handled = 0;
        let mut drained = false;
        while handled < MAX_PER_TURN {
            let Some(d) = intake.pop() else {
                drained = true;
                break;
            };
            let waited = intake.waited_ms(&d);
            waited_ms = waited_ms.max(waited);
            if overload.waited(waited) {
                shared.engine.overloads.inc();
                engine.set_overloaded(true);
            }
            let bytes = d.buf.get(..d.len).unwrap_or_default();
            let from = match d.src {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
            };
            if let Err(why) = guard.check(d.side, from, bytes, now) {
                if matches!(why, GuardDrop::Scanner | GuardDrop::Flood) {
                    // Once per ban: a banned source's later messages are dropped silently.
                    tracing::warn!(source = %from, reason = why.name(), "flood guard: source banned");
                }
                if d.transport == Transport::Udp {
                    let _ = free.push(d.buf);
                }
                handled += 1;
                continue;
            }
            if shared.engine.capture_on.load(Ordering::Relaxed) {
                let ours = SocketAddr::V4(engine.sip_addr(d.side));
                let caller = engine.caller_call_id(d.side, bytes);
                shared.engine.capture(d.src, ours, bytes, caller);
            }
            engine.handle_on(now, (d.side, d.transport), d.src, bytes, &mut out);
            // Stream messages come in buffers of their own size.
            if d.transport == Transport::Udp {
                let _ = free.push(d.buf);
            }
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
        if !shared.engine.admission_asks.is_empty() {
            if let Some(wake) = shared.engine.admission_waker.get() {
                (wake.0)();
            }
        }
        engine.take_health_reports(&mut health);
        for r in health.drain(..) {
            if shared.engine.health_reports.push(r).is_err() {
                shared.engine.health_reports_dropped.inc();
            }
        }
        // Streams first, then the SIP that announces them: the relay is
        // ready before a peer can send to a port it just learned.
        engine.take_media_commands(&mut media_cmds);
        engine.take_journal(&mut journal);
        if shared.engine.journal_on.load(Ordering::Relaxed) {
            for op in journal.drain(..) {
                if shared.engine.journal.push(op).is_err() {
                    shared.engine.journal_dropped.inc();
                }
            }
        } else {
            journal.clear();
        }
        if !media_cmds.is_empty() {
            for cmd in media_cmds.drain(..) {
                if shared.media_cmds.push(cmd).is_err() {
                    shared.media.commands_dropped.inc();
                }
            }
            io.media_changed();
        }
        if !out.is_empty() {
            if shared.engine.capture_on.load(Ordering::Relaxed) {
                for o in &out {
                    let ours = SocketAddr::V4(engine.sip_addr(o.side));
                    let caller = engine.caller_call_id(o.side, &o.data);
                    shared.engine.capture(ours, o.dst, &o.data, caller);
                }
            }
            to_streams(shared, &mut out);
            io.send(&mut out);
            out.clear();
        }
        // The work of this turn, its sleep left out.
        turn_ms = turn.elapsed().as_millis() as u64;
        if handled == 0 {
            let wait = engine
                .next_timer()
                .map_or(50, |t| t.saturating_sub(now))
                .clamp(1, 50);
            io.wait(Duration::from_millis(wait));
        }
    }
}

/// A turn of the engine loop this long (ms) means the engine lags: overload.
const LAG_ON_MS: u64 = 100;
/// Overload ends only after a turn shorter than this (ms).
const LAG_OFF_MS: u64 = 20;
/// A message that waited this long (ms) in the intake means overload at
/// once, so that the new INVITEs behind it get their 503 within about that.
const WAIT_ON_MS: u64 = 40;
/// Overload ends only when nothing taken in a turn waited this long (ms).
const WAIT_OFF_MS: u64 = 10;

/// Overload by the depth of the engine's lane of new requests, by the
/// loop's lag, or by how long messages waited in the intake, with
/// hysteresis: on past three quarters of the lane's capacity, after a turn
/// of [`LAG_ON_MS`], or as soon as a message taken waited [`WAIT_ON_MS`];
/// off again once the lane is below a quarter, a turn took under
/// [`LAG_OFF_MS`] and nothing it took waited [`WAIT_OFF_MS`].
#[derive(Debug, Clone, Copy)]
struct Overload {
    on: bool,
    high: usize,
    low: usize,
}

impl Overload {
    fn new(capacity: usize) -> Overload {
        Overload {
            on: false,
            high: capacity * 3 / 4,
            low: capacity / 4,
        }
    }

    /// Takes the lane's depth now, how long the last turn took and the
    /// longest a message it took had waited (ms); `true` when overload begins.
    fn update(&mut self, depth: usize, turn_ms: u64, waited_ms: u64) -> bool {
        let was = self.on;
        self.on = if self.on {
            depth > self.low || turn_ms >= LAG_OFF_MS || waited_ms >= WAIT_OFF_MS
        } else {
            depth > self.high || turn_ms >= LAG_ON_MS || waited_ms >= WAIT_ON_MS
        };
        self.on && !was
    }

    /// A message just taken waited `waited_ms`: overload begins at once
    /// when that is [`WAIT_ON_MS`] or more (`true` then).
    fn waited(&mut self, waited_ms: u64) -> bool {
        if self.on || waited_ms < WAIT_ON_MS {
            return false;
        }
        self.on = true;
        true
    }
}

/// The guard's side of the control plane: bans lifted, the list asked for,
/// and its counters published.
fn guard_commands(guard: &mut crate::guard::Guard, stats: &EngineStats, now: Ms) {
    while let Some(ip) = stats.unban.pop() {
        guard.unban(ip);
    }
    if stats.bans_wanted.swap(false, Ordering::Relaxed) {
        let _ = stats.bans.force_push((now, guard.bans(now)));
    }
    for (c, v) in stats.guard_drops.iter().zip(guard.drops) {
        c.set(v);
    }
    stats.bans_total.set(guard.bans_total);
    stats.bans_active.set(guard.banned() as u64);
}

/// Moves what goes over TCP/TLS from `out` to the stream layer's ring (in
/// order), and wakes it; without a stream layer it is dropped. Counted in
/// `stream_dropped` either way it fails. UDP-only turns cost one scan; the
/// rest stays in `out`, in order, without a new allocation.
fn to_streams(shared: &Shared, out: &mut Vec<Outgoing>) {
    if !out.iter().any(|o| o.transport.reliable()) {
        return;
    }
    let waker = shared.stream_waker.get();
    let mut queued = false;
    for o in out.extract_if(.., |o| o.transport.reliable()) {
        if waker.is_none() || shared.stream_tx.push(o).is_err() {
            shared.io.stream_dropped.inc();
        } else {
            queued = true;
        }
    }
    if let (true, Some(wake)) = (queued, waker) {
        (wake.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::Overload;

    #[test]
    fn overload_has_hysteresis() {
        let mut o = Overload::new(1024);
        assert!(!o.update(700, 0, 0) && !o.on);
        assert!(o.update(769, 0, 0) && o.on, "past three quarters");
        assert!(!o.update(300, 0, 0) && o.on, "still above a quarter");
        assert!(!o.update(255, 0, 0) && !o.on, "below a quarter: off");
        assert!(!o.update(500, 99, 39) && !o.on);
        assert!(
            o.update(10, 100, 0) && o.on,
            "a turn of 100 ms: the loop lags"
        );
        assert!(!o.update(10, 30, 0) && o.on, "still slow");
        assert!(!o.update(10, 5, 0) && !o.on, "fast again: off");
        assert!(o.waited(40) && o.on, "a message waited 40 ms: at once");
        assert!(!o.waited(500), "already on");
        assert!(!o.update(10, 5, 12) && o.on, "messages still wait");
        assert!(!o.update(10, 5, 3) && !o.on, "no more waiting: off");
    }
}
