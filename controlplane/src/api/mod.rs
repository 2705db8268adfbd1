//! The REST API of the contract (ARCHITECTURE.md): carriers, gateways,
//! tenants, routing and status. Every successful write rebuilds the routing
//! snapshot and hands it to the SIP engine before the answer goes out.
//!
//! This module holds the router, the shared state, errors, the [`ApiJson`]
//! body extractor and the bearer token check; the JSON shapes are in
//! [`model`], the handlers in `provisioning.rs` (carriers, gateways,
//! tenants), `route.rs` (`POST /api/v1/route`) and `stats.rs` (status, call
//! statistics, finished calls).
//!
//! Errors answer `{"error": "..."}` ([`model::ErrorBody`]) with 400 (a bad
//! request, naming the field), 401 (bearer token), 404 (no such row or
//! endpoint) or 503 (the provisioning database is unavailable).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddrV4;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use sbc_dataplane::backend::Dataplane;

use crate::dns::Dns;
use sbc_dataplane::call::CallRecord;
use sbc_dataplane::health::{HealthCmd, HealthReport};
use sbc_dataplane::routing::RouteSnapshot;
use sbc_dataplane::stats::{EngineStats, IoStats, MediaStats, RingFill};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::cdr::{CdrRow, CdrWriter};
use crate::hep::CaptureHub;
use crate::metrics::CallMetrics;
use crate::provisioning::{DbError, Provisioning};

mod bans;
mod body;
mod dispatcher;
pub mod model;
mod provisioning;
mod route;
mod stats;

pub use self::model::KEEP_RECORDS;
use self::model::{BodyError, ErrorBody, FieldError, Validate};
use self::provisioning::{
    add_carrier, add_gateway, delete_carrier, delete_gateway, delete_tenant, list_carriers,
    list_gateways, list_tenants, upsert_tenant,
};
use self::route::route;
use self::stats::{call_stats, recent_calls, status};

/// Receives each new snapshot (the running backend, or a test's probe).
pub type Publish = Arc<dyn Fn(Arc<RouteSnapshot>) + Send + Sync>;

/// Shared state of the API handlers.
#[derive(Clone)]
pub struct AppState {
    /// The provisioning database.
    pub db: Arc<Provisioning>,
    /// Hands a new routing snapshot to the engine.
    pub publish: Publish,
    /// The data plane's counters.
    pub stats: Counters,
    /// `socket` or `dpdk`, as `GET /api/v1/status` reports it.
    pub backend: &'static str,
    /// When the API started (uptime, `since_s`).
    pub started: Instant,
    /// The snapshot the engine routes with, and when it was built.
    pub current: Arc<RwLock<(Arc<RouteSnapshot>, Instant)>>,
    /// Held while a snapshot is read and published ([`republish`],
    /// [`refill`]): one read earlier is never published after one read
    /// later (the API's writes and the database watcher run at once).
    pub republishing: Arc<tokio::sync::Mutex<()>>,
    /// Call outcomes by tenant and result, drained from the engine's ring.
    pub calls: Arc<Mutex<CallCounts>>,
    /// The latest finished calls with their media, newest last.
    pub records: Arc<Mutex<VecDeque<CallRecord>>>,
    /// Bearer token every request must carry, when set.
    pub token: Option<Arc<str>>,
    /// The engine's latest health report of each gateway (and probed
    /// carrier).
    pub health: Arc<Mutex<BTreeMap<SocketAddrV4, HealthEntry>>>,
    /// Hands an operator's health request to the engine; `false` when it
    /// cannot take it now.
    pub health_cmd: HealthSender,
    /// `[health] interval_s` (0: probing off), for the `P` flag.
    pub health_interval_s: u32,
    /// `[health] timeout_ms`: how long a ping request waits for answers.
    pub health_timeout_ms: u64,
    /// The Prometheus call metrics, fed as the engine's rings are drained.
    pub call_metrics: Arc<CallMetrics>,
    /// Where finished calls go to be stored as CDRs (`None`: `[cdr]
    /// enabled = false`).
    pub cdr: Option<CdrWriter>,
    /// SIP capture: HEP to Homer, pcap on request (`None` in tests that
    /// run no engine).
    pub capture: Option<CaptureHub>,
    /// Gateways by host name: their RFC 3263 answers (`crate::dns`).
    pub dns: Arc<Dns>,
    /// The TCP/TLS stream layer's counters (`None` when none runs).
    pub streams: Option<Arc<crate::stream::StreamStats>>,
    /// The running SBC relays SRTP (`BackendKind::srtp`): a gateway may
    /// have `media_encryption` other than `disable`.
    pub srtp: bool,
    /// This node's cluster membership and shared limits (`[cluster]
    /// redis` set).
    pub cluster: Option<crate::cluster::Cluster>,
    /// Starts or ends a drain (`POST`/`DELETE /api/v1/drain`, SIGTERM).
    pub drain_cmd: DrainSender,
    /// Whether this node drains now.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// Hands a health request to the engine (the running backend, or a test's).
pub type HealthSender = Arc<dyn Fn(HealthCmd) -> bool + Send + Sync>;

/// Starts (`true`) or ends (`false`) this node's drain: the data plane
/// refuses new calls 503 and the cluster membership says `draining`;
/// `false` when no data plane runs.
pub type DrainSender = Arc<dyn Fn(bool) -> bool + Send + Sync>;

/// The engine's latest report of one destination, as the API keeps it.
#[derive(Debug, Clone)]
pub struct HealthEntry {
    /// The report.
    pub report: HealthReport,
    /// Reports of it seen so far (one per probe result or change).
    pub results: u64,
    /// When its `up` last changed (or it was first reported).
    pub changed: Instant,
}

/// The data plane's counters the API reports.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// The SIP engine's, with its call event and record rings.
    pub engine: Arc<EngineStats>,
    /// The I/O backend's, with each port's.
    pub io: Arc<IoStats>,
    /// The media relay's.
    pub media: Arc<MediaStats>,
    /// The running backend, for how full its rings are (`None` in tests
    /// that run no engine: only the engine rings of `engine` are shown).
    pub backend: Option<Arc<Dataplane>>,
}

