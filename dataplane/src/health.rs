//! Destination health with Kamailio dispatcher semantics: SIP OPTIONS
//! probes (`ds_ping_interval`), a destination set down after
//! `failures_down` consecutive failures (`ds_probing_threshold`) and up
//! again after `successes_up` consecutive answers (`ds_inactive_threshold`),
//! answers in `ok_codes` counting as alive besides 2xx
//! (`ds_ping_reply_codes`: a 404, 405 or 501 still shows a live SIP stack),
//! and INVITE failures counting toward down too (LiveKit answers OPTIONS 200
//! while it cannot take calls).
//!
//! [`HealthTable`] is pure state over engine time: the engine asks it which
//! destinations to probe ([`HealthTable::due`]), sends the OPTIONS and
//! reports answers and timeouts back; routing skips destinations that are
//! not [`HealthTable::usable`]. Every change of state and every probe result
//! becomes a [`HealthReport`] for the control plane.

use std::collections::HashMap;
use std::net::SocketAddrV4;

use crate::time::Ms;

/// `[health]`: how destinations are probed and judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Probe every destination this often (ms); 0 turns health off: no
    /// probes, and INVITE failures do not count either, since no probe
    /// could bring a destination back up.
    pub interval: Ms,
    /// A probe unanswered this long (ms) is a failure.
    pub timeout: Ms,
    /// Consecutive failures that take an up destination down.
    pub failures_down: u32,
    /// Consecutive successes that bring a down destination up.
    pub successes_up: u32,
    /// Final answers other than 2xx that count as alive.
    pub ok_codes: Vec<u16>,
    /// Probe carriers with mask 32 too (they are never skipped by routing,
    /// which sends an outbound call to its tenant's or host carrier).
    pub probe_carriers: bool,
}

impl HealthConfig {
    /// Probing off: every destination stays up, INVITE failures included
    /// (nothing could bring a destination back up).
    pub fn off() -> HealthConfig {
        HealthConfig {
            interval: 0,
            ..HealthConfig::default()
        }
    }
}

impl Default for HealthConfig {
    /// Every 10 s, 2 s timeout, down after 3, up after 2, 404/405/501 alive,
    /// gateways only.
    fn default() -> Self {
        HealthConfig {
            interval: 10_000,
            timeout: 2_000,
            failures_down: 3,
            successes_up: 2,
            ok_codes: vec![404, 405, 501],
            probe_carriers: false,
        }
    }
}

/// What an operator set for a destination (`sbcctl dispatcher set-state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AdminState {
    /// Probed, and used while up (the default).
    #[default]
    Active,
    /// Taken down now; probes go on and may bring it up (Kamailio `i` with
    /// probing).
    Inactive,
    /// Never probed, never used (maintenance; Kamailio `d`).
    Disabled,
}

impl AdminState {
    /// Every state, for listing the names accepted.
    pub const ALL: [AdminState; 3] = [
        AdminState::Active,
        AdminState::Inactive,
        AdminState::Disabled,
    ];

    /// Its name in the API and `sbcctl`.
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Active => "active",
            AdminState::Inactive => "inactive",
            AdminState::Disabled => "disabled",
        }
    }

    /// The state called `name` (as [`AdminState::name`] writes it).
    pub fn parse(name: &str) -> Option<AdminState> {
        AdminState::ALL.into_iter().find(|s| s.name() == name)
    }
}

/// What the control plane asks of the engine's health table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCmd {
    /// Probe this destination now (`sbcctl dispatcher ping`).
    Probe(SocketAddrV4),
    /// Set its state (`sbcctl dispatcher set-state`).
    SetState(SocketAddrV4, AdminState),
}

/// Why a probe or call attempt counted as a failure or success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A final answer to our OPTIONS, with its round trip (ms).
    Answered {
        /// The status code.
        code: u16,
        /// Round trip of the probe (ms), from its first send.
        rtt: Ms,
    },
    /// No final answer within the timeout.
    Timeout,
    /// An INVITE to it failed this way (timeout 408, 503, a failover code).
    InviteFailed(u16),
}

/// The state of one destination as the control plane shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    /// The destination.
    pub addr: SocketAddrV4,
    /// Whether routing uses it.
    pub up: bool,
    /// What the operator set.
    pub admin: AdminState,
    /// Consecutive failures counted now (below `failures_down` while up:
    /// Kamailio's "trying" flag).
    pub failures: u32,
    /// Engine time (ms) of the last change of `up`.
    pub since: Ms,
    /// Why it is in this state: `"OPTIONS 200"`, `"OPTIONS timeout"`,
    /// `"INVITE 503"`, `"set inactive"`, `"new"`.
    pub reason: String,
    /// Round trip of the last answered probe (ms).
    pub latency_last: Option<Ms>,
    /// Mean round trip of the answered probes (ms).
    pub latency_avg: Option<f64>,
    /// Probes sent to it.
    pub probes: u64,
    /// Probes that failed.
    pub probe_failures: u64,
}

