//! Gateways by host name: RFC 3263 resolution on the control plane (the
//! engine never resolves), with hickory-resolver reading the system's
//! `/etc/resolv.conf` and `/etc/hosts`.
//!
//! For a URI over transport T (the URI's `;transport=`, TLS for `sips:`,
//! UDP when it names none; [`routing::parse_destination`]):
//!
//! ```text
//!  host is an IPv4 literal ──────────────► that address (T's default port unless written)
//!  port written ─────────────────────────► A records of the host at that port
//!  no port: NAPTR of the host ── T's service (SIP+D2U, SIP+D2T, SIPS+D2T)
//!                              ─► SRV of its replacement ─────────┐
//!           no NAPTR ────────────────────► SRV _sip._udp / _sip._tcp / _sips._tcp.<host>
//!           no SRV either ───────────────► A of the host, port 5060 (5061 for TLS)
//!                                           └─► A of each target (priority, weight kept)
//! ```
//! A URI that names no transport is UDP: the NAPTR records do not choose
//! another one (RFC 3263 §4.1 would let them; gateways here say theirs).
//!
//! Each answer is kept until the shortest TTL of the records it used
//! (hickory's `valid_until`); a name that does not resolve is asked again
//! after [`RETRY_FAILED`] and leaves its gateway without addresses (never
//! tried, shown down with the reason). [`Dns::fill`] puts what is known into
//! a routing snapshot; [`Dns::refresh_expired`], once a second from a task
//! of `run`, re-resolves what expired, and a change publishes a new snapshot.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sbc_dataplane::routing::{self, Destination, Resolved, RouteSnapshot};
use sbc_dataplane::Transport;

/// What an answer is kept by: host, the URI's port, the transport.
pub type NameKey = (String, Option<u16>, Transport);

/// How long a failed resolution is kept before it is tried again.
pub const RETRY_FAILED: Duration = Duration::from_secs(30);
/// The longest an answer is kept, whatever its TTL.
pub const MAX_KEEP: Duration = Duration::from_secs(3_600);

/// What one destination name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The addresses, in SRV priority order (empty when it failed).
    pub targets: Vec<Resolved>,
    /// Until when it is kept (the records' TTL).
    pub until: Instant,
    /// The same as wall-clock time, for the API.
    pub until_wall: SystemTime,
    /// Why there are no targets, when there are none.
    pub error: Option<String>,
}

/// The resolver and its answers by (host, port).
#[derive(Debug)]
pub struct Dns {
    resolver: Option<TokioResolver>,
    /// Why there is no resolver (no usable `/etc/resolv.conf`).
    broken: Option<String>,
    answers: Mutex<HashMap<NameKey, Answer>>,
}

impl Dns {
    /// A resolver from the system configuration (`/etc/resolv.conf`,
    /// `/etc/hosts`), 2 s per query, 2 attempts. Without a usable
    /// configuration every name fails with the reason.
    pub fn system() -> Dns {
        let built = TokioResolver::builder_tokio().map(|mut b| {
            let o = b.options_mut();
            o.timeout = Duration::from_secs(2);
            o.attempts = 2;
            b.build()
        });
        match built {
            Ok(r) => Dns {
                resolver: Some(r),
                broken: None,
                answers: Mutex::default(),
            },
            Err(e) => Dns {
                resolver: None,
                broken: Some(format!("no DNS resolver: {e}")),
                answers: Mutex::default(),
            },
        }
    }

    /// The answer kept for a destination URI, if it names a host.
    pub fn answer(&self, uri: &str) -> Option<Answer> {
        let Ok((Destination::Name { host, port }, t)) = routing::parse_destination(uri) else {
            return None;
        };
        self.answers.lock().ok()?.get(&(host, port, t)).cloned()
    }

    /// Gives each gateway of `snap` that names a host the addresses known
    /// for it, resolving now those not known or expired.
    pub async fn fill(&self, snap: &mut RouteSnapshot) {
        for g in &mut snap.gateways {
            if let Ok((Destination::Name { host, port }, t)) =
                routing::parse_destination(&g.destination)
            {
                g.targets = self.current((host, port, t)).await.targets;
            }
        }
    }

