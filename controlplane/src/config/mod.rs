//! The TOML configuration: typed, strict (unknown keys are errors that name
//! the key), with the shape of ARCHITECTURE.md accepted in full.
//!
//! The config also turns itself into the data plane's settings
//! ([`Config::engine_config`], [`Config::socket_config`] and, with the `dpdk`
//! feature, `Config::dpdk_config`, in `dataplane.rs`), the way capsule's
//! `to_eal_args` does, so `run.rs` only starts things. A default the data
//! plane also has (the routing policy, T1) is read from the data plane's own
//! default, never repeated here.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use sbc_dataplane::engine::Policy;
use sbc_dataplane::health::HealthConfig;
use sbc_dataplane::media::offer::{parse_codecs, Codec, DEFAULT_CODECS};
use sbc_dataplane::routing::Profile;
use sbc_dataplane::{EngineConfig, Ms};
use serde::{Deserialize, Deserializer};

use crate::provisioning::profile_named;

mod dataplane;
pub mod env;

pub use dataplane::RING_SIZE;

/// Why a configuration cannot be used; each names the file and, past the
/// TOML syntax, the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not TOML, or not the shape of [`Config`] (the message names the key).
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML error, with the key and position.
        source: toml::de::Error,
    },
    /// A value out of its range, or settings that do not go together.
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// The key, dotted (`media.port_min`).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An `SBC_*` variable whose value does not read as its key's kind.
    #[error("environment variable {name}: {message}")]
    Env {
        /// The variable.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// A section the chosen backend needs is absent (only for a [`Config`]
    /// built without [`Config::parse`], which checks it).
    #[error("`{key}` is required {why}")]
    Missing {
        /// The section, dotted (`dataplane.dpdk`).
        key: &'static str,
        /// When it is required.
        why: &'static str,
    },
}

/// The whole configuration file; every section but `[sip]` may be left out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[sip]`, the one required section.
    pub sip: SipConfig,
    /// `[media]`.
    #[serde(default)]
    pub media: MediaConfig,
    /// `[dataplane]`.
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    /// `[database]`.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// `[api]`.
    #[serde(default)]
    pub api: ApiConfig,
    /// `[metrics]`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// `[routing]`.
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[health]`.
    #[serde(default)]
    pub health: HealthSection,
    /// `[cdr]`.
    #[serde(default)]
    pub cdr: CdrConfig,
    /// `[log]`.
    #[serde(default)]
    pub log: LogConfig,
    /// `[hep]`.
    #[serde(default)]
    pub hep: HepConfig,
    /// `[tls]`: certificates for SIP over TLS.
    #[serde(default)]
    pub tls: crate::stream::tls::TlsConfig,
    /// `[shutdown]`.
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    /// `[flood]`.
    #[serde(default)]
    pub flood: FloodConfig,
    /// `[journal]`.
    #[serde(default)]
    pub journal: JournalConfig,
    /// `[cluster]`.
    #[serde(default)]
    pub cluster: ClusterConfig,
}

/// `[cluster]`: this node among several sharing one database, and the
/// Redis or Valkey store that holds the tenants' limits across them
/// (`crate::cluster`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster: in the store's membership,
    /// on its CDRs and HEP. Default: the host name.
    #[serde(default = "default_node_id_text")]
    pub node_id: String,
    /// The store, `redis://[user:password@]host[:port][/db]` (Redis 6+ or
    /// Valkey; TLS toward it is not built in: reach it over a private
    /// network or a local stunnel); absent: this node counts its tenants'
    /// limits alone and is in no membership.
    pub redis: Option<String>,
    /// Seconds a node's membership and its tenants' slots last without a
    /// heartbeat (one every third of it): a node killed outright gives
    /// its slots back within this. Default 10.
    #[serde(default = "default_lease_s")]
    pub lease_s: u64,
    /// How long a new INVITE of a limited tenant waits for the store's
    /// verdict before the node's share of the limits decides, in ms.
    /// Default 200.
    #[serde(default = "default_ask_timeout_ms")]
    pub ask_timeout_ms: u64,
}

fn default_node_id_text() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sbc".into())
}

fn default_lease_s() -> u64 {
    10
}

fn default_ask_timeout_ms() -> u64 {
    200
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            node_id: default_node_id_text(),
            redis: None,
            lease_s: default_lease_s(),
            ask_timeout_ms: default_ask_timeout_ms(),
        }
    }
}

/// `[journal]`: the call journal, which puts answered calls back after a
/// crash or restart on the same host (their dialogs, ports, media peers and
/// SRTP keys; see `sbc_dataplane::engine::CallImage`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Keep the journal and restore its calls at start. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The SQLite file it is kept in (created mode 0600: it holds SRTP
    /// keys), relative to the working directory. Default `sbc-calls.db`.
    #[serde(default = "default_journal_path")]
    pub path: String,
}

fn default_journal_path() -> String {
    "sbc-calls.db".into()
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            enabled: true,
            path: default_journal_path(),
        }
    }
}

/// `[shutdown]`: how SIGTERM (or SIGINT) stops the SBC.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    /// Seconds calls in progress are given to end after the first SIGTERM,
    /// while new INVITEs and OPTIONS get 503 (upstream probes move away);
    /// then the SBC exits, at once when the last call ends. A second SIGTERM
    /// exits at once; 0 exits at the first. Default 30.
    #[serde(default = "default_drain_s")]
    pub drain_s: u64,
}

fn default_drain_s() -> u64 {
    30
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_s: default_drain_s(),
        }
    }
}