/// One destination's state.
#[derive(Debug, Clone)]
struct Dest {
    report: HealthReport,
    /// Successes in a row while down.
    successes: u32,
    /// When it is next probed (engine ms).
    next_probe: Ms,
    /// The probe in flight: its sequence number and first send.
    pending: Option<(u64, Ms)>,
    latency_sum: u64,
    latency_n: u64,
}

/// The health of every probed destination.
#[derive(Debug, Default)]
pub struct HealthTable {
    cfg: HealthConfig,
    dests: HashMap<SocketAddrV4, Dest>,
    /// Operator settings, kept across snapshots (a destination removed and
    /// provisioned again keeps its maintenance state).
    admin: HashMap<SocketAddrV4, AdminState>,
    reports: Vec<HealthReport>,
    next_seq: u64,
}

impl HealthTable {
    /// An empty table judging by `cfg`.
    pub fn new(cfg: HealthConfig) -> HealthTable {
        HealthTable {
            cfg,
            ..HealthTable::default()
        }
    }

    /// The settings in use.
    pub fn config(&self) -> &HealthConfig {
        &self.cfg
    }

    /// The destinations to judge from now on (a new routing snapshot): new
    /// ones start up (Kamailio starts destinations active) and are probed
    /// at once; the ones left keep their state; the others are forgotten.
    pub fn set_destinations(&mut self, addrs: impl IntoIterator<Item = SocketAddrV4>, now: Ms) {
        let mut kept = HashMap::new();
        for addr in addrs {
            if kept.contains_key(&addr) {
                continue;
            }
            let dest = self.dests.remove(&addr).unwrap_or_else(|| {
                let admin = self.admin.get(&addr).copied().unwrap_or_default();
                let d = Dest {
                    report: HealthReport {
                        addr,
                        up: admin == AdminState::Active,
                        admin,
                        failures: 0,
                        since: now,
                        reason: "new".to_string(),
                        latency_last: None,
                        latency_avg: None,
                        probes: 0,
                        probe_failures: 0,
                    },
                    successes: 0,
                    next_probe: now,
                    pending: None,
                    latency_sum: 0,
                    latency_n: 0,
                };
                self.reports.push(d.report.clone());
                d
            });
            kept.insert(addr, dest);
        }
        self.dests = kept;
    }

    /// Whether routing may send a call to `addr`: up and not disabled; a
    /// destination the table does not know is usable.
    pub fn usable(&self, addr: SocketAddrV4) -> bool {
        self.dests
            .get(&addr)
            .is_none_or(|d| d.report.up && d.report.admin != AdminState::Disabled)
    }

    /// Whether an operator disabled `addr` (never probed, never used).
    pub fn disabled(&self, addr: SocketAddrV4) -> bool {
        self.admin.get(&addr) == Some(&AdminState::Disabled)
    }

    /// Probes to send now: `(destination, probe number)` for each one whose
    /// time has come and that has none in flight; each is then in flight
    /// until [`HealthTable::answered`] or its timeout ([`HealthTable::expire`]).
    pub fn due(&mut self, now: Ms, out: &mut Vec<(SocketAddrV4, u64)>) {
        if self.cfg.interval == 0 {
            return;
        }
        for d in self.dests.values_mut() {
            if d.report.admin == AdminState::Disabled || d.pending.is_some() || now < d.next_probe {
                continue;
            }
            self.next_seq += 1;
            d.pending = Some((self.next_seq, now));
            d.next_probe = now + self.cfg.interval;
            d.report.probes += 1;
            out.push((d.report.addr, self.next_seq));
        }
    }

    /// Sends every probe of `addr` at once, whatever its schedule
    /// (`sbcctl dispatcher ping`); `None` when one is already in flight or
    /// the destination is unknown or disabled.
    pub fn probe_now(&mut self, addr: SocketAddrV4, now: Ms) -> Option<u64> {
        let d = self.dests.get_mut(&addr)?;
        if d.report.admin == AdminState::Disabled || d.pending.is_some() {
            return None;
        }
        self.next_seq += 1;
        d.pending = Some((self.next_seq, now));
        d.report.probes += 1;
        Some(self.next_seq)
    }

    /// The final answer `code` to probe `seq` of `addr` arrived at `now`.
    /// A stale or unknown probe is ignored.
    pub fn answered(&mut self, addr: SocketAddrV4, seq: u64, code: u16, now: Ms) {
        let Some(d) = self.dests.get_mut(&addr) else {
            return;
        };
        let Some((_, sent)) = d.pending.filter(|(s, _)| *s == seq) else {
            return;
        };
        d.pending = None;
        let rtt = now.saturating_sub(sent);
        d.report.latency_last = Some(rtt);
        d.latency_sum += rtt;
        d.latency_n += 1;
        d.report.latency_avg = Some(d.latency_sum as f64 / d.latency_n as f64);
        self.judge(addr, Outcome::Answered { code, rtt }, now);
    }

