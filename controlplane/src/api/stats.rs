//! Status and statistics: `GET /api/v1/status`, `GET /api/v1/stats/calls`
//! and `GET /api/v1/calls`.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use sbc_dataplane::call::{self, RtpSummary};
use sbc_dataplane::stats::Counter;

use super::model::{ActiveCallView, ActiveList, CallWindow, CdrList, Drain, FieldError};
use super::model::{
    CallList, CallRecord, CallStats, CallsQuery, DatabaseState, Direction, GatewayHealth, IoStatus,
    MediaFigures, PortStatus, Provisioned, RingStatus, RtpFigures, Status,
};
use super::{ApiError, ApiJson, AppState};
use crate::cdr::{now_ms, parse_window, CdrQuery};
use crate::hep::Filter;

/// `GET /api/v1/stats/calls?since=1h[&cluster=true]`: outcomes by tenant
/// and result since start, and, from the CDRs, ASR, ACD, setup time and
/// failure codes per tenant, per gateway and per node over the window
/// (default 1h; `window` is null when CDRs are off): this node's calls, or
/// with `cluster=true` those of every node sharing the database.
pub(super) async fn call_stats(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<ApiJson<CallStats>, ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !["since", "cluster"].contains(&k.as_str()))
    {
        return Err(FieldError::new(k.as_str(), "unknown query parameter").into());
    }
    let cluster = match q.get("cluster").map(String::as_str) {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(FieldError::new("cluster", "must be true or false").into()),
    };
    let window_ms = match q.get("since") {
        Some(w) => parse_window(w).map_err(|m| FieldError::new("since", m))?,
        None => 3_600_000,
    };
    s.drain_call_events();
    let window = match &s.cdr {
        Some(w) => {
            let node = (!cluster).then(|| w.node_id());
            let stats = s.db.cdr_stats(now_ms() - window_ms, node).await?;
            Some(CallWindow {
                since_s: (window_ms / 1000) as u64,
                by_tenant: stats.by_tenant,
                by_gateway: stats.by_gateway,
                scope: if cluster { "cluster" } else { "node" }.into(),
                by_node: stats.by_node,
            })
        }
        None => None,
    };
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
    Ok(ApiJson(CallStats {
        since_s: s.started.elapsed().as_secs(),
        calls_up: s.stats.engine.calls_up.get(),
        by_tenant,
        totals,
        window,
    }))
}

/// `GET /api/v1/cdrs?tenant=T&since=1h&limit=N`: stored call records,
/// newest first (default: every tenant, the last 24 h, 100; limit 1..=1000).
pub(super) async fn cdrs(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<ApiJson<CdrList>, ApiError> {
    if let Some(k) = q
        .keys()
        .find(|k| !["tenant", "since", "limit"].contains(&k.as_str()))
    {
        return Err(FieldError::new(k.as_str(), "unknown query parameter").into());
    }
    let since = match q.get("since") {
        Some(w) => parse_window(w).map_err(|m| FieldError::new("since", m))?,
        None => 86_400_000,
    };
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => return Err(FieldError::new("limit", "must be a number from 1 to 1000").into()),
        },
    };
    let query = CdrQuery {
        tenant: q.get("tenant").cloned(),
        since_ms: now_ms() - since,
        limit,
    };
    Ok(ApiJson(CdrList {
        cdrs: s.db.cdrs(&query).await?,
    }))
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
        rings: s
            .stats
            .rings()
            .iter()
            .map(|r| {
                let fill = RingStatus {
                    len: r.len as u64,
                    capacity: r.capacity as u64,
                };
                (r.name.to_string(), fill)
            })
            .collect(),
        threads_cpu_s: crate::threads::cpu_seconds(),
        streams: s
            .streams
            .as_ref()
            .map(|st| counters_u64(&st.counters()))
            .unwrap_or_default(),
        cluster: s.cluster.as_ref().map(|c| c.state.status()),
        draining: s.draining.load(std::sync::atomic::Ordering::Relaxed),
    })
}

/// `POST /api/v1/drain` (`sbcctl drain`): this node takes no new call
/// (INVITE and OPTIONS get 503 with Retry-After, so upstream probes move to
/// the other nodes), calls in progress go on; in a cluster it says
/// `draining` in the membership and leaves it once its last call ended.
/// 503 when no data plane runs.
pub(super) async fn drain_start(State(s): State<AppState>) -> Result<ApiJson<Drain>, ApiError> {
    drain_set(&s, true)
}

/// `DELETE /api/v1/drain` (`sbcctl drain --cancel`): new calls are taken
/// again (and the node joins its cluster again).
pub(super) async fn drain_end(State(s): State<AppState>) -> Result<ApiJson<Drain>, ApiError> {
    drain_set(&s, false)
}