    /// The kept answer for `key` while it holds, else a new one.
    async fn current(&self, key: NameKey) -> Answer {
        let kept = self.answers.lock().ok().and_then(|a| a.get(&key).cloned());
        if let Some(a) = kept.filter(|a| a.until > Instant::now()) {
            return a;
        }
        let a = self.resolve(&key).await;
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(key, a.clone());
        }
        a
    }

    /// Resolves again every kept name whose answer expired; `true` when
    /// any answer's addresses changed. Names no gateway uses any more are
    /// forgotten (`in_use`).
    pub async fn refresh_expired(&self, in_use: &[NameKey]) -> bool {
        let expired: Vec<NameKey> = match self.answers.lock() {
            Ok(mut a) => {
                a.retain(|k, _| in_use.contains(k));
                let now = Instant::now();
                a.iter()
                    .filter(|(_, v)| v.until <= now)
                    .map(|(k, _)| k.clone())
                    .collect()
            }
            Err(_) => return false,
        };
        let mut changed = false;
        for key in expired {
            let new = self.resolve(&key).await;
            if let Ok(mut answers) = self.answers.lock() {
                let host = key.0.clone();
                let old = answers.insert(key, new.clone());
                if old.is_none_or(|o| o.targets != new.targets) {
                    tracing::info!(
                        host, targets = ?new.targets.iter().map(|t| t.addr).collect::<Vec<_>>(),
                        error = new.error.as_deref().unwrap_or(""), "DNS answer changed"
                    );
                    changed = true;
                }
            }
        }
        changed
    }

    /// RFC 3263 for one transport: the addresses of `host` (and `port` if written).
    async fn resolve(&self, (host, port, transport): &NameKey) -> Answer {
        let Some(r) = &self.resolver else {
            return failed(self.broken.clone().unwrap_or_default());
        };
        let host = host.as_str();
        let found = match port {
            Some(p) => a_records(r, host, *p, 0, 0).await,
            None => by_naptr_or_srv(r, host, *transport).await,
        };
        match found {
            Ok((targets, until)) if !targets.is_empty() => {
                let until = until.min(Instant::now() + MAX_KEEP);
                let wall = SystemTime::now() + until.saturating_duration_since(Instant::now());
                Answer {
                    targets,
                    until,
                    until_wall: wall,
                    error: None,
                }
            }
            Ok(_) => failed(format!("DNS: no address for {host}")),
            Err(e) => failed(format!("DNS: {host}: {e}")),
        }
    }
}

fn failed(error: String) -> Answer {
    Answer {
        targets: Vec::new(),
        until: Instant::now() + RETRY_FAILED,
        until_wall: SystemTime::now() + RETRY_FAILED,
        error: Some(error),
    }
}

type Found = Result<(Vec<Resolved>, Instant), String>;

/// The NAPTR service and SRV prefix of a transport (RFC 3263 §4.1, RFC 3261 §19.1.2).
fn service(t: Transport) -> (&'static [u8], &'static str) {
    match t {
        Transport::Udp => (b"SIP+D2U", "_sip._udp"),
        Transport::Tcp => (b"SIP+D2T", "_sip._tcp"),
        Transport::Tls => (b"SIPS+D2T", "_sips._tcp"),
    }
}

/// NAPTR (RFC 3263 §4.1: the record of `t`'s service of lowest order and
/// preference, flag `s`), else SRV `_sip._udp` (`_sip._tcp`,
/// `_sips._tcp`), else A at `t`'s default port.
async fn by_naptr_or_srv(r: &TokioResolver, host: &str, t: Transport) -> Found {
    let (naptr_service, srv_prefix) = service(t);
    let mut srv_name = format!("{srv_prefix}.{host}.");
    let mut naptr_until = None;
    if let Ok(l) = r.lookup(format!("{host}."), RecordType::NAPTR).await {
        let mut sip: Vec<_> = l
            .iter()
            .filter_map(|d| match d {
                RData::NAPTR(n) => Some(n.clone()),
                _ => None,
            })
            .collect();
        if !sip.is_empty() {
            sip.retain(|n| {
                n.services().eq_ignore_ascii_case(naptr_service)
                    && n.flags().eq_ignore_ascii_case(b"s")
            });
            sip.sort_by_key(|n| (n.order(), n.preference()));
            let Some(first) = sip.first() else {
                return Err(format!("its NAPTR records offer no SIP over {t}"));
            };
            srv_name = first.replacement().to_ascii();
            naptr_until = Some(l.valid_until());
        }
    }
    match r.srv_lookup(srv_name.as_str()).await {
        Ok(srv) => {
            let mut until = srv.as_lookup().valid_until();
            if let Some(n) = naptr_until {
                until = until.min(n);
            }
            let mut targets = Vec::new();
            let mut last_error = None;
            for s in srv.iter() {
                // "." as target: the service is not offered there (RFC 2782).
                if s.target().is_root() {
                    continue;
                }
                let name = s.target().to_ascii();
                match a_records(r, &name, s.port(), s.priority(), s.weight()).await {
                    Ok((mut t, u)) => {
                        targets.append(&mut t);
                        until = until.min(u);
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            targets.sort_by_key(|t| t.priority);
            match (targets.is_empty(), last_error) {
                (true, Some(e)) => Err(e),
                _ => Ok((targets, until)),
            }
        }
        Err(e) if naptr_until.is_some() => Err(format!("SRV {srv_name}: {e}")),
        // No SRV: the host's A records at the default port (RFC 3263 §4.2).
        Err(_) => a_records(r, host, t.default_port(), 0, 0).await,
    }
}

async fn a_records(r: &TokioResolver, host: &str, port: u16, priority: u16, weight: u16) -> Found {
    let fqdn = if host.ends_with('.') {
        host.to_string()
    } else {
        format!("{host}.")
    };
    let l = r
        .ipv4_lookup(fqdn.as_str())
        .await
        .map_err(|e| e.to_string())?;
    let targets = l
        .iter()
        .map(|a| Resolved {
            addr: SocketAddrV4::new(a.0, port),
            priority,
            weight,
        })
        .collect();
    Ok((targets, l.valid_until()))
}

/// The (host, port, transport) of every gateway of `snap` that names a host.
pub fn names_in(snap: &RouteSnapshot) -> Vec<NameKey> {
    snap.gateways
        .iter()
        .filter_map(|g| match routing::parse_destination(&g.destination) {
            Ok((Destination::Name { host, port }, t)) => Some((host, port, t)),
            _ => None,
        })
        .collect()
}