impl Counters {
    /// How full each ring between the threads is now.
    pub fn rings(&self) -> Vec<RingFill> {
        match &self.backend {
            Some(b) => b.rings(),
            None => self.engine.rings(),
        }
    }
}

/// tenant ("-" for none) → result → count.
pub type CallCounts = BTreeMap<String, BTreeMap<&'static str, u64>>;

impl AppState {
    /// The state of an API whose engine routes with `first` now; `token`,
    /// when set, is the bearer token every request must carry.
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
            republishing: Arc::default(),
            calls: Arc::new(Mutex::new(BTreeMap::new())),
            records: Arc::new(Mutex::new(VecDeque::with_capacity(KEEP_RECORDS))),
            token: token.map(Arc::from),
            health: Arc::new(Mutex::new(BTreeMap::new())),
            health_cmd: Arc::new(|_| false),
            health_interval_s: 0,
            health_timeout_ms: 2_000,
            call_metrics: CallMetrics::new(100),
            cdr: None,
            capture: None,
            streams: None,
            dns: Arc::new(Dns::system()),
            srtp: false,
            cluster: None,
            drain_cmd: Arc::new(|_| false),
            draining: Arc::default(),
        }
    }

    /// The same state reporting the TCP/TLS stream layer's counters.
    pub fn with_streams(self, stats: Arc<crate::stream::StreamStats>) -> AppState {
        AppState {
            streams: Some(stats),
            ..self
        }
    }

    /// The same state with SIP capture (HEP and pcap) through `hub`.
    pub fn with_capture(self, hub: CaptureHub) -> AppState {
        AppState {
            capture: Some(hub),
            ..self
        }
    }

    /// The same state writing a CDR of every finished call to `writer`.
    pub fn with_cdrs(self, writer: CdrWriter) -> AppState {
        AppState {
            cdr: Some(writer),
            ..self
        }
    }

    /// The same state with at most `max_tenants` tenant labels in the call
    /// metrics (`[metrics] max_tenants`).
    pub fn with_metric_tenants(self, max_tenants: usize) -> AppState {
        AppState {
            call_metrics: CallMetrics::new(max_tenants),
            ..self
        }
    }

    /// Every gateway of the snapshot in force with its health, the health
    /// reports drained first (`GET /api/v1/dispatcher`).
    pub fn dispatcher(&self) -> model::DispatcherList {
        self.drain_health_reports();
        let (snap, _) = self.snapshot();
        dispatcher::destinations(self, &snap, None)
    }

    /// The same state with the engine's health requests going to `cmd`,
    /// probing every `interval_s` (0: off) with `timeout_ms` per probe.
    pub fn with_health(self, cmd: HealthSender, interval_s: u32, timeout_ms: u64) -> AppState {
        AppState {
            health_cmd: cmd,
            health_interval_s: interval_s,
            health_timeout_ms: timeout_ms,
            ..self
        }
    }

    /// Moves the engine's health reports into the latest one per
    /// destination.
    pub fn drain_health_reports(&self) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        while let Some(r) = self.stats.engine.health_reports.pop() {
            let now = Instant::now();
            match health.get_mut(&r.addr) {
                Some(e) => {
                    if e.report.up != r.up {
                        e.changed = now;
                        tracing::info!(
                            gateway = %r.addr, up = r.up, reason = %r.reason,
                            "destination {}", if r.up { "up" } else { "down" }
                        );
                    }
                    e.report = r;
                    e.results += 1;
                }
                None => {
                    health.insert(
                        r.addr,
                        HealthEntry {
                            report: r,
                            results: 1,
                            changed: now,
                        },
                    );
                }
            }
        }
    }

    /// Moves the engine's call outcomes into the per-tenant counts and its
    /// finished calls into the list of the latest ones.
    pub fn drain_call_events(&self) {
        while let Some(step) = self.stats.engine.call_steps.pop() {
            crate::calllog::step(&step);
        }
        if let Ok(mut counts) = self.calls.lock() {
            while let Some(e) = self.stats.engine.call_events.pop() {
                self.call_metrics.event(&e);
                let tenant = e.tenant.unwrap_or_else(|| "-".to_string());
                *counts
                    .entry(tenant)
                    .or_default()
                    .entry(e.result.name())
                    .or_default() += 1;
            }
        }
        if let Ok(mut records) = self.records.lock() {
            let epoch = self.stats.engine.epoch_unix_ms.get();
            while let Some(r) = self.stats.engine.call_records.pop() {
                self.call_metrics.record(&r);
                crate::calllog::ended(&r);
                if let Some(hub) = &self.capture {
                    hub.ended(&r);
                }
                if let Some(cdr) = &self.cdr {
                    cdr.push(CdrRow::from_record(&r, epoch));
                }
                if records.len() == KEEP_RECORDS {
                    records.pop_front();
                }
                records.push_back(r);
            }
        }
    }

    /// The snapshot the engine routes with, and when it was built.
    pub fn snapshot(&self) -> (Arc<RouteSnapshot>, Instant) {
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

/// An API error: a status and a message naming what was wrong, answered
/// as `{"error": message}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    /// An error answer with this status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError(status, message.into())
    }
}

