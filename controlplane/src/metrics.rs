//! Prometheus metrics on `[metrics] listen` (`GET /metrics`, OpenMetrics 1.0
//! text as written by prometheus-client, served with its content type).
//!
//! Two kinds:
//! - **Read at scrape time** ([`Live`], a prometheus-client `Collector`):
//!   the data plane's counters from the very lists `GET /api/v1/status`
//!   shows (`EngineStats::sip_counters`, `IoStats::counters`,
//!   `MediaStats::counters`, each port's), as `sbc_sip_*`, `sbc_io_*`,
//!   `sbc_media_*`, `sbc_port_*{side}`; gateway health per gateway
//!   (`sbc_gateway_up{gateway}`, `sbc_gateway_probe_latency_seconds`);
//!   the database (`sbc_database_up`); `sbc_build_info`.
//! - **Recorded as calls end** ([`CallMetrics`], fed where the API drains
//!   the engine's rings): calls by tenant, direction and result
//!   (`sbc_calls_total`), setup and answered-duration histograms
//!   (`sbc_call_setup_seconds`, `sbc_call_duration_seconds`), and RTP per
//!   side (`sbc_rtp_packets_total`, `_bytes_total`, `_lost_total`,
//!   `sbc_rtp_jitter_seconds`).
//!
//! Label sets stay bounded: tenants beyond `[metrics] max_tenants` are
//! counted as `tenant="other"`, gateways are labelled by id.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};
use sbc_dataplane::call::{CallEvent, CallRecord, RtpSummary};
use sbc_dataplane::stats::Counter as AtomicCounter;
use sbc_dataplane::Side;

use crate::api::AppState;

/// Counters of the status lists that are gauges (a level, not a count).
const GAUGES: &[&str] = &[
    "calls_up",
    "dialogs",
    "transactions",
    "snapshot_version",
    "streams",
    "sockets",
    "sockets_idle",
    "bans_active",
];

/// `{tenant, direction, result}` of `sbc_calls_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    tenant: String,
    direction: String,
    result: String,
}

/// `{side}`: `private` (carriers) or `public` (gateways).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SideLabel {
    side: String,
}

/// `{direction}` of the call histograms.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DirectionLabel {
    direction: String,
}

/// Histogram buckets `start · factor^i`, `i < n`, for a family's members.
#[derive(Debug, Clone, Copy)]
struct Buckets {
    start: f64,
    factor: f64,
    n: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, self.factor, self.n))
    }
}

type Histograms<L> = Family<L, Histogram, Buckets>;

/// The metrics recorded as calls end.
#[derive(Debug)]
pub struct CallMetrics {
    calls: Family<CallLabels, Counter>,
    setup: Histograms<DirectionLabel>,
    duration: Histograms<DirectionLabel>,
    packets: Family<SideLabel, Counter>,
    bytes: Family<SideLabel, Counter>,
    lost: Family<SideLabel, Counter>,
    jitter: Histograms<SideLabel>,
    max_tenants: usize,
    tenants: Mutex<BTreeSet<String>>,
}

/// `inbound` or `outbound` for a call whose caller is on `side`.
fn direction(side: Side) -> &'static str {
    crate::api::model::Direction::of(side).name()
}

impl CallMetrics {
    /// Empty metrics, at most `max_tenants` tenant labels.
    pub fn new(max_tenants: usize) -> Arc<CallMetrics> {
        let buckets = |start, factor, n| Buckets { start, factor, n };
        Arc::new(CallMetrics {
            calls: Family::default(),
            // 10 ms .. ~82 s.
            setup: Family::new_with_constructor(buckets(0.01, 2.0, 14)),
            // 1 s .. ~4.5 h.
            duration: Family::new_with_constructor(buckets(1.0, 2.0, 15)),
            packets: Family::default(),
            bytes: Family::default(),
            lost: Family::default(),
            // 0.5 ms .. ~0.5 s.
            jitter: Family::new_with_constructor(buckets(0.0005, 2.0, 11)),
            max_tenants,
            tenants: Mutex::new(BTreeSet::new()),
        })
    }

    /// The tenant's label: its id, `-` for none, `other` beyond the first
    /// `max_tenants` seen.
    fn tenant_label(&self, tenant: Option<&str>) -> String {
        let Some(t) = tenant else {
            return "-".to_string();
        };
        let Ok(mut seen) = self.tenants.lock() else {
            return "other".to_string();
        };
        if seen.contains(t) || seen.len() < self.max_tenants {
            seen.insert(t.to_string());
            t.to_string()
        } else {
            "other".to_string()
        }
    }

    /// One call attempt's outcome.
    pub fn event(&self, e: &CallEvent) {
        let labels = CallLabels {
            tenant: self.tenant_label(e.tenant.as_deref()),
            direction: e.caller_side.map_or("-", direction).to_string(),
            result: e.result.name().to_string(),
        };
        self.calls.get_or_create(&labels).inc();
    }

