//! The REST API of the contract (ARCHITECTURE.md): carriers, gateways,
//! tenants, routing and status. Every successful write rebuilds the routing
//! snapshot and hands it to the SIP engine before the answer goes out.
//!
//! This module holds the router, the shared state, errors and the bearer
//! token check; the handlers are in `provisioning.rs` (carriers, gateways,
//! tenants), `route.rs` (`POST /api/v1/route`) and `stats.rs` (status, call
//! statistics, finished calls).

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sbc_dataplane::call::CallRecord;
use sbc_dataplane::routing::RouteSnapshot;
use sbc_dataplane::stats::{EngineStats, IoStats, MediaStats};
use serde_json::{json, Map, Value};

use crate::provisioning::{DbError, Provisioning};

mod provisioning;
mod route;
mod stats;

use self::provisioning::*;
use self::route::route;
use self::stats::{call_stats, recent_calls, status};

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
pub const OPENAPI: &str = include_str!("../../openapi.json");

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