/// 400, naming the field.
impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// 400: malformed JSON, not an object, or a field (named).
impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

/// 503: the database is unavailable (or refused the statement).
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
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

/// A JSON body: as an extractor, a request of type `T` read by
/// [`model::from_json`] (so deserialized, then validated) whatever the
/// content type, its rejection an [`ApiError`] 400 that names the field
/// (axum's customize-extractor-error pattern); as a response, `T` as JSON.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate + Send,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(e.status(), e.body_text()))?;
        Ok(ApiJson(model::from_json(&body)?))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

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
    ("get", "/api/v1/calls/active"),
    ("get", "/api/v1/cdrs"),
    ("get", "/api/v1/capture"),
    ("get", "/api/v1/dispatcher"),
    ("post", "/api/v1/dispatcher/ping"),
    ("post", "/api/v1/dispatcher/state"),
    ("get", "/api/v1/bans"),
    ("delete", "/api/v1/bans/{ip}"),
    ("post", "/api/v1/drain"),
    ("delete", "/api/v1/drain"),
];

/// The OpenAPI 3 document served at `/api/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("../../openapi.json");

/// The API's routes ([`ROUTES`]) behind the bearer token check, a 404
/// `no such endpoint` for any other path.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/route", post(route))
        .route("/api/v1/stats/calls", get(call_stats))
        .route("/api/v1/calls", get(recent_calls))
        .route("/api/v1/calls/active", get(self::stats::active_calls))
        .route("/api/v1/cdrs", get(self::stats::cdrs))
        .route("/api/v1/capture", get(self::stats::capture))
        .route("/api/v1/dispatcher", get(dispatcher::list))
        .route("/api/v1/dispatcher/ping", post(dispatcher::ping))
        .route("/api/v1/dispatcher/state", post(dispatcher::set_state))
        .route("/api/v1/bans", get(bans::list))
        .route("/api/v1/bans/{ip}", delete(bans::remove))
        .route(
            "/api/v1/drain",
            post(self::stats::drain_start).delete(self::stats::drain_end),
        )
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
        // Compared in constant time: how long it takes tells nothing of the token.
        let right = given.is_some_and(|g| {
            use subtle::ConstantTimeEq;
            bool::from(g.as_bytes().ct_eq(token.as_bytes()))
        });
        if !right {
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

/// Gives the engine the snapshot in force again with the gateways' host
/// names re-resolved (a DNS answer changed), under a new version; the
/// database is not read.
pub async fn refill(state: &AppState) {
    let _one = state.republishing.lock().await;
    let (current, _) = state.snapshot();
    let mut snap = (*current).clone();
    snap.version = state.db.next_version();
    state.dns.fill(&mut snap).await;
    let snap = Arc::new(snap);
    if let Ok(mut cur) = state.current.write() {
        *cur = (snap.clone(), Instant::now());
    }
    (state.publish)(snap);
}

/// How often [`watch_provisioning`] reads the change version: half a
/// second, so that the poll and the snapshot's rebuild together stay
/// within a second (one indexed one-row read per node each time).
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// Keeps the snapshot in force in step with the database when something
/// else writes it: another SBC node's API, another tool, SQL by hand. The
/// change version ([`Provisioning::change_version`], bumped by trigger on
/// every write) is read every [`WATCH_EVERY`], and on PostgreSQL at once
/// when its NOTIFY arrives; a version other than the one the snapshot in
/// force was read with rebuilds the snapshot ([`republish`]), so a change
/// reaches the engine within a second (the poll, then the rebuild) with
/// calls in progress untouched. Our own API's
/// writes republish themselves and are not rebuilt twice. While the
/// database cannot be reached the engine keeps routing from its last
/// snapshot (status `database` and the metric `sbc_database_up` say so,
/// and status `snapshot_age_ms` how old it is); runs forever.
///
/// [`Provisioning::change_version`]: crate::provisioning::Provisioning::change_version
pub async fn watch_provisioning(state: AppState) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut listener = None;
    loop {
        if listener.is_none() {
            let connect = state.db.change_listener();
            match tokio::time::timeout(std::time::Duration::from_secs(2), connect).await {
                Ok(Ok(l)) => listener = l,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "LISTEN for provisioning changes failed; polling")
                }
                Err(_) => tracing::debug!("LISTEN for provisioning changes timed out; polling"),
            }
        }
        let lost = match listener.as_mut() {
            Some(l) => tokio::select! {
                _ = every.tick() => false,
                // Ok(None): the connection dropped (sqlx reconnects at the
                // next call); an error: it could not: LISTEN again later.
                got = l.try_recv() => got.is_err(),
            },
            None => {
                every.tick().await;
                false
            }
        };
        if lost {
            listener = None;
        }
        let Ok(now) = state.db.change_version().await else {
            continue;
        };
        if now == state.db.built_from() {
            continue;
        }
        match republish(&state).await {
            Ok(version) => tracing::info!(
                change_version = now,
                snapshot = version,
                "provisioning changed in the database: routing snapshot rebuilt"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "provisioning changed in the database but could not be read; routing stays on the last snapshot")
            }
        }
    }
}

/// Rebuilds the snapshot from SQL (gateways by name resolved, `Dns::fill`)
/// and hands it to the engine.
pub async fn republish(state: &AppState) -> Result<u64, DbError> {
    let _one = state.republishing.lock().await;
    let mut snap = state.db.snapshot().await?;
    state.dns.fill(&mut snap).await;
    let snap = Arc::new(snap);
    let version = snap.version;
    if let Ok(mut cur) = state.current.write() {
        *cur = (snap.clone(), Instant::now());
    }
    (state.publish)(snap);
    Ok(version)
}
