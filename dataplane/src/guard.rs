//! Flood and scanner defence before SIP parsing: what Kamailio does with
//! `pike` (requests per source over a sampling window), the `sanity` size
//! check and a `User-Agent` blocklist in its script, here as one verdict per
//! message, taken on the engine thread before the message is parsed.
//!
//! - A message over `max_message` bytes is dropped (a PROTOS INVITE of
//!   64 KB never reaches a gateway).
//! - A banned source is dropped until its ban expires (`ban_ms`, 300 s by
//!   default; `sbcctl ban list|remove`).
//! - A source that is neither a provisioned carrier nor a gateway (the
//!   allowlists of the routing snapshot) may send `limit` messages per
//!   `window_ms` (16 per 2 s, Kamailio's `reqs_density_per_unit` and
//!   `sampling_time_unit`); one more bans it. Such a source whose
//!   `User-Agent` names a known scanner (`friendly-scanner`, `sipvicious`,
//!   ...) is banned at its first message. Nothing is answered to either.
//! - Carriers and gateways are never rate-limited or banned here: their
//!   tenants' CPS and concurrency limits apply in the engine.
//!
//! State is bounded: at most `max_sources` sources are counted (spoofed
//! floods cannot grow it), every entry expires; a check costs a hash
//! look-up in the trusted set (built once per routing snapshot,
//! [`Guard::trust`]; carrier prefixes wider than /32 are compared one by
//! one) and, for an untrusted source, a scan of the header lines with no
//! copy. Before the guard, the engine's intake (`backend::intake`) caps
//! what any one source may have waiting.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;

use crate::routing::{Carrier, RouteSnapshot};
use crate::side::Side;
use crate::time::Ms;

/// The scanners' `User-Agent`s dropped by default (case-insensitive
/// substrings): SIPVicious (`friendly-scanner`, `sipvicious`), sipcli,
/// VaxSIPUserAgent, sundayddr, sipsak, iWar, SIPScan, pplsip.
pub const DEFAULT_SCANNERS: [&str; 9] = [
    "friendly-scanner",
    "sipvicious",
    "sipcli",
    "vaxsipuseragent",
    "sundayddr",
    "sipsak",
    "iwar",
    "sipscan",
    "pplsip",
];

/// The guard's settings (`[sip] max_message`, `[flood]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Largest SIP message taken, in bytes.
    pub max_message: usize,
    /// The sampling window, ms.
    pub window_ms: Ms,
    /// Messages an untrusted source may send per window; 0: no rate limit.
    pub limit: u32,
    /// How long a ban lasts, ms.
    pub ban_ms: Ms,
    /// `User-Agent` substrings (lowercase) that ban an untrusted source.
    pub scanners: Vec<String>,
    /// Sources counted at most (and bans held at most).
    pub max_sources: usize,
    /// Drop every message from a source on the private side that is no
    /// provisioned carrier, at once and with no state kept for it (the
    /// routing's `unknown_source = "drop"`); `false`: such sources are rate
    /// limited like any untrusted one, and their INVITEs get 403.
    pub drop_untrusted_private: bool,
}

impl Default for GuardConfig {
    /// 16 KiB messages, 16 per 2 s, bans of 300 s, [`DEFAULT_SCANNERS`],
    /// 100,000 sources.
    fn default() -> Self {
        GuardConfig {
            max_message: 16 * 1024,
            window_ms: 2_000,
            limit: 16,
            ban_ms: 300_000,
            scanners: DEFAULT_SCANNERS.iter().map(|s| s.to_string()).collect(),
            max_sources: 100_000,
            drop_untrusted_private: false,
        }
    }
}