    /// Probes in flight for longer than the timeout fail.
    pub fn expire(&mut self, now: Ms) {
        let timeout = self.cfg.timeout;
        let late: Vec<SocketAddrV4> = self
            .dests
            .values()
            .filter(|d| d.pending.is_some_and(|(_, sent)| now >= sent + timeout))
            .map(|d| d.report.addr)
            .collect();
        for addr in late {
            if let Some(d) = self.dests.get_mut(&addr) {
                d.pending = None;
            }
            self.judge(addr, Outcome::Timeout, now);
        }
    }

    /// An INVITE sent to `addr` failed with `code` (408 for no answer).
    pub fn invite_failed(&mut self, addr: SocketAddrV4, code: u16, now: Ms) {
        self.judge(addr, Outcome::InviteFailed(code), now);
    }

    /// An INVITE sent to `addr` got an answer that shows it takes calls
    /// (2xx, or a final answer that is not a failover code): its failure
    /// count restarts.
    pub fn invite_answered(&mut self, addr: SocketAddrV4) {
        if let Some(d) = self.dests.get_mut(&addr) {
            if d.report.up && d.report.failures > 0 {
                d.report.failures = 0;
                self.reports.push(d.report.clone());
            }
        }
    }

    /// The earliest engine time at which [`HealthTable::due`] or
    /// [`HealthTable::expire`] has something to do.
    pub fn next_event(&self) -> Option<Ms> {
        self.dests
            .values()
            .filter(|d| d.report.admin != AdminState::Disabled)
            .filter_map(|d| match d.pending {
                Some((_, sent)) => Some(sent + self.cfg.timeout),
                None if self.cfg.interval > 0 => Some(d.next_probe),
                None => None,
            })
            .min()
    }

    /// The operator's setting for `addr`: `Active` brings it up now,
    /// `Inactive` takes it down now (probes may bring it up), `Disabled`
    /// takes it out of probing and routing. `false` when `addr` is unknown.
    pub fn set_admin(&mut self, addr: SocketAddrV4, admin: AdminState, now: Ms) -> bool {
        let Some(d) = self.dests.get_mut(&addr) else {
            return false;
        };
        self.admin.insert(addr, admin);
        d.report.admin = admin;
        d.report.failures = 0;
        d.successes = 0;
        d.pending = None;
        d.next_probe = now;
        let up = admin == AdminState::Active;
        if up != d.report.up {
            d.report.since = now;
        }
        d.report.up = up;
        d.report.reason = format!("set {}", admin.name());
        self.reports.push(d.report.clone());
        true
    }

    /// The reports of every change and probe result since the last call.
    pub fn take_reports(&mut self, into: &mut Vec<HealthReport>) {
        into.append(&mut self.reports);
    }

    /// The current state of `addr`.
    pub fn report(&self, addr: SocketAddrV4) -> Option<&HealthReport> {
        self.dests.get(&addr).map(|d| &d.report)
    }