    /// One finished call: its setup time, answered duration and media.
    pub fn record(&self, r: &CallRecord) {
        let dir = DirectionLabel {
            direction: direction(r.caller_side).to_string(),
        };
        if let Some(ms) = r.setup_ms {
            self.setup.get_or_create(&dir).observe(ms as f64 / 1000.0);
            self.duration
                .get_or_create(&dir)
                .observe(r.duration_ms as f64 / 1000.0);
        }
        for line in &r.media {
            // What the caller sent arrived on the caller's side.
            for (side, x) in [
                (r.caller_side, &line.from_caller),
                (r.caller_side.other(), &line.from_callee),
            ] {
                self.rtp(side, x);
            }
        }
    }

    fn rtp(&self, side: Side, x: &RtpSummary) {
        if x.packets == 0 {
            return;
        }
        let l = SideLabel {
            side: side.name().to_string(),
        };
        self.packets.get_or_create(&l).inc_by(x.packets);
        self.bytes.get_or_create(&l).inc_by(x.bytes);
        self.lost.get_or_create(&l).inc_by(x.lost);
        self.jitter.get_or_create(&l).observe(x.jitter_ms / 1000.0);
    }
}

/// The whole registry: [`CallMetrics`] and the [`Live`] collector.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Fed as the API drains the engine's rings.
    pub calls: Arc<CallMetrics>,
}

impl Metrics {
    /// The metrics of an SBC whose API state is `state` (its
    /// [`AppState::call_metrics`] feeds the call families); `db_up` is kept
    /// current by the caller.
    pub fn new(state: &AppState, db_up: Arc<AtomicBool>) -> Metrics {
        let calls = state.call_metrics.clone();
        let mut registry = Registry::default();
        let sbc = registry.sub_registry_with_prefix("sbc");
        sbc.register(
            "calls",
            "Call attempts by tenant, direction (inbound: from a carrier) and result",
            calls.calls.clone(),
        );
        sbc.register_with_unit(
            "call_setup",
            "Time from the INVITE to the 2xx of answered calls",
            Unit::Seconds,
            calls.setup.clone(),
        );
        sbc.register_with_unit(
            "call_duration",
            "Time from the 2xx to the end of answered calls",
            Unit::Seconds,
            calls.duration.clone(),
        );
        sbc.register(
            "rtp_packets",
            "RTP packets received from the peers on each side, of finished calls",
            calls.packets.clone(),
        );
        sbc.register_with_unit(
            "rtp",
            "RTP bytes (UDP payload) received on each side, of finished calls",
            Unit::Bytes,
            calls.bytes.clone(),
        );
        sbc.register(
            "rtp_lost",
            "RTP packets lost (expected minus received) on each side, of finished calls",
            calls.lost.clone(),
        );
        sbc.register_with_unit(
            "rtp_jitter",
            "Interarrival jitter (RFC 3550) of each finished call's media line, per side",
            Unit::Seconds,
            calls.jitter.clone(),
        );
        sbc.register(
            "build",
            "The SBC's version and backend",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("backend".to_string(), state.backend.to_string()),
            ]),
        );
        registry.register_collector(Box::new(Live {
            state: state.clone(),
            db_up,
        }));
        Metrics { registry, calls }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# encoding failed");
        }
        out
    }
}

/// What is read at scrape time.
#[derive(Debug)]
struct Live {
    state: AppState,
    db_up: Arc<AtomicBool>,
}

