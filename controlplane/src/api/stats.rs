//! Status and statistics: `GET /api/v1/status`, `GET /api/v1/stats/calls`
//! and `GET /api/v1/calls`.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::Json;
use sbc_dataplane::call::{CallRecord, RtpSummary};
use sbc_dataplane::stats::Counter;
use sbc_dataplane::Side;
use serde_json::{json, Value};

use super::{ApiError, AppState, KEEP_RECORDS};

/// `GET /api/v1/stats/calls`: outcomes by tenant and result since start.
pub(super) async fn call_stats(State(s): State<AppState>) -> Json<Value> {
    s.drain_call_events();
    let counts = s.calls.lock().map(|c| c.clone()).unwrap_or_default();
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for per in counts.values() {
        for (k, v) in per {
            *totals.entry(k).or_default() += v;
        }
    }
    Json(json!({
        "since_s": s.started.elapsed().as_secs(),
        "calls_up": s.stats.engine.calls_up.get(),
        "by_tenant": counts,
        "totals": totals,
    }))
}

/// `GET /api/v1/calls?limit=N`: the latest finished calls, newest first,
/// with what their media carried each way.
pub(super) async fn recent_calls(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    if let Some(k) = q.keys().find(|k| k.as_str() != "limit") {
        return Err(ApiError::bad(k, "unknown query parameter"));
    }
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=KEEP_RECORDS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(
                    "limit",
                    &format!("must be a number from 1 to {KEEP_RECORDS}"),
                ))
            }
        },
    };
    s.drain_call_events();
    let records = s.records.lock().map(|r| r.clone()).unwrap_or_default();
    let calls: Vec<Value> = records.iter().rev().take(limit).map(record_json).collect();
    Ok(Json(json!({ "calls": calls })))
}

fn record_json(r: &CallRecord) -> Value {
    let rtp = |x: &RtpSummary| {
        json!({
            "packets": x.packets,
            "bytes": x.bytes,
            "lost": x.lost,
            "jitter_ms": (x.jitter_ms * 100.0).round() / 100.0,
        })
    };
    json!({
        "call": r.call,
        "tenant": r.tenant,
        "result": r.result.name(),
        "direction": match r.caller_side {
            Side::Private => "inbound",
            Side::Public => "outbound",
        },
        "caller_call_id": r.caller_call_id,
        "callee_call_id": r.callee_call_id,
        "setup_ms": r.setup_ms,
        "duration_ms": r.duration_ms,
        "media": r.media.iter().map(|m| json!({
            "from_caller": rtp(&m.from_caller),
            "from_callee": rtp(&m.from_callee),
        })).collect::<Vec<_>>(),
    })
}

/// A JSON object of `(name, counter)` pairs, in their order.
fn counters(list: &[(&'static str, &Counter)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(name, c)| ((*name).to_string(), json!(c.get())))
            .collect(),
    )
}

pub(super) async fn status(State(s): State<AppState>) -> Json<Value> {
    let e = &s.stats.engine;
    let mut io = counters(&s.stats.io.counters());
    if let Value::Object(m) = &mut io {
        let ports = s.stats.io.ports.iter().map(|(side, p)| {
            let mut port = counters(&p.counters());
            if let Value::Object(pm) = &mut port {
                pm.insert("side".into(), json!(side.name()));
            }
            port
        });
        m.insert("ports".into(), Value::Array(ports.collect()));
    }
    let (snap, built) = s.snapshot();
    let db_up = tokio::time::timeout(std::time::Duration::from_secs(1), s.db.ping())
        .await
        .unwrap_or(false);
    Json(json!({
        "snapshot_age_ms": built.elapsed().as_millis() as u64,
        "provisioned": {
            "carriers": snap.carriers.len(),
            "gateways": snap.gateways.len(),
            "tenants": snap.tenants.len(),
        },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "backend": s.backend,
        "calls_up": e.calls_up.get(),
        "snapshot_version": e.snapshot_version.get(),
        "database": if db_up { "ok" } else { "unavailable" },
        "database_kind": s.db.dialect().name(),
        "sip": counters(&e.sip_counters()),
        "media": counters(&s.stats.media.counters()),
        "io": io,
    }))
}