/// Why the guard dropped a message (indexes [`Guard::drops`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(usize)]
pub enum GuardDrop {
    /// Larger than `max_message`.
    TooLarge = 0,
    /// From a banned source.
    Banned = 1,
    /// Its `User-Agent` names a scanner (the source is banned).
    Scanner = 2,
    /// Over the source's rate (the source is banned).
    Flood = 3,
    /// An untrusted source while `max_sources` are counted already.
    TooManySources = 4,
    /// From a source on the private side that is no carrier, while
    /// [`GuardConfig::drop_untrusted_private`] is set.
    NotAllowed = 5,
}

/// Number of [`GuardDrop`] reasons.
pub const GUARD_DROPS: usize = 6;

impl GuardDrop {
    /// Every reason, in index order.
    pub const ALL: [GuardDrop; GUARD_DROPS] = [
        GuardDrop::TooLarge,
        GuardDrop::Banned,
        GuardDrop::Scanner,
        GuardDrop::Flood,
        GuardDrop::TooManySources,
        GuardDrop::NotAllowed,
    ];

    /// The name in metrics and the status: `too_large`, `banned`,
    /// `scanner`, `flood`, `too_many_sources`, `not_allowed`.
    pub fn name(self) -> &'static str {
        match self {
            GuardDrop::TooLarge => "too_large",
            GuardDrop::Banned => "banned",
            GuardDrop::Scanner => "scanner",
            GuardDrop::Flood => "flood",
            GuardDrop::TooManySources => "too_many_sources",
            GuardDrop::NotAllowed => "not_allowed",
        }
    }
}

/// One banned source, as listed (`sbcctl ban list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    /// The source address.
    pub ip: Ipv4Addr,
    /// Why: [`GuardDrop::Scanner`] or [`GuardDrop::Flood`] (or an operator's).
    pub reason: &'static str,
    /// When it was banned (engine ms).
    pub since: Ms,
    /// When the ban ends (engine ms).
    pub until: Ms,
    /// Messages dropped from it since.
    pub dropped: u64,
}

/// What the guard keeps of an untrusted source: the messages of the
/// current and the previous window (a sliding window, as pike's two
/// slots).
#[derive(Debug, Clone, Copy)]
struct Source {
    window: Ms,
    count: u32,
    previous: u32,
}

/// The flood and scanner guard; see the module text.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    /// Provisioned carriers' and gateways' addresses ([`Guard::trust`]).
    trusted: Trusted,
    sources: HashMap<Ipv4Addr, Source>,
    bans: HashMap<Ipv4Addr, Ban>,
    /// Messages dropped, by [`GuardDrop`].
    pub drops: [u64; GUARD_DROPS],
    /// Bans set so far.
    pub bans_total: u64,
    last_sweep: Ms,
}

/// The addresses the guard never holds back: every provisioned carrier
/// (exact /32s in a set, wider prefixes in a list) and gateway.
#[derive(Debug, Default)]
struct Trusted {
    hosts: HashSet<Ipv4Addr>,
    prefixes: Vec<Carrier>,
}

impl Trusted {
    fn of(snap: &RouteSnapshot) -> Trusted {
        let mut t = Trusted::default();
        for c in &snap.carriers {
            if c.mask >= 32 {
                t.hosts.insert(c.ip);
            } else {
                t.prefixes.push(c.clone());
            }
        }
        for g in &snap.gateways {
            t.hosts.extend(g.targets.iter().map(|t| *t.addr.ip()));
        }
        t
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        self.hosts.contains(&ip) || self.prefixes.iter().any(|c| c.contains(ip))
    }
}