/// Writes one status list as metrics named `sbc_<group>_<name>`: gauges for
/// [`GAUGES`], counters (`_total`) for the rest.
fn encode_list(
    encoder: &mut DescriptorEncoder,
    group: &str,
    list: &[(&'static str, &AtomicCounter)],
) -> Result<(), std::fmt::Error> {
    for (name, c) in list {
        // prometheus-client adds `_total` to counters itself.
        let base = name.strip_suffix("_total").unwrap_or(name);
        let full = format!("sbc_{group}_{base}");
        let help = format!("{group}.{name} of GET /api/v1/status");
        if GAUGES.contains(name) {
            let g = ConstGauge::new(c.get() as i64);
            g.encode(encoder.encode_descriptor(&full, &help, None, g.metric_type())?)?;
        } else {
            let k = ConstCounter::new(c.get());
            k.encode(encoder.encode_descriptor(&full, &help, None, k.metric_type())?)?;
        }
    }
    Ok(())
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let up = ConstGauge::new(self.state.stats.engine.calls_up.get() as i64);
        up.encode(encoder.encode_descriptor(
            "sbc_calls_up",
            "Answered calls in progress",
            None,
            up.metric_type(),
        )?)?;
        encode_list(&mut encoder, "sip", &self.state.stats.engine.sip_counters())?;
        // The counters of the backend in use, as the status shows them.
        let dpdk = self.state.backend == "dpdk";
        encode_list(&mut encoder, "io", &self.state.stats.io.counters_of(dpdk))?;
        encode_list(&mut encoder, "media", &self.state.stats.media.counters())?;
        // SIP over TCP/TLS: `sbc_streams_<name>`, `open` a gauge.
        if let Some(streams) = &self.state.streams {
            for (name, v) in streams.counters() {
                let full = format!("sbc_streams_{name}");
                let help = format!("streams.{name} of GET /api/v1/status");
                if name == "open" {
                    let g = ConstGauge::new(v as i64);
                    g.encode(encoder.encode_descriptor(&full, &help, None, g.metric_type())?)?;
                } else {
                    let k = ConstCounter::new(v);
                    k.encode(encoder.encode_descriptor(&full, &help, None, k.metric_type())?)?;
                }
            }
        }
        // Each DPDK port's driver counters, by side.
        let ports: Vec<(Side, Vec<(&'static str, u64)>)> = if dpdk {
            self.state
                .stats
                .io
                .ports
                .iter()
                .map(|(side, p)| {
                    (
                        side,
                        p.counters().iter().map(|(n, c)| (*n, c.get())).collect(),
                    )
                })
                .collect()
        } else {
            Vec::new()
        };
        if let Some((_, first)) = ports.first() {
            for (i, (name, _)) in first.iter().enumerate() {
                let full = format!("sbc_port_{name}");
                let mut family = encoder.encode_descriptor(
                    &full,
                    "DPDK port driver counter, by side",
                    None,
                    prometheus_client::metrics::MetricType::Counter,
                )?;
                for (side, values) in &ports {
                    let labels = [("side", side.name())];
                    let v = values.get(i).map_or(0, |(_, v)| *v);
                    ConstCounter::new(v).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        // Gateway health, labelled by gateway id.
        self.state.drain_health_reports();
        let list = self.state.dispatcher();
        let mut up = encoder.encode_descriptor(
            "sbc_gateway_up",
            "1 when routing uses the gateway (health up, not disabled)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for d in &list.destinations {
            let id = d.id.to_string();
            let labels = [("gateway", id.as_str()), ("group", &d.group.to_string())];
            ConstGauge::new(i64::from(d.state == "up")).encode(up.encode_family(&labels)?)?;
        }
        let mut latency = encoder.encode_descriptor(
            "sbc_gateway_probe_latency_seconds",
            "Round trip of the gateway's last answered OPTIONS probe",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for d in &list.destinations {
            if let Some(ms) = d.latency_last_ms {
                let id = d.id.to_string();
                let labels = [("gateway", id.as_str())];
                ConstGauge::new(ms as f64 / 1000.0).encode(latency.encode_family(&labels)?)?;
            }
        }
        // How full the rings between threads are (their drops are counted
        // under sip and io).
        let rings = self.state.stats.rings();
        let mut used = encoder.encode_descriptor(
            "sbc_ring_entries",
            "Entries waiting in a ring between threads now",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in &rings {
            ConstGauge::new(r.len as i64).encode(used.encode_family(&[("ring", r.name)])?)?;
        }
        let mut size = encoder.encode_descriptor(
            "sbc_ring_capacity_entries",
            "Entries a ring between threads holds at most",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for r in &rings {
            ConstGauge::new(r.capacity as i64).encode(size.encode_family(&[("ring", r.name)])?)?;
        }
        // CPU per kind of thread: its rate is the thread's busy ratio.
        let mut cpu = encoder.encode_descriptor(
            "sbc_thread_cpu",
            "CPU time (user + system) of the process's threads, by thread name",
            Some(&prometheus_client::registry::Unit::Seconds),
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (name, seconds) in crate::threads::cpu_seconds() {
            ConstCounter::new(seconds).encode(cpu.encode_family(&[("thread", name.as_str())])?)?;
        }
        let db = ConstGauge::new(i64::from(self.db_up.load(Ordering::Relaxed)));
        db.encode(encoder.encode_descriptor(
            "sbc_database_up",
            "1 when the provisioning database answered the last check",
            None,
            db.metric_type(),
        )?)?;
        if let Some(c) = &self.state.cluster {
            let st = &c.state;
            let up = ConstGauge::new(i64::from(st.store_up.load(Ordering::Relaxed)));
            up.encode(encoder.encode_descriptor(
                "sbc_cluster_store_up",
                "1 when the cluster store (Redis/Valkey) answers; 0: tenant limits by this node's share",
                None,
                up.metric_type(),
            )?)?;
            let nodes = st.members.lock().map(|m| m.len()).unwrap_or(0);
            let n = ConstGauge::new(nodes as i64);
            n.encode(encoder.encode_descriptor(
                "sbc_cluster_nodes",
                "Live nodes in the cluster's membership at the latest heartbeat",
                None,
                n.metric_type(),
            )?)?;
            let mut verdicts = encoder.encode_descriptor(
                "sbc_cluster_admissions",
                "Cluster-wide admission verdicts of this node, by verdict",
                None,
                prometheus_client::metrics::MetricType::Counter,
            )?;
            for (name, v) in [
                ("granted", &st.granted),
                ("refused", &st.refused),
                ("store_error", &st.store_errors),
            ] {
                ConstCounter::new(v.load(Ordering::Relaxed))
                    .encode(verdicts.encode_family(&[("verdict", name)])?)?;
            }
        }
        Ok(())
    }
}
