//! The REST API of the contract (ARCHITECTURE.md): carriers, gateways,
//! tenants and status. Every successful write rebuilds the routing snapshot
//! and hands it to the SIP engine before the answer goes out.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use sbc_dataplane::routing::{self, RouteSnapshot};
use sbc_dataplane::stats::{EngineStats, IoStats};
use serde_json::{json, Map, Value};

use crate::provisioning::{DbError, GatewayRow, Provisioning, Table, TenantRow};

/// Receives each new snapshot (the running backend, or a test's probe).
pub type Publish = Arc<dyn Fn(Arc<RouteSnapshot>) + Send + Sync>;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    pub db: Arc<Provisioning>,
    pub publish: Publish,
    pub engine: Arc<EngineStats>,
    pub io: Arc<IoStats>,
    pub backend: &'static str,
    pub started: Instant,
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

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/carriers", get(list_carriers).post(add_carrier))
        .route("/api/v1/carriers/{id}", delete(delete_carrier))
        .route("/api/v1/gateways", get(list_gateways).post(add_gateway))
        .route("/api/v1/gateways/{id}", delete(delete_gateway))
        .route("/api/v1/tenants", get(list_tenants).post(upsert_tenant))
        .route("/api/v1/tenants/{id}", delete(delete_tenant))
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "no such endpoint".into()) })
        .with_state(state)
}

/// Rebuilds the snapshot from SQL and hands it to the engine.
pub async fn republish(state: &AppState) -> Result<u64, DbError> {
    let snap = state.db.snapshot().await?;
    let version = snap.version;
    (state.publish)(Arc::new(snap));
    Ok(version)
}

async fn status(State(s): State<AppState>) -> Json<Value> {
    let e = &s.engine;
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": s.started.elapsed().as_secs(),
        "backend": s.backend,
        "calls_up": e.calls_up.get(),
        "snapshot_version": e.snapshot_version.get(),
        "database": "ok",
        "sip": {
            "calls_total": e.calls_total.get(),
            "calls_answered": e.calls_answered.get(),
            "calls_failed": e.calls_failed.get(),
            "calls_rejected": e.calls_rejected.get(),
            "dialogs": e.dialogs.get(),
            "transactions": e.transactions.get(),
            "rx_messages": e.rx_messages.get(),
            "tx_messages": e.tx_messages.get(),
            "parse_errors": e.parse_errors.get(),
            "retransmissions_absorbed": e.retransmissions_absorbed.get(),
            "stray_responses": e.stray_responses.get(),
        },
        "io": {
            "rx_packets": s.io.rx_packets.get(),
            "tx_packets": s.io.tx_packets.get(),
            "rx_ring_full": s.io.rx_ring_full.get(),
            "rx_truncated": s.io.rx_truncated.get(),
            "tx_errors": s.io.tx_errors.get(),
        },
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
    let row =
        s.db.add_carrier(&ip.to_string(), mask, &name, group)
            .await?;
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
