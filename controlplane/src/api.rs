//! The REST API of the contract (ARCHITECTURE.md): carriers, gateways,
//! tenants and status. Every successful write rebuilds the routing snapshot
//! and hands it to the SIP engine before the answer goes out.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sbc_dataplane::call::{CallRecord, RtpSummary};
use sbc_dataplane::routing::{self, Decision, RouteRequest, RouteSnapshot};
use sbc_dataplane::sip::grammar::SipUri;
use sbc_dataplane::stats::{Counter, EngineStats, IoStats, MediaStats};
use sbc_dataplane::Side;
use serde_json::{json, Map, Value};

use crate::provisioning::{CarrierRow, DbError, GatewayRow, Provisioning, Table, TenantRow};

/// Receives each new snapshot (the running backend, or a test's probe).
pub type Publish = Arc<dyn Fn(Arc<RouteSnapshot>) + Send + Sync>;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Provisioning>,
    pub publish: Publish,
    pub stats: Counters,
    pub backend: &'static str,
    pub started: Instant,
    /// The snapshot the engine routes with, and when it was built.
    pub current: Arc<RwLock<(Arc<RouteSnapshot>, Instant)>>,
    /// Call outcomes by tenant and result, drained from the engine's ring.
    pub calls: Arc<Mutex<CallCounts>>,
    /// The latest finished calls with their media, newest last.
    pub records: Arc<Mutex<VecDeque<CallRecord>>>,
    /// Bearer token every request must carry, when set.
    pub token: Option<Arc<str>>,
}

/// The data plane's counters the API reports.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub engine: Arc<EngineStats>,
    pub io: Arc<IoStats>,
    pub media: Arc<MediaStats>,
}

/// How many finished calls `GET /api/v1/calls` can show.
pub const KEEP_RECORDS: usize = 1000;

/// tenant ("-" for none) → result → count.
pub type CallCounts = BTreeMap<String, BTreeMap<&'static str, u64>>;

impl AppState {
    pub fn new(
        db: Arc<Provisioning>,
        publish: Publish,
        stats: Counters,
        backend: &'static str,
        first: Arc<RouteSnapshot>,
        token: Option<String>,
    ) -> AppState {
        AppState {
            db,
            publish,
            stats,
            backend,
            started: Instant::now(),
            current: Arc::new(RwLock::new((first, Instant::now()))),
            calls: Arc::new(Mutex::new(BTreeMap::new())),
            records: Arc::new(Mutex::new(VecDeque::with_capacity(KEEP_RECORDS))),
            token: token.map(Arc::from),
        }
    }

    /// Moves the engine's call outcomes into the per-tenant counts and its
    /// finished calls into the list of the latest ones.
    pub fn drain_call_events(&self) {
        if let Ok(mut counts) = self.calls.lock() {
            while let Some(e) = self.stats.engine.call_events.pop() {
                let tenant = e.tenant.unwrap_or_else(|| "-".to_string());
                *counts
                    .entry(tenant)
                    .or_default()
                    .entry(e.result.name())
                    .or_default() += 1;
            }
        }
        if let Ok(mut records) = self.records.lock() {
            while let Some(r) = self.stats.engine.call_records.pop() {
                if records.len() == KEEP_RECORDS {
                    records.pop_front();
                }
                records.push_back(r);
            }
        }
    }