/// `[hep]`: SIP capture to a Homer collector (HEP v3 over UDP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HepConfig {
    /// The collector, `ip:port` (Homer/heplify-server listen on 9060);
    /// absent: no HEP.
    pub collector: Option<SocketAddr>,
    /// Our capture agent id. Default 2001.
    #[serde(default = "default_node_id")]
    pub node_id: u32,
    /// The collector's password (HEP auth key), if it wants one.
    pub password: Option<String>,
}

fn default_node_id() -> u32 {
    2001
}

impl HepConfig {
    /// Where HEP goes, when a collector is set; `node_name` (the node's
    /// `[cluster] node_id`) names this SBC in every message (chunk 19).
    pub fn target(&self, node_name: &str) -> Option<crate::hep::HepTarget> {
        Some(crate::hep::HepTarget {
            collector: self.collector?,
            node_id: self.node_id,
            password: self.password.clone(),
            node_name: Some(node_name.to_string()),
        })
    }
}

/// `[log]`: the SBC's log on stderr.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `"text"` (one line per event) or `"json"` (one JSON object per
    /// line, for log shippers). Default text.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter: a level (`error`, `warn`, `info`, `debug`,
    /// `trace`) or directives (`info,sbc::call=warn`); `RUST_LOG`, when
    /// set, wins. Default `info`.
    #[serde(default = "default_log_level")]
    pub level: String,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_log_level() -> String {
    "info".to_string()
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: default_log_level(),
        }
    }
}

impl LogConfig {
    /// Installs the global `tracing` subscriber: `RUST_LOG` if set, else
    /// `level`; text or JSON lines on stderr.
    pub fn install(&self) {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&self.level));
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr);
        match self.format {
            LogFormat::Text => builder
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .init(),
            LogFormat::Json => builder.json().with_current_span(false).init(),
        }
    }
}

/// `[cdr]`: call detail records in the provisioning database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdrConfig {
    /// Write one row per call to table `cdrs`. Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Delete rows of calls older than this many days (checked hourly);
    /// 0 keeps them all. Default 30.
    #[serde(default = "default_keep_days")]
    pub keep_days: u32,
}

fn yes() -> bool {
    true
}
fn default_keep_days() -> u32 {
    30
}

impl Default for CdrConfig {
    fn default() -> Self {
        CdrConfig {
            enabled: true,
            keep_days: default_keep_days(),
        }
    }
}

/// `[health]`: gateway health with Kamailio dispatcher semantics (SIP
/// OPTIONS from our public address; `ds_ping_interval`,
/// `ds_probing_threshold`, `ds_inactive_threshold`, `ds_ping_reply_codes`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    /// Seconds between probes of each gateway (10 is usual); 0 turns health
    /// off: no probes, and failed INVITEs take nothing down. Default 0, as
    /// Kamailio's `ds_ping_interval`: a gateway that does not answer OPTIONS
    /// (some drop them; a sipp UAS counts them as failed calls) would be
    /// taken for dead.
    #[serde(default = "default_health_interval")]
    pub interval_s: u32,
    /// A probe unanswered this long (ms) fails, 100..=60,000. Default 2,000.
    #[serde(default = "default_health_timeout")]
    pub timeout_ms: u64,
    /// Failures in a row (probes, or INVITEs timing out or answered with a
    /// failover code) that take a gateway down, at least 1. Default 3.
    #[serde(default = "default_failures_down")]
    pub failures_down: u32,
    /// Answered probes in a row that bring it back up, at least 1. Default 2.
    #[serde(default = "default_successes_up")]
    pub successes_up: u32,
    /// Final answers to OPTIONS other than 2xx that still count as alive,
    /// each 300..=699. Default 404, 405, 501.
    #[serde(default = "default_ok_codes")]
    pub ok_codes: Vec<u16>,
    /// Probe the carriers with mask 32 too (from the private address); they
    /// are shown, never skipped. Default false.
    #[serde(default)]
    pub probe_carriers: bool,
}

fn default_health_interval() -> u32 {
    (HealthConfig::off().interval / 1000) as u32
}
fn default_health_timeout() -> u64 {
    HealthConfig::default().timeout
}
fn default_failures_down() -> u32 {
    HealthConfig::default().failures_down
}
fn default_successes_up() -> u32 {
    HealthConfig::default().successes_up
}
fn default_ok_codes() -> Vec<u16> {
    HealthConfig::default().ok_codes
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            interval_s: default_health_interval(),
            timeout_ms: default_health_timeout(),
            failures_down: default_failures_down(),
            successes_up: default_successes_up(),
            ok_codes: default_ok_codes(),
            probe_carriers: false,
        }
    }
}

impl HealthSection {
    /// The engine's health settings.
    pub fn health_config(&self) -> HealthConfig {
        HealthConfig {
            interval: Ms::from(self.interval_s) * 1000,
            timeout: self.timeout_ms,
            failures_down: self.failures_down,
            successes_up: self.successes_up,
            ok_codes: self.ok_codes.clone(),
            probe_carriers: self.probe_carriers,
        }
    }
}

