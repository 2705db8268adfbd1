//! Status and statistics: `GET /api/v1/status`, `GET /api/v1/stats/calls`
//! and `GET /api/v1/calls`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use sbc_dataplane::call::{self, RtpSummary};
use sbc_dataplane::stats::Counter;

use super::model::{
    CallList, CallRecord, CallStats, CallsQuery, DatabaseState, Direction, GatewayHealth, IoStatus,
    MediaFigures, PortStatus, Provisioned, RtpFigures, Status,
};
use super::{ApiError, ApiJson, AppState};

/// `GET /api/v1/stats/calls`: outcomes by tenant and result since start.
pub(super) async fn call_stats(State(s): State<AppState>) -> ApiJson<CallStats> {
    s.drain_call_events();
    let counts = s.calls.lock().map(|c| c.clone()).unwrap_or_default();
    let mut totals: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_tenant = BTreeMap::new();
    for (tenant, per) in counts {
        let per: BTreeMap<String, u64> = per.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        for (k, v) in &per {
            *totals.entry(k.clone()).or_default() += v;
        }
        by_tenant.insert(tenant, per);
    }
    ApiJson(CallStats {
        since_s: s.started.elapsed().as_secs(),
        calls_up: s.stats.engine.calls_up.get(),
        by_tenant,
        totals,
    })
}

/// `GET /api/v1/calls?limit=N`: the latest finished calls, newest first,
/// with what their media carried each way.
pub(super) async fn recent_calls(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<ApiJson<CallList>, ApiError> {
    let q = CallsQuery::from_pairs(&q)?;
    s.drain_call_events();
    let records = s.records.lock().map(|r| r.clone()).unwrap_or_default();
    let calls = records
        .iter()
        .rev()
        .take(q.limit)
        .map(CallRecord::from)
        .collect();
    Ok(ApiJson(CallList { calls }))
}

impl From<&call::CallRecord> for CallRecord {
    fn from(r: &call::CallRecord) -> CallRecord {
        CallRecord {
            call: r.call,
            tenant: r.tenant.clone(),
            result: r.result.name().to_string(),
            direction: Direction::of(r.caller_side),
            caller_call_id: r.caller_call_id.clone(),
            callee_call_id: r.callee_call_id.clone(),
            setup_ms: r.setup_ms,
            duration_ms: r.duration_ms,
            media: r
                .media
                .iter()
                .map(|m| MediaFigures {
                    from_caller: RtpFigures::from(&m.from_caller),
                    from_callee: RtpFigures::from(&m.from_callee),
                })
                .collect(),
        }
    }
}

impl From<&RtpSummary> for RtpFigures {
    fn from(x: &RtpSummary) -> RtpFigures {
        RtpFigures {
            packets: x.packets,
            bytes: x.bytes,
            lost: x.lost,
            jitter_ms: (x.jitter_ms * 100.0).round() / 100.0,
            dtmf_events: x.dtmf_events,
        }
    }
}

/// `(name, counter)` pairs as a name → value map.
fn counters(list: &[(&'static str, &Counter)]) -> BTreeMap<String, u64> {
    list.iter()
        .map(|(name, c)| ((*name).to_string(), c.get()))
        .collect()
}

/// `GET /api/v1/status`: version, uptime, backend, calls up, snapshot and
/// database state, and every counter.
pub(super) async fn status(State(s): State<AppState>) -> ApiJson<Status> {
    let e = &s.stats.engine;
    // Only the counters of the backend in use (the socket backend has no
    // L2/L3 work and no DPDK ports; DPDK has no relay sockets).
    let dpdk = s.backend == "dpdk";
    let io = IoStatus {
        counters: counters(&s.stats.io.counters_of(dpdk)),
        ports: if dpdk {
            s.stats
                .io
                .ports
                .iter()
                .map(|(side, p)| PortStatus {
                    side: side.name().to_string(),
                    counters: counters(&p.counters()),
                })
                .collect()
        } else {
            Vec::new()
        },
    };
    let (snap, built) = s.snapshot();
    let health = s.dispatcher();
    let db_up = tokio::time::timeout(Duration::from_secs(1), s.db.ping())
        .await
        .unwrap_or(false);
    ApiJson(Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_s: s.started.elapsed().as_secs(),
        backend: s.backend.to_string(),
        calls_up: e.calls_up.get(),
        snapshot_version: e.snapshot_version.get(),
        snapshot_age_ms: built.elapsed().as_millis() as u64,
        provisioned: Provisioned {
            carriers: snap.carriers.len() as u64,
            gateways: snap.gateways.len() as u64,
            tenants: snap.tenants.len() as u64,
        },
        database: if db_up {
            DatabaseState::Ok
        } else {
            DatabaseState::Unavailable
        },
        database_kind: s.db.dialect().name().to_string(),
        gateways: GatewayHealth {
            probing: health.probing,
            up: health.up,
            down: health.down,
        },
        sip: counters(&e.sip_counters()),
        media: counters(&s.stats.media.counters()),
        io,
    })
}
