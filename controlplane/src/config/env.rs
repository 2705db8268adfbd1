//! Configuration from the environment: every key of the file can also be
//! set by a variable `SBC_<SECTION>_<KEY>` in capitals (`SBC_DATABASE_URL`,
//! `SBC_API_TOKEN`, `SBC_HEALTH_INTERVAL_S`, `SBC_DATAPLANE_DPDK_EAL_ARGS`),
//! which wins over the file, as container deployments pass secrets.
//! [`VARIABLES`] lists them with the kind of value each takes; a value that
//! does not read as its kind is a config error naming the variable.

use toml::{Table, Value};

/// What a variable's text is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Taken as it is.
    Text,
    /// A decimal integer.
    Integer,
    /// `true` or `false`.
    Bool,
    /// Comma-separated integers (`408,500,503`).
    Integers,
    /// Whitespace-separated words (`--no-huge -m 512`).
    Words,
}

/// Every variable: its name, the dotted key it sets, and its kind.
pub const VARIABLES: &[(&str, &str, Kind)] = &[
    ("SBC_SIP_PRIVATE", "sip.private", Kind::Text),
    ("SBC_SIP_PUBLIC", "sip.public", Kind::Text),
    ("SBC_SIP_T1_MS", "sip.t1_ms", Kind::Integer),
    ("SBC_SIP_ENGINE_CORE", "sip.engine_core", Kind::Integer),
    ("SBC_SIP_STRIP_ISUP", "sip.strip_isup", Kind::Bool),
    ("SBC_MEDIA_PRIVATE_IP", "media.private_ip", Kind::Text),
    ("SBC_MEDIA_PUBLIC_IP", "media.public_ip", Kind::Text),
    ("SBC_MEDIA_PORT_MIN", "media.port_min", Kind::Integer),
    ("SBC_MEDIA_PORT_MAX", "media.port_max", Kind::Integer),
    ("SBC_MEDIA_TIMEOUT_S", "media.timeout_s", Kind::Integer),
    (
        "SBC_MEDIA_HOLD_TIMEOUT_S",
        "media.hold_timeout_s",
        Kind::Integer,
    ),
    (
        "SBC_MEDIA_MAX_SESSIONS",
        "media.max_sessions",
        Kind::Integer,
    ),
    ("SBC_DATAPLANE_BACKEND", "dataplane.backend", Kind::Text),
    (
        "SBC_DATAPLANE_RING_SIZE",
        "dataplane.ring_size",
        Kind::Integer,
    ),
    (
        "SBC_DATAPLANE_DPDK_EAL_ARGS",
        "dataplane.dpdk.eal_args",
        Kind::Words,
    ),
    (
        "SBC_DATAPLANE_DPDK_PRIVATE_PORT",
        "dataplane.dpdk.private_port",
        Kind::Integer,
    ),
    (
        "SBC_DATAPLANE_DPDK_PUBLIC_PORT",
        "dataplane.dpdk.public_port",
        Kind::Integer,
    ),
    (
        "SBC_DATAPLANE_DPDK_PRIVATE_PREFIX",
        "dataplane.dpdk.private_prefix",
        Kind::Integer,
    ),
    (
        "SBC_DATAPLANE_DPDK_PUBLIC_PREFIX",
        "dataplane.dpdk.public_prefix",
        Kind::Integer,
    ),
    (
        "SBC_DATAPLANE_DPDK_PRIVATE_NEXT_HOP",
        "dataplane.dpdk.private_next_hop",
        Kind::Text,
    ),
    (
        "SBC_DATAPLANE_DPDK_PUBLIC_NEXT_HOP",
        "dataplane.dpdk.public_next_hop",
        Kind::Text,
    ),
    (
        "SBC_DATAPLANE_DPDK_IDLE_SLEEP_US",
        "dataplane.dpdk.idle_sleep_us",
        Kind::Integer,
    ),
    ("SBC_DATABASE_URL", "database.url", Kind::Text),
    ("SBC_API_LISTEN", "api.listen", Kind::Text),
    ("SBC_API_INSECURE", "api.insecure", Kind::Bool),
    ("SBC_API_TOKEN", "api.token", Kind::Text),
    ("SBC_API_TLS_CERT", "api.tls_cert", Kind::Text),
    ("SBC_API_TLS_KEY", "api.tls_key", Kind::Text),
    ("SBC_METRICS_LISTEN", "metrics.listen", Kind::Text),
    (
        "SBC_METRICS_MAX_TENANTS",
        "metrics.max_tenants",
        Kind::Integer,
    ),
    (
        "SBC_ROUTING_FAILOVER_CODES",
        "routing.failover_codes",
        Kind::Integers,
    ),
    (
        "SBC_ROUTING_FAILOVER_TIMEOUT_MS",
        "routing.failover_timeout_ms",
        Kind::Integer,
    ),
    (
        "SBC_ROUTING_LIMIT_CODE",
        "routing.limit_code",
        Kind::Integer,
    ),
    (
        "SBC_ROUTING_RETRY_AFTER_S",
        "routing.retry_after_s",
        Kind::Integer,
    ),
    (
        "SBC_ROUTING_UNKNOWN_SOURCE",
        "routing.unknown_source",
        Kind::Text,
    ),
    (
        "SBC_ROUTING_DEFAULT_PROFILE",
        "routing.default_profile",
        Kind::Text,
    ),
    (
        "SBC_ROUTING_OFFER_CODECS",
        "routing.offer_codecs",
        Kind::Text,
    ),
    ("SBC_HEALTH_INTERVAL_S", "health.interval_s", Kind::Integer),
    ("SBC_HEALTH_TIMEOUT_MS", "health.timeout_ms", Kind::Integer),
    (
        "SBC_HEALTH_FAILURES_DOWN",
        "health.failures_down",
        Kind::Integer,
    ),
    (
        "SBC_HEALTH_SUCCESSES_UP",
        "health.successes_up",
        Kind::Integer,
    ),
    ("SBC_HEALTH_OK_CODES", "health.ok_codes", Kind::Integers),
    (
        "SBC_HEALTH_PROBE_CARRIERS",
        "health.probe_carriers",
        Kind::Bool,
    ),
    ("SBC_CDR_ENABLED", "cdr.enabled", Kind::Bool),
    ("SBC_CDR_KEEP_DAYS", "cdr.keep_days", Kind::Integer),
    ("SBC_SHUTDOWN_DRAIN_S", "shutdown.drain_s", Kind::Integer),
    ("SBC_SIP_MAX_MESSAGE", "sip.max_message", Kind::Integer),
    ("SBC_FLOOD_WINDOW_S", "flood.window_s", Kind::Integer),
    ("SBC_FLOOD_REQUESTS", "flood.requests", Kind::Integer),
    ("SBC_FLOOD_BAN_S", "flood.ban_s", Kind::Integer),
    ("SBC_FLOOD_MAX_SOURCES", "flood.max_sources", Kind::Integer),
    ("SBC_HEP_COLLECTOR", "hep.collector", Kind::Text),
    ("SBC_HEP_NODE_ID", "hep.node_id", Kind::Integer),
    ("SBC_HEP_PASSWORD", "hep.password", Kind::Text),
    ("SBC_LOG_FORMAT", "log.format", Kind::Text),
    ("SBC_LOG_LEVEL", "log.level", Kind::Text),
    ("SBC_CLUSTER_NODE_ID", "cluster.node_id", Kind::Text),
    ("SBC_CLUSTER_REDIS", "cluster.redis", Kind::Text),
    ("SBC_CLUSTER_LEASE_S", "cluster.lease_s", Kind::Integer),
    (
        "SBC_CLUSTER_ASK_TIMEOUT_MS",
        "cluster.ask_timeout_ms",
        Kind::Integer,
    ),
];