/// The routing policy knobs (Kamailio's dispatcher / permissions settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Gateway answers that make an INVITE fail over to the next gateway,
    /// each 300..=699 (default: the data plane's, 408, 500, 502, 503, 504).
    #[serde(default = "default_failover_codes")]
    pub failover_codes: Vec<u16>,
    /// How long a silent gateway is waited for while another one is left, in
    /// ms, at least 1 (default: the data plane's, 5,000).
    #[serde(default = "default_failover_timeout")]
    pub failover_timeout_ms: Ms,
    /// The answer to an INVITE over its tenant's CPS or concurrency limit,
    /// 400..=699 (default: the data plane's, 503).
    #[serde(default = "default_limit_code")]
    pub limit_code: u16,
    /// The `Retry-After` of that answer, in seconds (default: the data
    /// plane's, 1).
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u32,
    /// What an INVITE from a source that is not a carrier gets.
    #[serde(default)]
    pub unknown_source: UnknownSource,
    /// The profile of a gateway provisioned without one (its `profile` is
    /// NULL): `"transparent"` or `"livekit"` (default: the data plane's,
    /// transparent).
    #[serde(default, deserialize_with = "profile")]
    pub default_profile: Profile,
    /// The codecs of the SBC's own offer to a `livekit` gateway for a
    /// delayed offer, when the call's tenant names none: encoding names
    /// separated by commas, in order of preference (`"PCMA,PCMU,
    /// telephone-event"`; known: PCMU, GSM, PCMA, G722, G729, opus,
    /// telephone-event); default the data plane's, PCMU, PCMA, G722,
    /// telephone-event.
    #[serde(default = "default_offer_codecs", deserialize_with = "codecs")]
    pub offer_codecs: Vec<Codec>,
}

/// A codec list: `unknown codec "x" (known: ...)` otherwise.
fn codecs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Codec>, D::Error> {
    parse_codecs(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn default_offer_codecs() -> Vec<Codec> {
    DEFAULT_CODECS.to_vec()
}

/// A profile's name: `unknown profile "x" (transparent, livekit)` otherwise.
fn profile<'de, D: Deserializer<'de>>(d: D) -> Result<Profile, D::Error> {
    profile_named(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `[routing] unknown_source`: the fate of an INVITE from an unknown source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSource {
    /// 403 Forbidden.
    Reject,
    /// No answer at all.
    Drop,
}

/// The data plane's default (`Policy::drop_unknown_sources`).
impl Default for UnknownSource {
    fn default() -> Self {
        if Policy::default().drop_unknown_sources {
            UnknownSource::Drop
        } else {
            UnknownSource::Reject
        }
    }
}

fn default_failover_codes() -> Vec<u16> {
    Policy::default().failover_codes
}
fn default_failover_timeout() -> Ms {
    Policy::default().failover_timeout
}
fn default_limit_code() -> u16 {
    Policy::default().limit_code
}
fn default_retry_after() -> u32 {
    Policy::default().retry_after_s
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            failover_codes: default_failover_codes(),
            failover_timeout_ms: default_failover_timeout(),
            limit_code: default_limit_code(),
            retry_after_s: default_retry_after(),
            unknown_source: UnknownSource::default(),
            default_profile: Profile::default(),
            offer_codecs: default_offer_codecs(),
        }
    }
}

/// `[sip]`: our SIP addresses and timers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Private (carrier) side SIP address.
    pub private: SocketAddrV4,
    /// Public (gateway) side SIP address.
    pub public: SocketAddrV4,
    /// RFC 3261 T1 in milliseconds, at least 1 (default: the data plane's,
    /// 500); T2 is 8 × T1.
    #[serde(default = "default_t1")]
    pub t1_ms: Ms,
    /// Core the SIP engine thread is pinned to (default: the last core).
    #[serde(default)]
    pub engine_core: Option<usize>,
    /// Leave ISUP parts (SIP-I/SIP-T, `application/isup`) out of forwarded
    /// bodies, e.g. toward gateways that take SDP only (default false: ISUP
    /// passes byte-exact).
    #[serde(default)]
    pub strip_isup: bool,
    /// SIP over TCP on the public side: our listener (e.g.
    /// `203.0.113.50:5080`); absent: no TCP (gateways with
    /// `;transport=tcp` cannot be reached).
    #[serde(default)]
    pub public_tcp: Option<SocketAddrV4>,
    /// SIP over TLS on the public side (e.g. `203.0.113.50:5081`); needs
    /// `[tls] cert` and `key`. Absent: no TLS listener, but connections
    /// out to `sips:` gateways still work when TLS toward them is wanted.
    #[serde(default)]
    pub public_tls: Option<SocketAddrV4>,
    /// A TCP/TLS connection with nothing read for this long is closed, in
    /// seconds (default 3600: longer than most calls, whose BYE may come
    /// back over it; a gateway's keep-alives keep it open).
    #[serde(default = "default_stream_idle")]
    pub stream_idle_timeout_s: u64,
    /// The largest SIP message taken on a stream, in bytes (default 65535);
    /// a larger one closes the connection.
    #[serde(default = "default_stream_max")]
    pub stream_max_message: usize,
    /// The largest SIP message taken on any transport, in bytes (default
    /// 16384); a larger one is dropped before parsing (`sip.dropped_too_large`).
    #[serde(default = "default_max_message")]
    pub max_message: usize,
}

fn default_max_message() -> usize {
    16 * 1024
}

/// `[flood]`: the guard in front of the SIP engine (Kamailio's pike): sources
/// that are neither carriers nor gateways may send `requests` messages per
/// `window_s`, one more bans them for `ban_s`; a scanner's `User-Agent`
/// bans them at once. Carriers and gateways are never limited here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodConfig {
    /// The sampling window, seconds (default 2).
    #[serde(default = "default_flood_window")]
    pub window_s: u64,
    /// Messages per window from an untrusted source (default 16; 0: no limit).
    #[serde(default = "default_flood_requests")]
    pub requests: u32,
    /// How long a ban lasts, seconds (default 300).
    #[serde(default = "default_ban_s")]
    pub ban_s: u64,
    /// `User-Agent` substrings (case-insensitive) of scanners (default:
    /// friendly-scanner, sipvicious, sipcli, VaxSIPUserAgent, sundayddr,
    /// sipsak, iWar, SIPScan, pplsip).
    #[serde(default = "default_scanners")]
    pub scanners: Vec<String>,
    /// Sources counted (and banned) at most (default 100000).
    #[serde(default = "default_max_sources")]
    pub max_sources: usize,
}

