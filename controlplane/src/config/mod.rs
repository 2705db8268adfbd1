//! The TOML configuration: typed, strict (unknown keys are errors that name
//! the key), with the shape of ARCHITECTURE.md accepted in full.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: `{key}`: {message}")]
    Invalid {
        path: String,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
}

/// The routing policy knobs (Kamailio's dispatcher / permissions settings).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Gateway answers that make an INVITE fail over to the next gateway.
    #[serde(default = "default_failover_codes")]
    pub failover_codes: Vec<u16>,
    /// How long a silent gateway is waited for while another one is left.
    #[serde(default = "default_failover_timeout")]
    pub failover_timeout_ms: u64,
    /// The answer to an INVITE over its tenant's CPS or concurrency limit.
    #[serde(default = "default_limit_code")]
    pub limit_code: u16,
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u32,
    /// What an INVITE from a source that is not a carrier gets.
    #[serde(default)]
    pub unknown_source: UnknownSource,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSource {
    /// 403 Forbidden.
    #[default]
    Reject,
    /// No answer at all.
    Drop,
}

fn default_failover_codes() -> Vec<u16> {
    vec![408, 500, 502, 503, 504]
}
fn default_failover_timeout() -> u64 {
    5_000
}
fn default_limit_code() -> u16 {
    503
}
fn default_retry_after() -> u32 {
    1
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            failover_codes: default_failover_codes(),
            failover_timeout_ms: default_failover_timeout(),
            limit_code: default_limit_code(),
            retry_after_s: default_retry_after(),
            unknown_source: UnknownSource::Reject,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipConfig {
    /// Private (carrier) side SIP address.
    pub private: SocketAddrV4,
    /// Public (gateway) side SIP address.
    pub public: SocketAddrV4,
    /// RFC 3261 T1 in milliseconds.
    #[serde(default = "default_t1")]
    pub t1_ms: u64,
    /// Core the SIP engine thread is pinned to (default: the last core).
    #[serde(default)]
    pub engine_core: Option<usize>,
}

fn default_t1() -> u64 {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub private_ip: Option<Ipv4Addr>,
    pub public_ip: Option<Ipv4Addr>,
    #[serde(default = "default_port_min")]
    pub port_min: u16,
    #[serde(default = "default_port_max")]
    pub port_max: u16,
    /// An answered call whose media stops this long is ended with BYEs.
    #[serde(default = "default_media_timeout")]
    pub timeout_s: u64,
}

fn default_media_timeout() -> u64 {
    60
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
            port_min: 10_000,
            port_max: 60_000,
            timeout_s: default_media_timeout(),
        }
    }
}

/// Which I/O backend runs the dataplane (`[dataplane] backend`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    #[default]
    Socket,
    Dpdk,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Socket => "socket",
            BackendKind::Dpdk => "dpdk",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub backend: BackendKind,
    pub dpdk: Option<DpdkConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkConfig {
    #[serde(default)]
    pub eal_args: Vec<String>,
    pub private_port: u16,
    pub public_port: u16,
    pub private_prefix: u8,
    pub public_prefix: u8,
    pub private_next_hop: Option<Ipv4Addr>,
    pub public_next_hop: Option<Ipv4Addr>,
    /// Microseconds the poll loop sleeps after 1,024 empty polls in a row
    /// (0: pure busy polling, the default; >0 leaves the core to others on
    /// hosts that share it, at the cost of that much latency after a lull).
    #[serde(default)]
    pub idle_sleep_us: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://sbc.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    /// When set, every request needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            token: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 9494)),
        }
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Config::parse(&text, &p)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source,
        })?;
        let invalid = |key, message: &str| ConfigError::Invalid {
            path: path.into(),
            key,
            message: message.into(),
        };
        if cfg.media.port_min >= cfg.media.port_max {
            return Err(invalid("media.port_min", "must be below media.port_max"));
        }
        if cfg.media.timeout_s == 0 {
            return Err(invalid("media.timeout_s", "must be at least 1"));
        }
        if cfg.sip.t1_ms == 0 {
            return Err(invalid("sip.t1_ms", "must be at least 1"));
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
        if cfg.routing.failover_timeout_ms == 0 {
            return Err(invalid("routing.failover_timeout_ms", "must be at least 1"));
        }
        if cfg.api.token.as_deref() == Some("") {
            return Err(invalid(
                "api.token",
                "must not be empty (leave it out to disable)",
            ));
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

    const FULL: &str = r#"
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
    fn bad_values_are_named() {
        let e =
            Config::parse(&FULL.replace("203.0.113.50:5080", "nonsense"), "t.toml").unwrap_err();
        assert!(e.to_string().contains("public"), "{e}");
        if !cfg!(feature = "dpdk") {
            let e = Config::parse(&FULL.replace("\"socket\"", "\"dpdk\""), "t.toml").unwrap_err();
            assert!(e.to_string().contains("dataplane.backend"), "{e}");
        }
    }
}