    fn snapshot(&self) -> (Arc<RouteSnapshot>, Instant) {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// An API error: a status and a message naming what was wrong.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(field: &str, message: &str) -> ApiError {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("field `{field}`: {message}"),
        )
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> ApiError {
        tracing::warn!(error = %e, "database error");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("provisioning database unavailable: {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Every route of the API, as the OpenAPI document must list them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/status"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/api/v1/carriers"),
    ("post", "/api/v1/carriers"),
    ("delete", "/api/v1/carriers/{id}"),
    ("get", "/api/v1/gateways"),
    ("post", "/api/v1/gateways"),
    ("delete", "/api/v1/gateways/{id}"),
    ("get", "/api/v1/tenants"),
    ("post", "/api/v1/tenants"),
    ("delete", "/api/v1/tenants/{id}"),
    ("post", "/api/v1/route"),
    ("get", "/api/v1/stats/calls"),
    ("get", "/api/v1/calls"),
];

/// The OpenAPI 3 document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/route", post(route))
        .route("/api/v1/stats/calls", get(call_stats))
        .route("/api/v1/calls", get(recent_calls))
        .route("/api/v1/carriers", get(list_carriers).post(add_carrier))
        .route("/api/v1/carriers/{id}", delete(delete_carrier))
        .route("/api/v1/gateways", get(list_gateways).post(add_gateway))
        .route("/api/v1/gateways/{id}", delete(delete_gateway))
        .route("/api/v1/tenants", get(list_tenants).post(upsert_tenant))
        .route("/api/v1/tenants/{id}", delete(delete_tenant))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_ref()) {
            return ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// `POST /api/v1/route`: the decision the SIP engine would take for an INVITE.
async fn route(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let f = Fields::parse(&body, &["source_ip", "to", "headers"])?;
    let source = f.ipv4("source_ip")?;
    let to = f.string("to", None)?;
    let uri =
        SipUri::parse(to.as_bytes()).ok_or_else(|| ApiError::bad("to", "must be a sip: URI"))?;
    let tenant_header = match f.0.get("headers") {
        None => None,
        Some(Value::Object(h)) => match h
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("X-Tenant-ID"))
        {
            Some((_, Value::String(v))) => Some(v.clone()),
            Some(_) => return Err(ApiError::bad("headers", "values must be strings")),
            None => None,
        },
        Some(_) => return Err(ApiError::bad("headers", "must be an object")),
    };
    let (snap, _) = s.snapshot();
    let req = RouteRequest {
        source,
        user: uri.user_number().unwrap_or_default(),
        tenant_header: tenant_header.as_deref().map(str::as_bytes),
    };
    // The side is the one the INVITE would arrive on: gateways call from the public side.
    let side = if snap.is_gateway(source) {
        Side::Public
    } else {
        Side::Private
    };
    let mut random = s.started.elapsed().as_nanos() as u64;
    Ok(Json(match snap.route(side, &req, &mut random) {
        Decision::Route {
            tenant_id,
            gateway_group,
            user,
            candidates,
        } => json!({
            "action": "route",
            "direction": if side == Side::Private { "inbound" } else { "outbound" },
            "tenant_id": tenant_id,
            "gateway_group": gateway_group,
            "user": String::from_utf8_lossy(&user),
            "candidates": candidates.iter().map(|c| c.uri.as_str()).collect::<Vec<_>>(),
            "code": Value::Null,
            "reason": Value::Null,
        }),
        Decision::Reject { code, reason } => json!({
            "action": "reject",
            "direction": if side == Side::Private { "inbound" } else { "outbound" },
            "tenant_id": Value::Null,
            "gateway_group": Value::Null,
            "candidates": [],
            "code": code,
            "reason": reason,
        }),
    })
    .into_response())
}

/// `GET /api/v1/stats/calls`: outcomes by tenant and result since start.
async fn call_stats(State(s): State<AppState>) -> Json<Value> {
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
async fn recent_calls(
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

/// Rebuilds the snapshot from SQL and hands it to the engine.
pub async fn republish(state: &AppState) -> Result<u64, DbError> {
    let snap = Arc::new(state.db.snapshot().await?);
    let version = snap.version;
    if let Ok(mut cur) = state.current.write() {
        *cur = (snap.clone(), Instant::now());
    }
    (state.publish)(snap);
    Ok(version)
}

/// A JSON object of `(name, counter)` pairs, in their order.
fn counters(list: &[(&'static str, &Counter)]) -> Value {
    Value::Object(
        list.iter()
            .map(|(name, c)| ((*name).to_string(), json!(c.get())))
            .collect(),
    )
}

async fn status(State(s): State<AppState>) -> Json<Value> {
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

/// A JSON object body, read field by field so every error names its field.
struct Fields(Map<String, Value>);

impl Fields {
    fn parse(body: &Bytes, allowed: &[&str]) -> Result<Fields, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("malformed JSON: {e}")))?;
        let Value::Object(map) = value else {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                "body must be a JSON object".into(),
            ));
        };
        if let Some(k) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::bad(k, "unknown field"));
        }
        Ok(Fields(map))
    }

    fn string(&self, key: &str, default: Option<&str>) -> Result<String, ApiError> {
        match self.0.get(key) {
            Some(Value::String(s)) => Ok(s.trim().to_string()),
            Some(_) => Err(ApiError::bad(key, "must be a string")),
            None => default
                .map(str::to_string)
                .ok_or_else(|| ApiError::bad(key, "is required")),
        }
    }

    fn int(&self, key: &str, default: Option<i64>, min: i64, max: i64) -> Result<i64, ApiError> {
        let v = match self.0.get(key) {
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::bad(key, "must be an integer"))?,
            None => default.ok_or_else(|| ApiError::bad(key, "is required"))?,
        };
        if v < min || v > max {
            return Err(ApiError::bad(
                key,
                &format!("must be between {min} and {max}"),
            ));
        }
        Ok(v)
    }

    fn ipv4(&self, key: &str) -> Result<Ipv4Addr, ApiError> {
        self.string(key, None)?
            .parse()
            .map_err(|_| ApiError::bad(key, "must be an IPv4 address"))
    }
}