fn default_flood_window() -> u64 {
    2
}
fn default_flood_requests() -> u32 {
    16
}
fn default_ban_s() -> u64 {
    300
}
fn default_scanners() -> Vec<String> {
    sbc_dataplane::guard::DEFAULT_SCANNERS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_max_sources() -> usize {
    100_000
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            window_s: default_flood_window(),
            requests: default_flood_requests(),
            ban_s: default_ban_s(),
            scanners: default_scanners(),
            max_sources: default_max_sources(),
        }
    }
}

fn default_stream_idle() -> u64 {
    3_600
}

fn default_stream_max() -> usize {
    crate::stream::framing::Limits::default().max_message
}

fn default_t1() -> Ms {
    let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
    EngineConfig::new(any, any).t1
}

/// `[media]`: the media relay's addresses and ports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Our media address on the private side (default: `sip.private`'s).
    pub private_ip: Option<Ipv4Addr>,
    /// Our media address on the public side (default: `sip.public`'s).
    pub public_ip: Option<Ipv4Addr>,
    /// Lowest relay port (default 10,000); below `port_max`.
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    /// End of the relay port range, exclusive (default 60,000).
    #[serde(default = "default_port_max")]
    pub port_max: u16,
    /// An answered call whose media stops this long (seconds, at least 1,
    /// default 60) is ended with BYEs.
    #[serde(default = "default_media_timeout")]
    pub timeout_s: u64,
    /// A media line on hold (`c=0.0.0.0`, sendonly, recvonly, inactive) is
    /// not ended by `timeout_s`; only once held and silent this long
    /// (seconds, default 3,600 as RTPEngine's silent timeout; 0: never).
    #[serde(default = "default_hold_timeout")]
    pub hold_timeout_s: u64,
    /// The most media lines anchored at once (RTPEngine's `max-sessions`;
    /// a call with one audio line is one): past it a new call gets 503
    /// `media ports exhausted`. Default: what the port range holds; on the
    /// socket backend also no more than the open file limit allows (four
    /// sockets a line).
    pub max_sessions: Option<u32>,
}

fn default_media_timeout() -> u64 {
    60
}

fn default_hold_timeout() -> u64 {
    3_600
}

fn default_port_min() -> u16 {
    10_000
}
fn default_port_max() -> u16 {
    60_000
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            private_ip: None,
            public_ip: None,
            port_min: default_port_min(),
            port_max: default_port_max(),
            timeout_s: default_media_timeout(),
            hold_timeout_s: default_hold_timeout(),
            max_sessions: None,
        }
    }
}

/// Which I/O backend runs the dataplane (`[dataplane] backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Kernel UDP sockets.
    #[default]
    Socket,
    /// DPDK ports (needs the `dpdk` feature).
    Dpdk,
}

impl BackendKind {
    /// Whether this build relays SRTP on this backend: the `srtp` feature
    /// (libsrtp2), on either backend.
    pub fn srtp(self) -> bool {
        cfg!(feature = "srtp")
    }

    /// The name in the config file and in `GET /api/v1/status`.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Socket => "socket",
            BackendKind::Dpdk => "dpdk",
        }
    }
}

/// `[dataplane]`: the I/O backend.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// `"socket"` (default) or `"dpdk"`.
    #[serde(default)]
    pub backend: BackendKind,
    /// Required when `backend = "dpdk"`.
    pub dpdk: Option<DpdkConfig>,
    /// Messages each of the engine's intake lanes holds (64..=1048576,
    /// default 4096): past three quarters of new requests waiting, new
    /// INVITEs get 503; a source may fill an eighth.
    #[serde(default = "default_ring_size")]
    pub ring_size: usize,
}

fn default_ring_size() -> usize {
    RING_SIZE
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            backend: BackendKind::default(),
            dpdk: None,
            ring_size: RING_SIZE,
        }
    }
}

/// `[dataplane.dpdk]`: the DPDK ports of each side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    /// EAL's own arguments (`-l`, `-a`, `--vdev`, `--no-huge`, ...), as given.
    #[serde(default)]
    pub eal_args: Vec<String>,
    /// DPDK port id of the private side.
    pub private_port: u16,
    /// DPDK port id of the public side.
    pub public_port: u16,
    /// Prefix length of the private side's subnet, 0..=32.
    pub private_prefix: u8,
    /// Prefix length of the public side's subnet, 0..=32.
    pub public_prefix: u8,
    /// Router of the private side (default: every destination is on-link).
    pub private_next_hop: Option<Ipv4Addr>,
    /// Router of the public side (default: every destination is on-link).
    pub public_next_hop: Option<Ipv4Addr>,
    /// Microseconds the poll loop sleeps after 1,024 empty polls in a row
    /// (0: pure busy polling, the default; >0 leaves the core to others on
    /// hosts that share it, at the cost of that much latency after a lull).
    #[serde(default)]
    pub idle_sleep_us: u32,
    /// The exception path: the name of a kernel interface (a DPDK `net_tap`
    /// the SBC creates) that gets the public address, its prefix and
    /// next hop; frames on the public port the poll loop does not own
    /// (TCP, so SIP over TCP/TLS; ICMP errors; ARP replies; other
    /// protocols) go to it, and what the kernel sends goes out of the
    /// public port. Required for `sip.public_tcp`/`public_tls` on this
    /// backend. Absent: no exception path (those frames are dropped).
    #[serde(default)]
    pub exception_iface: Option<String>,
}