/// `text` read as `kind`; `None` when it does not read.
fn value_of(text: &str, kind: Kind) -> Option<Value> {
    let t = text.trim();
    Some(match kind {
        Kind::Text => Value::String(text.to_string()),
        Kind::Integer => Value::Integer(t.parse().ok()?),
        Kind::Bool => Value::Boolean(t.parse().ok()?),
        Kind::Integers => Value::Array(
            t.split(',')
                .map(|x| x.trim().parse().ok().map(Value::Integer))
                .collect::<Option<_>>()?,
        ),
        Kind::Words => Value::Array(
            t.split_whitespace()
                .map(|w| Value::String(w.to_string()))
                .collect(),
        ),
    })
}

/// Sets in `doc` every key whose variable `get` returns, creating the
/// sections it needs; how many were set.
///
/// # Errors
/// `(variable, message)` for a value that does not read as its kind.
pub fn apply(
    doc: &mut Table,
    get: impl Fn(&str) -> Option<String>,
) -> Result<usize, (String, String)> {
    let mut set = 0;
    for &(name, key, kind) in VARIABLES {
        let Some(text) = get(name) else {
            continue;
        };
        let value = value_of(&text, kind).ok_or_else(|| {
            let what = match kind {
                Kind::Text | Kind::Words => "text",
                Kind::Integer => "an integer",
                Kind::Bool => "true or false",
                Kind::Integers => "integers separated by commas",
            };
            (
                name.to_string(),
                format!("{text:?} is not {what} (sets {key})"),
            )
        })?;
        let mut parts: Vec<&str> = key.split('.').collect();
        let Some(last) = parts.pop() else {
            continue;
        };
        let mut table = &mut *doc;
        for p in parts {
            let entry = table
                .entry(p.to_string())
                .or_insert_with(|| Value::Table(Table::new()));
            let Value::Table(t) = entry else {
                return Err((
                    name.to_string(),
                    format!("`{p}` in the file is not a section"),
                ));
            };
            table = t;
        }
        table.insert(last.to_string(), value);
        set += 1;
    }
    Ok(set)
}