fn drain_set(s: &AppState, on: bool) -> Result<ApiJson<Drain>, ApiError> {
    if !(s.drain_cmd)(on) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no data plane runs here to drain",
        ));
    }
    Ok(ApiJson(Drain {
        draining: on,
        calls_up: s.stats.engine.calls_up.get(),
        dialogs: s.stats.engine.dialogs.get(),
    }))
}

/// `GET /api/v1/capture?seconds=N&filter=sip|rtp|all`: every SIP datagram
/// in and out on both sides (`sip`, the default), every relayed media packet
/// as it arrived and as it left (`rtp`: RTP and RTCP), or both, for N
/// seconds (1..=300, default 10), as a pcap file (Ethernet, microsecond
/// stamps) for tshark, Wireshark or sngrep.
pub(super) async fn capture(
    State(s): State<AppState>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    if let Some(k) = q
        .keys()
        .find(|k| !["seconds", "filter"].contains(&k.as_str()))
    {
        return Err(FieldError::new(k.as_str(), "unknown query parameter").into());
    }
    let seconds = match q.get("seconds") {
        None => 10,
        Some(v) => match v.parse::<u64>() {
            Ok(n) if (1..=300).contains(&n) => n,
            _ => return Err(FieldError::new("seconds", "must be a number from 1 to 300").into()),
        },
    };
    let filter = match q.get("filter") {
        None => Filter::Sip,
        Some(name) => Filter::parse(name)
            .ok_or_else(|| FieldError::new("filter", format!("{name:?} is not sip, rtp or all")))?,
    };
    let Some(hub) = &s.capture else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "capture is not running in this process",
        ));
    };
    let pcap = hub.pcap(seconds, filter).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/vnd.tcpdump.pcap",
        )],
        pcap,
    )
        .into_response())
}

/// `GET /api/v1/calls/active`: the calls in progress with what their media
/// carried so far. The engine lists its dialogs and the relay its streams'
/// figures when asked (the relay at its next once-a-second scan), so the
/// answer takes up to about a second; `media` is false when the relay did
/// not answer in time (figures then zero).
pub(super) async fn active_calls(
    State(s): State<AppState>,
) -> Result<ApiJson<ActiveList>, ApiError> {
    use std::sync::atomic::Ordering;
    let e = &s.stats.engine;
    while e.active_calls.pop().is_some() {}
    while e.live_media.pop().is_some() {}
    e.media_wanted.store(true, Ordering::Relaxed);
    e.active_wanted.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_500);
    let mut calls = None;
    let mut media = None;
    while tokio::time::Instant::now() < deadline && (calls.is_none() || media.is_none()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if calls.is_none() {
            calls = e.active_calls.pop();
        }
        if media.is_none() {
            media = e.live_media.pop();
        }
    }
    e.media_wanted.store(false, Ordering::Relaxed);
    let Some((now, calls)) = calls else {
        return Err(ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the SIP engine did not answer",
        ));
    };
    let have_media = media.is_some();
    let by_port: BTreeMap<(sbc_dataplane::Side, u16), call::MediaLine> = media
        .unwrap_or_default()
        .into_iter()
        .map(|m| ((m.side, m.port), m.line))
        .collect();
    let mut list: Vec<ActiveCallView> = calls
        .into_iter()
        .map(|c| {
            let lines: Vec<call::MediaLine> = c
                .ports
                .iter()
                .filter_map(|p| by_port.get(&(c.caller_side, p[0])).copied())
                .collect();
            let sum = |pick: fn(&call::MediaLine) -> RtpSummary| {
                let mut t = RtpSummary::default();
                for l in &lines {
                    let x = pick(l);
                    t.packets += x.packets;
                    t.bytes += x.bytes;
                    t.lost += x.lost;
                    t.jitter_ms = t.jitter_ms.max(x.jitter_ms);
                    t.dtmf_events += x.dtmf_events;
                }
                RtpFigures::from(&t)
            };
            ActiveCallView {
                call: c.call,
                tenant: c.tenant.clone(),
                direction: Direction::of(c.caller_side),
                call_id: c.call_id.clone(),
                caller_addr: c.caller_addr.to_string(),
                callee_addr: c.callee_addr.to_string(),
                state: if c.answered { "answered" } else { "ringing" }.to_string(),
                age_s: now.saturating_sub(c.started_ms) as f64 / 1000.0,
                ports: c.ports.clone(),
                from_caller: sum(|l| l.from_caller),
                from_callee: sum(|l| l.from_callee),
            }
        })
        .collect();
    list.sort_by_key(|c| c.call);
    Ok(ApiJson(ActiveList {
        count: list.len() as u64,
        media: have_media,
        calls: list,
    }))
}

fn counters_u64(c: &[(&'static str, u64)]) -> BTreeMap<String, u64> {
    c.iter().map(|(n, v)| (n.to_string(), *v)).collect()
}