impl Guard {
    /// A guard with nothing counted or banned.
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            cfg,
            trusted: Trusted::default(),
            sources: HashMap::new(),
            bans: HashMap::new(),
            drops: [0; GUARD_DROPS],
            bans_total: 0,
            last_sweep: 0,
        }
    }

    /// Takes who is trusted from `snap`: its carriers (the allowlist,
    /// prefixes included) and gateways. Called with every new snapshot.
    pub fn trust(&mut self, snap: &RouteSnapshot) {
        self.trusted = Trusted::of(snap);
    }

    /// The verdict on `bytes` from `src`, received on `side`, at `now`:
    /// `Ok` to parse it, or why it is dropped (counted). A source
    /// [`Guard::trust`] named passes every check but the size.
    pub fn check(
        &mut self,
        side: Side,
        src: Ipv4Addr,
        bytes: &[u8],
        now: Ms,
    ) -> Result<(), GuardDrop> {
        let verdict = self.verdict(side, src, bytes, now);
        if let Err(why) = verdict {
            if let Some(d) = self.drops.get_mut(why as usize) {
                *d += 1;
            }
        }
        verdict
    }

    fn verdict(
        &mut self,
        side: Side,
        src: Ipv4Addr,
        bytes: &[u8],
        now: Ms,
    ) -> Result<(), GuardDrop> {
        if bytes.len() > self.cfg.max_message {
            return Err(GuardDrop::TooLarge);
        }
        // Trusted first: a source banned before it was provisioned is not
        // held back once it is.
        if self.trusted.contains(src) {
            return Ok(());
        }
        // Not a carrier on the carriers' side: dropped at once, no state kept.
        if side == Side::Private && self.cfg.drop_untrusted_private {
            return Err(GuardDrop::NotAllowed);
        }
        if let Some(b) = self.bans.get_mut(&src) {
            if now < b.until {
                b.dropped += 1;
                return Err(GuardDrop::Banned);
            }
            self.bans.remove(&src);
        }
        if let Some(ua) = user_agent(bytes) {
            if self.is_scanner(ua) {
                self.ban(src, GuardDrop::Scanner.name(), now, self.cfg.ban_ms);
                return Err(GuardDrop::Scanner);
            }
        }
        if self.cfg.limit == 0 {
            return Ok(());
        }
        self.sweep(now);
        let window = self.cfg.window_ms.max(1);
        let slot = now - now % window;
        if !self.sources.contains_key(&src) && self.sources.len() >= self.cfg.max_sources {
            return Err(GuardDrop::TooManySources);
        }
        let s = self.sources.entry(src).or_insert(Source {
            window: slot,
            count: 0,
            previous: 0,
        });
        if s.window != slot {
            s.previous = if s.window + window == slot {
                s.count
            } else {
                0
            };
            s.window = slot;
            s.count = 0;
        }
        s.count += 1;
        // The previous window weighs by how much of it the sliding window
        // still covers, rounded up: the estimate never lets through more
        // than `limit` of the messages counted (rounded down it let one
        // more by just after a window's edge).
        let left = window - (now - slot);
        let recent = u64::from(s.count) + (u64::from(s.previous) * left).div_ceil(window);
        if recent > u64::from(self.cfg.limit) {
            self.sources.remove(&src);
            self.ban(src, GuardDrop::Flood.name(), now, self.cfg.ban_ms);
            return Err(GuardDrop::Flood);
        }
        Ok(())
    }

    /// Whether the User-Agent value `ua` contains a configured scanner name,
    /// ignoring ASCII case (no copy of it is made).
    fn is_scanner(&self, ua: &[u8]) -> bool {
        self.cfg.scanners.iter().any(|s| {
            !s.is_empty()
                && ua
                    .windows(s.len())
                    .any(|w| w.eq_ignore_ascii_case(s.as_bytes()))
        })
    }

    /// Bans `ip` for `for_ms` from `now` (an operator's ban, or the guard's).
    pub fn ban(&mut self, ip: Ipv4Addr, reason: &'static str, now: Ms, for_ms: Ms) {
        if self.bans.len() >= self.cfg.max_sources && !self.bans.contains_key(&ip) {
            return;
        }
        self.bans_total += 1;
        self.bans.insert(
            ip,
            Ban {
                ip,
                reason,
                since: now,
                until: now + for_ms,
                dropped: 0,
            },
        );
    }

    /// Lifts the ban of `ip` (and forgets its count); whether it was banned.
    pub fn unban(&mut self, ip: Ipv4Addr) -> bool {
        self.sources.remove(&ip);
        self.bans.remove(&ip).is_some()
    }

    /// The bans in force at `now`, by address.
    pub fn bans(&self, now: Ms) -> Vec<Ban> {
        let mut v: Vec<Ban> = self
            .bans
            .values()
            .filter(|b| now < b.until)
            .cloned()
            .collect();
        v.sort_by_key(|b| b.ip);
        v
    }

    /// Bans in force (expired ones may be counted until the next sweep).
    pub fn banned(&self) -> usize {
        self.bans.len()
    }

    /// Forgets sources silent for two windows and expired bans, at most
    /// once a window.
    fn sweep(&mut self, now: Ms) {
        let window = self.cfg.window_ms.max(1);
        if now < self.last_sweep + window {
            return;
        }
        self.last_sweep = now;
        self.sources.retain(|_, s| s.window + 2 * window > now);
        self.bans.retain(|_, b| now < b.until);
    }
}