fn created(value: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(value)).into_response())
}

async fn list_carriers(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.carriers().await?).into_response())
}

async fn add_carrier(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let f = Fields::parse(&body, &["ip", "mask", "name", "group"])?;
    let ip = f.ipv4("ip")?;
    let mask = f.int("mask", Some(32), 0, 32)?;
    let name = f.string("name", None)?;
    if name.is_empty() {
        return Err(ApiError::bad("name", "must not be empty"));
    }
    let group = f.int("group", Some(1), 0, i64::from(i32::MAX))?;
    let row = CarrierRow {
        id: 0,
        ip: ip.to_string(),
        mask,
        name,
        group,
    };
    let row = s.db.add_carrier(&row).await?;
    republish(&s).await?;
    created(row)
}

async fn delete_carrier(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove(&s, Table::Carriers, &id, "carrier").await
}

async fn list_gateways(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.gateways().await?).into_response())
}

async fn add_gateway(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let f = Fields::parse(
        &body,
        &["destination", "group", "priority", "weight", "description"],
    )?;
    let destination = f.string("destination", None)?;
    routing::parse_destination(&destination).map_err(|e| ApiError::bad("destination", e))?;
    let row = GatewayRow {
        id: 0,
        destination,
        group: f.int("group", Some(1), 1, i64::from(i32::MAX))?,
        priority: f.int(
            "priority",
            Some(0),
            i64::from(i32::MIN),
            i64::from(i32::MAX),
        )?,
        weight: f.int("weight", Some(1), 0, 1_000_000)?,
        description: f.string("description", Some(""))?,
    };
    let row = s.db.add_gateway(&row).await?;
    republish(&s).await?;
    created(row)
}

async fn delete_gateway(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove(&s, Table::Gateways, &id, "gateway").await
}

async fn list_tenants(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.tenants().await?).into_response())
}

async fn upsert_tenant(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let f = Fields::parse(
        &body,
        &[
            "tenant_id",
            "source_ip",
            "gateway_group",
            "max_cps",
            "max_concurrent",
        ],
    )?;
    let tenant_id = f.string("tenant_id", None)?;
    if tenant_id.is_empty()
        || tenant_id.len() > 64
        || !tenant_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::bad(
            "tenant_id",
            "must be 1 to 64 letters, digits, '-' or '.' ('_' separates a tenant prefix from the number)",
        ));
    }
    let row = TenantRow {
        tenant_id,
        source_ip: f.ipv4("source_ip")?.to_string(),
        gateway_group: f.int("gateway_group", Some(1), 1, i64::from(i32::MAX))?,
        max_cps: f.int("max_cps", None, 1, 1_000_000)?,
        max_concurrent: f.int("max_concurrent", None, 1, 10_000_000)?,
    };
    let was_created = s.db.upsert_tenant(&row).await?;
    republish(&s).await?;
    let code = if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(row)).into_response())
}

async fn delete_tenant(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove(&s, Table::Tenants, &id, "tenant").await
}

async fn remove(s: &AppState, table: Table, key: &str, what: &str) -> ApiResult {
    if table != Table::Tenants && key.parse::<i64>().is_err() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("{what} id must be an integer"),
        ));
    }
    if !s.db.delete(table, key).await? {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no {what} {key}")));
    }
    republish(s).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