    fn judge(&mut self, addr: SocketAddrV4, outcome: Outcome, now: Ms) {
        let cfg = &self.cfg;
        if cfg.interval == 0 {
            return;
        }
        let Some(d) = self.dests.get_mut(&addr) else {
            return;
        };
        if d.report.admin == AdminState::Disabled {
            return;
        }
        let (alive, why) = match outcome {
            Outcome::Answered { code, .. } => (
                (200..300).contains(&code) || cfg.ok_codes.contains(&code),
                format!("OPTIONS {code}"),
            ),
            Outcome::Timeout => (false, "OPTIONS timeout".to_string()),
            Outcome::InviteFailed(code) => (false, format!("INVITE {code}")),
        };
        if matches!(outcome, Outcome::Timeout)
            || matches!(outcome, Outcome::Answered { .. } if !alive)
        {
            d.report.probe_failures += 1;
        }
        if alive {
            d.report.failures = 0;
            if !d.report.up {
                d.successes += 1;
                if d.successes >= cfg.successes_up.max(1) {
                    d.report.up = true;
                    d.report.admin = AdminState::Active;
                    self.admin.remove(&addr);
                    d.report.since = now;
                    d.successes = 0;
                }
            }
        } else {
            d.successes = 0;
            if d.report.up {
                d.report.failures += 1;
                if d.report.failures >= cfg.failures_down.max(1) {
                    d.report.up = false;
                    d.report.since = now;
                    d.report.failures = 0;
                }
            }
        }
        d.report.reason = why;
        self.reports.push(d.report.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn table() -> HealthTable {
        let mut t = HealthTable::new(HealthConfig::default());
        t.set_destinations([addr("203.0.113.10:5060"), addr("203.0.113.11:5060")], 0);
        t
    }

    fn probes(t: &mut HealthTable, now: Ms) -> Vec<(SocketAddrV4, u64)> {
        let mut out = Vec::new();
        t.due(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn silent_destinations_go_down_after_the_threshold_and_come_back() {
        let mut t = table();
        let (live, dead) = (addr("203.0.113.10:5060"), addr("203.0.113.11:5060"));
        let mut now = 0;
        for round in 1..=3 {
            let sent = probes(&mut t, now);
            assert_eq!(sent.len(), 2, "round {round}: {sent:?}");
            let live_seq = sent.iter().find(|(a, _)| *a == live).unwrap().1;
            t.answered(live, live_seq, 200, now + 15);
            t.expire(now + 2_000);
            assert_eq!(t.usable(dead), round < 3, "round {round}");
            assert!(t.usable(live));
            now += 10_000;
        }
        let r = t.report(dead).unwrap();
        assert_eq!(
            (r.up, r.reason.as_str(), r.since),
            (false, "OPTIONS timeout", 22_000)
        );
        assert_eq!(t.report(live).unwrap().latency_last, Some(15));
        // Answers again: up after two.
        for (i, ok) in [(0, false), (1, true)] {
            let seq = probes(&mut t, now)
                .iter()
                .find(|(a, _)| *a == dead)
                .unwrap()
                .1;
            t.answered(dead, seq, if i == 0 { 200 } else { 405 }, now + 5);
            assert_eq!(t.usable(dead), ok);
            now += 10_000;
        }
        // A stale answer changes nothing.
        t.answered(dead, 1, 503, now);
        assert!(t.usable(dead));
    }

    #[test]
    fn error_answers_and_invite_failures_count_as_failures() {
        let mut t = table();
        let gw = addr("203.0.113.10:5060");
        let seq = probes(&mut t, 0)[0].1;
        t.answered(gw, seq, 503, 10);
        assert_eq!(t.report(gw).unwrap().failures, 1);
        t.invite_failed(gw, 503, 20);
        t.invite_failed(gw, 408, 30);
        assert!(!t.usable(gw));
        assert_eq!(t.report(gw).unwrap().reason, "INVITE 408");
        // One call answered while up resets the count.
        let other = addr("203.0.113.11:5060");
        t.invite_failed(other, 503, 40);
        t.invite_answered(other);
        t.invite_failed(other, 503, 50);
        t.invite_failed(other, 503, 60);
        assert!(t.usable(other));
    }

    #[test]
    fn operators_take_destinations_out_and_back() {
        let mut t = table();
        let gw = addr("203.0.113.10:5060");
        assert!(t.set_admin(gw, AdminState::Disabled, 5));
        assert!(!t.usable(gw));
        assert!(probes(&mut t, 0).iter().all(|(a, _)| *a != gw));
        // Kept across snapshots.
        t.set_destinations([gw], 100);
        assert!(!t.usable(gw));
        assert!(t.set_admin(gw, AdminState::Inactive, 200));
        assert!(!t.usable(gw));
        let seq = probes(&mut t, 200)[0].1;
        t.answered(gw, seq, 200, 210);
        let seq = probes(&mut t, 10_200)[0].1;
        t.answered(gw, seq, 200, 10_210);
        assert!(t.usable(gw), "probes brought it back");
        assert!(!t.set_admin(addr("192.0.2.1:5060"), AdminState::Active, 0));
        let mut reports = Vec::new();
        t.take_reports(&mut reports);
        assert!(
            reports.iter().any(|r| r.reason == "set disabled"),
            "{reports:?}"
        );
    }

    #[test]
    fn with_probing_off_nothing_goes_down() {
        let mut t = HealthTable::new(HealthConfig::off());
        let gw = addr("203.0.113.10:5060");
        t.set_destinations([gw], 0);
        let mut out = Vec::new();
        t.due(0, &mut out);
        assert!(out.is_empty());
        for n in 0..5 {
            t.invite_failed(gw, 503, n);
        }
        assert!(t.usable(gw));
        assert_eq!(t.next_event(), None);
    }

    #[test]
    fn the_next_event_is_the_earliest_probe_or_timeout() {
        let mut t = table();
        assert_eq!(t.next_event(), Some(0));
        probes(&mut t, 0);
        assert_eq!(t.next_event(), Some(2_000));
        t.expire(2_000);
        assert_eq!(t.next_event(), Some(10_000));
        assert!(t.probe_now(addr("203.0.113.10:5060"), 3_000).is_some());
        assert!(t.probe_now(addr("203.0.113.10:5060"), 3_000).is_none());
        assert_eq!(t.next_event(), Some(5_000));
    }
}