/// The value of the `User-Agent` header of a SIP message, read from its
/// header lines without parsing the message (name case-insensitive, RFC
/// 3261 §7.3.1; no compact form exists for it).
fn user_agent(bytes: &[u8]) -> Option<&[u8]> {
    const NAME: &[u8] = b"user-agent";
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let head = bytes.get(..end)?;
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let name = line.get(..NAME.len())?;
        if !name.eq_ignore_ascii_case(NAME) {
            return None;
        }
        let rest = line.get(NAME.len()..)?;
        let value = rest
            .iter()
            .position(|&b| b == b':')
            .filter(|&i| {
                rest.get(..i)
                    .is_some_and(|ws| ws.iter().all(|b| *b == b' ' || *b == b'\t'))
            })
            .and_then(|i| rest.get(i + 1..))?;
        Some(value.strip_suffix(b"\r").unwrap_or(value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::Carrier;

    fn snap() -> RouteSnapshot {
        RouteSnapshot {
            carriers: vec![Carrier {
                id: 1,
                ip: Ipv4Addr::new(10, 0, 1, 0),
                mask: 24,
                name: "c".into(),
                group: 1,
            }],
            ..Default::default()
        }
    }

    fn options(ua: &str) -> Vec<u8> {
        format!("OPTIONS sip:100@10.0.0.100 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bK1\r\nuser-agent :  {ua}\r\nContent-Length: 0\r\n\r\n").into_bytes()
    }

    #[test]
    fn user_agents_are_read_from_the_header_lines_only() {
        assert_eq!(
            user_agent(&options("friendly-scanner")),
            Some(&b"  friendly-scanner"[..])
        );
        let body = b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 20\r\n\r\nUser-Agent: sipvicious";
        assert_eq!(user_agent(body), None);
        assert_eq!(
            user_agent(b"OPTIONS x SIP/2.0\r\nUser-Agents: x\r\n\r\n"),
            None
        );
    }

    #[test]
    fn scanners_and_floods_are_banned_carriers_never() {
        let mut g = Guard::new(GuardConfig::default());
        g.trust(&snap());
        let scanner = Ipv4Addr::new(192, 0, 2, 9);
        assert_eq!(
            g.check(Side::Private, scanner, &options("friendly-scanner"), 0),
            Err(GuardDrop::Scanner)
        );
        assert_eq!(
            g.check(Side::Private, scanner, &options("Linphone"), 10),
            Err(GuardDrop::Banned)
        );
        assert_eq!(g.bans(10).len(), 1);
        assert!(g.unban(scanner));
        assert_eq!(
            g.check(Side::Private, scanner, &options("Linphone"), 20),
            Ok(())
        );
        // 16 in a window pass, the 17th bans; the ban expires after ban_ms.
        let flood = Ipv4Addr::new(198, 51, 100, 7);
        for i in 0..16 {
            assert_eq!(
                g.check(Side::Private, flood, &options("x"), 100 + i),
                Ok(()),
                "{i}"
            );
        }
        assert_eq!(
            g.check(Side::Private, flood, &options("x"), 200),
            Err(GuardDrop::Flood)
        );
        assert_eq!(
            g.check(Side::Private, flood, &options("x"), 300_199),
            Err(GuardDrop::Banned)
        );
        assert_eq!(
            g.check(Side::Private, flood, &options("x"), 300_201),
            Ok(())
        );
        // A steady 7 per second never trips it.
        let steady = Ipv4Addr::new(198, 51, 100, 8);
        for i in 0..100u64 {
            assert_eq!(
                g.check(Side::Private, steady, &options("x"), 400_000 + i * 143),
                Ok(()),
                "{i}"
            );
        }
        // A carrier is never limited, whatever its User-Agent.
        let carrier = Ipv4Addr::new(10, 0, 1, 10);
        for i in 0..1_000 {
            assert_eq!(
                g.check(Side::Private, carrier, &options("sipvicious"), 500_000 + i),
                Ok(())
            );
        }
        // Too large, from anyone.
        let big = vec![b'x'; 16 * 1024 + 1];
        assert_eq!(
            g.check(Side::Private, carrier, &big, 600_000),
            Err(GuardDrop::TooLarge)
        );
        assert_eq!(g.drops, [1, 2, 1, 1, 0, 0]);
        assert_eq!(g.bans_total, 2);
    }

    #[test]
    fn state_stays_bounded_under_spoofed_sources() {
        let mut g = Guard::new(GuardConfig {
            max_sources: 100,
            ..GuardConfig::default()
        });
        g.trust(&snap());
        for i in 0..1_000u32 {
            let _ = g.check(
                Side::Private,
                Ipv4Addr::from(0xc633_0000 + i),
                &options("x"),
                0,
            );
        }
        assert_eq!(g.sources.len(), 100);
        assert_eq!(g.drops[GuardDrop::TooManySources as usize], 900);
        // Two windows later they are forgotten.
        assert_eq!(
            g.check(
                Side::Private,
                Ipv4Addr::new(203, 0, 113, 99),
                &options("x"),
                4_001
            ),
            Ok(())
        );
        assert_eq!(g.sources.len(), 1);
    }

    #[test]
    fn untrusted_private_sources_are_dropped_statelessly_when_asked() {
        let mut g = Guard::new(GuardConfig {
            drop_untrusted_private: true,
            ..GuardConfig::default()
        });
        g.trust(&snap());
        let stranger = Ipv4Addr::new(192, 0, 2, 50);
        for i in 0..100 {
            assert_eq!(
                g.check(Side::Private, stranger, &options("x"), i),
                Err(GuardDrop::NotAllowed)
            );
        }
        assert!(g.sources.is_empty() && g.bans.is_empty(), "no state kept");
        assert_eq!(g.drops[GuardDrop::NotAllowed as usize], 100);
        // A carrier passes; on the public side the stranger is rate limited as before.
        assert_eq!(
            g.check(Side::Private, Ipv4Addr::new(10, 0, 1, 7), &options("x"), 0),
            Ok(())
        );
        assert_eq!(g.check(Side::Public, stranger, &options("x"), 0), Ok(()));
    }

    #[test]
    fn a_flood_across_a_window_edge_gets_no_more_than_the_limit() {
        let mut g = Guard::new(GuardConfig::default());
        let src = Ipv4Addr::new(198, 51, 100, 9);
        // 10 just before the edge of a 2 s window, then on just after it.
        let times = (0..10).map(|i| 1_990 + i).chain(2_000..2_020);
        let passed = times
            .map(|t| g.check(Side::Private, src, &options("x"), t))
            .take_while(Result::is_ok)
            .count();
        assert_eq!(passed, 16, "the limit, not one more");
    }
}