/// `[database]`: the provisioning database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (default `sqlite://sbc.db`), `mysql://`, `mariadb://`
    /// or `postgres://` URL.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://sbc.db".into(),
        }
    }
}

/// `[api]`: the REST API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Where the API listens (default 127.0.0.1:8080).
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Run the API on an address other than loopback without a token
    /// (default false: such a config is refused, naming `api.token`).
    #[serde(default)]
    pub insecure: bool,
    /// Serve the API over HTTPS (rustls) with this certificate chain (PEM);
    /// needs `tls_key`. Read again on SIGHUP. Absent: plain HTTP.
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of `tls_cert` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<std::path::PathBuf>,
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            token: None,
            insecure: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint (`GET /metrics`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Where it listens. Default 0.0.0.0:9494.
    #[serde(default = "default_metrics_listen")]
    pub listen: SocketAddr,
    /// Tenants labelled by id in `sbc_calls_total` (the first seen); the
    /// others are counted as `tenant="other"`, 1..=10,000. Default 100.
    #[serde(default = "default_max_tenants")]
    pub max_tenants: usize,
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 9494))
}
fn default_max_tenants() -> usize {
    100
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: default_metrics_listen(),
            max_tenants: default_max_tenants(),
        }
    }
}

impl Config {
    /// Reads and checks the file at `path` (see [`Config::parse`]).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Config::parse_with_env(&text, &p, |name| std::env::var(name).ok())
    }

    /// Parses and checks a configuration; `path` names it in errors. Every
    /// error names the key at fault.
    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        Config::parse_with_env(text, path, |_| None)
    }

    /// [`Config::parse`] with the keys of the `SBC_*` variables `get`
    /// returns set over the file's ([`env::VARIABLES`]).
    pub fn parse_with_env(
        text: &str,
        path: &str,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parse = |source| ConfigError::Parse {
            path: path.into(),
            source,
        };
        let mut doc: toml::Table = toml::from_str(text).map_err(parse)?;
        let set = env::apply(&mut doc, get)
            .map_err(|(name, message)| ConfigError::Env { name, message })?;
        // From the text when no variable is set: errors then show the line.
        let cfg: Config = if set == 0 {
            toml::from_str(text).map_err(parse)?
        } else {
            Config::deserialize(toml::Value::Table(doc)).map_err(parse)?
        };
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.into(),
            key,
            message: message.into(),
        };
        if cfg.media.port_min >= cfg.media.port_max {
            return Err(invalid("media.port_min", "must be below media.port_max"));
        }
        if cfg.media.max_sessions == Some(0) {
            return Err(invalid(
                "media.max_sessions",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        let node_ok = |id: &str| {
            (1..=64).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if !node_ok(&cfg.cluster.node_id) {
            return Err(invalid(
                "cluster.node_id",
                "must be 1..=64 letters, digits, '-', '_' or '.'",
            ));
        }
        if let Some(url) = &cfg.cluster.redis {
            if let Err(e) = redis::Client::open(url.as_str()) {
                return Err(invalid(
                    "cluster.redis",
                    &format!("is not a Redis URL: {e}"),
                ));
            }
        }
        if !(1..=3_600).contains(&cfg.cluster.lease_s) {
            return Err(invalid("cluster.lease_s", "must be 1..=3600"));
        }
        if !(1..=5_000).contains(&cfg.cluster.ask_timeout_ms) {
            return Err(invalid("cluster.ask_timeout_ms", "must be 1..=5000"));
        }
        if cfg.media.timeout_s == 0 {
            return Err(invalid("media.timeout_s", "must be at least 1"));
        }
        if cfg.sip.t1_ms == 0 {
            return Err(invalid("sip.t1_ms", "must be at least 1"));
        }
        if cfg.sip.public_tls.is_some() && (cfg.tls.cert.is_none() || cfg.tls.key.is_none()) {
            return Err(invalid(
                "sip.public_tls",
                "needs tls.cert and tls.key (PEM files)",
            ));
        }
        if cfg.sip.stream_idle_timeout_s == 0 {
            return Err(invalid("sip.stream_idle_timeout_s", "must be at least 1"));
        }
        if !(1_024..=65_535).contains(&cfg.sip.max_message) {
            return Err(invalid("sip.max_message", "must be 1024..=65535 bytes"));
        }
        if cfg.flood.window_s == 0 {
            return Err(invalid("flood.window_s", "must be at least 1"));
        }
        if cfg.flood.ban_s == 0 {
            return Err(invalid("flood.ban_s", "must be at least 1"));
        }
        if !(1..=10_000_000).contains(&cfg.flood.max_sources) {
            return Err(invalid("flood.max_sources", "must be 1..=10000000"));
        }
        if cfg.flood.scanners.iter().any(|s| s.trim().is_empty()) {
            return Err(invalid("flood.scanners", "must not hold an empty string"));
        }
        if !(1_024..=1_048_576).contains(&cfg.sip.stream_max_message) {
            return Err(invalid(
                "sip.stream_max_message",
                "must be 1024..=1048576 bytes",
            ));
        }
        for (key, addr) in [
            ("sip.public_tcp", cfg.sip.public_tcp),
            ("sip.public_tls", cfg.sip.public_tls),
        ] {
            if addr.is_some_and(|a| a.ip() != cfg.sip.public.ip()) {
                return Err(invalid(key, "must be on sip.public's address"));
            }
        }
        if cfg.sip.public_tcp.is_some() && cfg.sip.public_tcp == cfg.sip.public_tls {
            return Err(invalid("sip.public_tls", "must differ from sip.public_tcp"));
        }
        if cfg.dataplane.backend == BackendKind::Dpdk {
            if !cfg!(feature = "dpdk") {
                return Err(invalid(
                    "dataplane.backend",
                    "\"dpdk\" needs an sbc built with `cargo build --release --features dpdk`",
                ));
            }
            if cfg.dataplane.dpdk.is_none() {
                return Err(invalid(
                    "dataplane.dpdk",
                    "is required when backend = \"dpdk\"",
                ));
            }
        }
        if let Some(d) = &cfg.dataplane.dpdk {
            if d.private_prefix > 32 {
                return Err(invalid("dataplane.dpdk.private_prefix", "must be 0..=32"));
            }
            if d.public_prefix > 32 {
                return Err(invalid("dataplane.dpdk.public_prefix", "must be 0..=32"));
            }
            if let Some(name) = &d.exception_iface {
                let ok = !name.is_empty()
                    && name.len() < 16
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                if !ok {
                    return Err(invalid(
                        "dataplane.dpdk.exception_iface",
                        "must be an interface name: 1..=15 letters, digits, '-' or '_'",
                    ));
                }
            }
            if cfg.dataplane.backend == BackendKind::Dpdk
                && d.exception_iface.is_none()
                && (cfg.sip.public_tcp.is_some() || cfg.sip.public_tls.is_some())
            {
                return Err(invalid(
                    "dataplane.dpdk.exception_iface",
                    "is required for sip.public_tcp / public_tls on the DPDK backend (TCP reaches the kernel through it)",
                ));
            }
            if d.idle_sleep_us > 100_000 {
                return Err(invalid(
                    "dataplane.dpdk.idle_sleep_us",
                    "must be 0..=100000 (at most 100 ms of added latency)",
                ));
            }
        }
        if let Some(c) = cfg
            .routing
            .failover_codes
            .iter()
            .find(|c| !(300..=699).contains(*c))
        {
            return Err(invalid(
                "routing.failover_codes",
                &format!("{c} is not a final failure code (300..=699)"),
            ));
        }
        if !(400..=699).contains(&cfg.routing.limit_code) {
            return Err(invalid(
                "routing.limit_code",
                "must be a 4xx, 5xx or 6xx code",
            ));
        }
        if !(100..=60_000).contains(&cfg.health.timeout_ms) {
            return Err(invalid("health.timeout_ms", "must be 100..=60000"));
        }
        if cfg.health.failures_down == 0 {
            return Err(invalid("health.failures_down", "must be at least 1"));
        }
        if cfg.health.successes_up == 0 {
            return Err(invalid("health.successes_up", "must be at least 1"));
        }
        if let Some(c) = cfg
            .health
            .ok_codes
            .iter()
            .find(|c| !(300..=699).contains(*c))
        {
            return Err(invalid(
                "health.ok_codes",
                &format!("{c} is not a final non-2xx code (300..=699)"),
            ));
        }
        if !(1..=10_000).contains(&cfg.metrics.max_tenants) {
            return Err(invalid("metrics.max_tenants", "must be 1..=10000"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&cfg.log.level) {
            return Err(invalid("log.level", &format!("not a tracing filter: {e}")));
        }
        if cfg.routing.failover_timeout_ms == 0 {
            return Err(invalid("routing.failover_timeout_ms", "must be at least 1"));
        }
        if cfg.api.token.as_deref() == Some("") {
            return Err(invalid(
                "api.token",
                "must not be empty (leave it out to disable)",
            ));
        }
        if cfg.api.token.is_none() && !cfg.api.listen.ip().is_loopback() && !cfg.api.insecure {
            return Err(invalid(
                "api.token",
                "is required when api.listen is not a loopback address (or set api.insecure = true)",
            ));
        }
        match (&cfg.api.tls_cert, &cfg.api.tls_key) {
            (Some(_), None) => return Err(invalid("api.tls_key", "is required with api.tls_cert")),
            (None, Some(_)) => return Err(invalid("api.tls_cert", "is required with api.tls_key")),
            _ => {}
        }
        if !(64..=1_048_576).contains(&cfg.dataplane.ring_size) {
            return Err(invalid("dataplane.ring_size", "must be 64..=1048576"));
        }
        let scheme = cfg.database.url.split(':').next().unwrap_or_default();
        if !["sqlite", "mysql", "mariadb", "postgres", "postgresql"].contains(&scheme) {
            return Err(invalid(
                "database.url",
                "must start with sqlite://, mysql://, mariadb:// or postgres://",
            ));
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sbc_dataplane::Side;

    pub(super) const FULL: &str = r#"
[sip]
private = "10.0.0.100:5060"
public  = "203.0.113.50:5080"
[media]
private_ip = "10.0.0.100"
public_ip  = "203.0.113.50"
port_min = 10000
port_max = 60000
[dataplane]
backend = "socket"
[dataplane.dpdk]
eal_args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix=sbc",
            "--vdev=net_af_packet0,iface=priv0", "--vdev=net_af_packet1,iface=pub0"]
private_port = 0
public_port = 1
private_prefix = 16
public_prefix = 24
[database]
url = "sqlite://sbc.db"
[api]
listen = "127.0.0.1:8080"
[metrics]
listen = "0.0.0.0:9494"
[routing]
failover_codes = [408, 500, 503]
failover_timeout_ms = 3000
limit_code = 486
retry_after_s = 2
unknown_source = "drop"
default_profile = "livekit"
offer_codecs = "PCMA, telephone-event"
[health]
interval_s = 5
timeout_ms = 1500
failures_down = 2
successes_up = 1
ok_codes = [404, 405, 501, 403]
"#;

    #[test]
    fn the_architecture_shape_is_accepted() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        assert_eq!(c.sip.public.port(), 5080);
        assert_eq!(c.dataplane.dpdk.unwrap().eal_args.len(), 7);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::parse(&FULL.replace("port_min", "port_mn"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("port_mn"), "{e}");
        let e = Config::parse(&FULL.replace("[api]", "[api]\nlisten2 = 1"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("listen2"), "{e}");
    }

    #[test]
    fn the_default_profile_is_read_and_an_unknown_one_named() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        assert_eq!(c.routing.default_profile, Profile::Livekit);
        let minimal = FULL.replace("default_profile = \"livekit\"\n", "");
        let c = Config::parse(&minimal, "t.toml").unwrap();
        assert_eq!(c.routing.default_profile, Profile::Transparent);
        let e = Config::parse(&FULL.replace("\"livekit\"", "\"LiveKit\""), "t.toml").unwrap_err();
        let e = e.to_string();
        assert!(e.contains("default_profile = \"LiveKit\""), "{e}");
        assert!(
            e.contains("unknown profile \"LiveKit\" (transparent, livekit)"),
            "{e}"
        );
    }

    #[test]
    fn offer_codecs_are_read_and_an_unknown_one_named() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        assert_eq!(c.routing.offer_codecs, [Codec::Pcma, Codec::TelephoneEvent]);
        assert_eq!(c.engine_config(1).offer_codecs, c.routing.offer_codecs);
        let minimal = FULL.replace("offer_codecs = \"PCMA, telephone-event\"\n", "");
        let c = Config::parse(&minimal, "t.toml").unwrap();
        assert_eq!(c.routing.offer_codecs, DEFAULT_CODECS);
        let e = Config::parse(&FULL.replace("PCMA, tele", "G.711, tele"), "t.toml").unwrap_err();
        let e = e.to_string();
        assert!(
            e.contains("offer_codecs") && e.contains("unknown codec \"G.711\""),
            "{e}"
        );
    }

    #[test]
    fn health_settings_are_read_checked_and_defaulted() {
        let c = Config::parse(FULL, "t.toml").unwrap();
        let h = c.engine_config(1).health;
        assert_eq!(
            (h.interval, h.timeout, h.failures_down, h.successes_up),
            (5_000, 1_500, 2, 1)
        );
        assert_eq!(h.ok_codes, [404, 405, 501, 403]);
        let minimal = FULL.split("[health]").next().unwrap();
        let h = Config::parse(minimal, "t.toml")
            .unwrap()
            .health
            .health_config();
        assert_eq!(h, HealthConfig::off());
        for (from, to, key) in [
            ("timeout_ms = 1500", "timeout_ms = 10", "health.timeout_ms"),
            (
                "failures_down = 2",
                "failures_down = 0",
                "health.failures_down",
            ),
            (
                "successes_up = 1",
                "successes_up = 0",
                "health.successes_up",
            ),
            ("501, 403]", "501, 200]", "health.ok_codes"),
        ] {
            let e = Config::parse(&FULL.replace(from, to), "t.toml").unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn the_log_format_and_level_are_read_and_checked() {
        let c = Config::parse(
            &format!("{FULL}[log]\nformat = \"json\"\nlevel = \"info,sbc::call=warn\"\n"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(
            Config::parse(FULL, "t.toml").unwrap().log.format,
            LogFormat::Text
        );
        let e = Config::parse(&format!("{FULL}[log]\nformat = \"xml\"\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("xml"), "{e}");
        let e =
            Config::parse(&format!("{FULL}[log]\nlevel = \"info,=[\"\n"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("log.level"), "{e}");
    }

    #[test]
    fn every_key_can_come_from_the_environment() {
        use std::collections::HashMap;
        let vars: HashMap<&str, &str> = [
            ("SBC_DATABASE_URL", "mysql://sbc:s3cret@db/sbc"),
            ("SBC_API_TOKEN", "12345"),
            ("SBC_HEALTH_INTERVAL_S", "10"),
            ("SBC_ROUTING_FAILOVER_CODES", "408, 503"),
            ("SBC_SIP_STRIP_ISUP", "true"),
            ("SBC_DATAPLANE_DPDK_EAL_ARGS", "--no-huge -m 256"),
            ("SBC_LOG_FORMAT", "json"),
        ]
        .into();
        let c =
            Config::parse_with_env(FULL, "t.toml", |n| vars.get(n).map(|v| v.to_string())).unwrap();
        assert_eq!(c.database.url, "mysql://sbc:s3cret@db/sbc");
        assert_eq!(c.api.token.as_deref(), Some("12345"));
        assert_eq!(c.health.interval_s, 10);
        assert_eq!(c.routing.failover_codes, [408, 503]);
        assert!(c.sip.strip_isup);
        assert_eq!(
            c.dataplane.dpdk.unwrap().eal_args,
            ["--no-huge", "-m", "256"]
        );
        assert_eq!(c.log.format, LogFormat::Json);
        // [sip] itself may come from the environment.
        let only = |n: &str| match n {
            "SBC_SIP_PRIVATE" => Some("10.0.0.100:5060".to_string()),
            "SBC_SIP_PUBLIC" => Some("203.0.113.50:5080".to_string()),
            _ => None,
        };
        assert_eq!(
            Config::parse_with_env("", "t.toml", only)
                .unwrap()
                .sip
                .public
                .port(),
            5080
        );
        // A value that does not read names its variable; a wrong one its key.
        let bad = |n: &str| (n == "SBC_HEALTH_INTERVAL_S").then(|| "often".to_string());
        let e = Config::parse_with_env(FULL, "t.toml", bad)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("SBC_HEALTH_INTERVAL_S") && e.contains("\"often\" is not an integer"),
            "{e}"
        );
        let bad = |n: &str| (n == "SBC_ROUTING_LIMIT_CODE").then(|| "200".to_string());
        let e = Config::parse_with_env(FULL, "t.toml", bad)
            .unwrap_err()
            .to_string();
        assert!(e.contains("routing.limit_code"), "{e}");
        // Every key the full example sets has its variable.
        let doc: toml::Table = toml::from_str(FULL).unwrap();
        for (section, keys) in &doc {
            let toml::Value::Table(keys) = keys else {
                continue;
            };
            for (key, v) in keys {
                if let toml::Value::Table(inner) = v {
                    for k in inner.keys() {
                        let dotted = format!("{section}.{key}.{k}");
                        assert!(
                            env::VARIABLES.iter().any(|(_, d, _)| *d == dotted),
                            "{dotted}"
                        );
                    }
                    continue;
                }
                let dotted = format!("{section}.{key}");
                assert!(
                    env::VARIABLES.iter().any(|(_, d, _)| *d == dotted),
                    "{dotted}"
                );
            }
        }
    }

    #[test]
    fn an_api_open_beyond_loopback_needs_a_token() {
        let open = FULL.replace("listen = \"127.0.0.1:8080\"", "listen = \"0.0.0.0:8080\"");
        assert_ne!(open, FULL);
        let e = Config::parse(&open, "t.toml").unwrap_err();
        assert!(e.to_string().contains("api.token"), "{e}");
        let c = Config::parse(&open.replace("[api]", "[api]\ntoken = \"t\""), "t.toml").unwrap();
        assert!(c.api.token.is_some());
        let c = Config::parse(&open.replace("[api]", "[api]\ninsecure = true"), "t.toml");
        assert!(c.unwrap().api.insecure);
    }

    #[test]
    fn bad_values_are_named() {
        let e =
            Config::parse(&FULL.replace("203.0.113.50:5080", "nonsense"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("public"), "{e}");
        if !cfg!(feature = "dpdk") {
            let e = Config::parse(&FULL.replace("\"socket\"", "\"dpdk\""), "t.toml").unwrap_err();
            assert!(e.to_string().contains("dataplane.backend"), "{e}");
        }
    }

    #[test]
    fn tcp_and_tls_settings_are_checked_naming_the_key() {
        let sip = "[sip]\nprivate = \"10.0.0.100:5060\"\npublic = \"203.0.113.50:5080\"\n";
        let cases = [
            ("public_tls = \"203.0.113.50:5081\"\n", "", "sip.public_tls"),
            ("public_tcp = \"192.0.2.1:5080\"\n", "", "sip.public_tcp"),
            ("stream_max_message = 10\n", "", "sip.stream_max_message"),
            (
                "stream_idle_timeout_s = 0\n",
                "",
                "sip.stream_idle_timeout_s",
            ),
            ("", "[tls]\nclient_cert = \"/x.pem\"\n", "tls"),
            ("", "[tls]\nverify = \"no\"\n", "verify"),
            ("", "[api]\ntls_cert = \"/a.pem\"\n", "api.tls_key"),
            ("", "[api]\ntls_key = \"/a.key\"\n", "api.tls_cert"),
        ];
        for (extra, tables, key) in cases {
            let text = format!("{sip}{extra}{tables}");
            match Config::parse(&text, "t.toml") {
                // `[tls] client_cert` without its key is refused when TLS is set up.
                Ok(c) => {
                    let e = crate::stream::tls::Tls::new(&c.tls, false).unwrap_err();
                    assert!(e.to_string().contains("tls.client_key"), "{e}");
                }
                Err(e) => assert!(e.to_string().contains(key), "{text}: {e}"),
            }
        }
        let ok = format!(
            "{sip}public_tcp = \"203.0.113.50:5080\"\npublic_tls = \"203.0.113.50:5081\"\n\
             [tls]\ncert = \"/c.pem\"\nkey = \"/k.pem\"\nverify = false\n"
        );
        let c = Config::parse(&ok, "t.toml").unwrap();
        let engine = c.engine_config(1);
        assert_eq!(
            engine.tcp[Side::Public],
            Some("203.0.113.50:5080".parse().unwrap())
        );
        assert_eq!(
            engine.tls[Side::Public],
            Some("203.0.113.50:5081".parse().unwrap())
        );
        assert_eq!(c.stream_config().idle.as_secs(), 3600);
        assert!(!c.tls.verify);
    }
}
