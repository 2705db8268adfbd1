//! `sbc run`: start the data plane, the API, and wait for a signal.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use sbc_dataplane::backend::socket;
use sbc_dataplane::backend::Dataplane;
use sbc_dataplane::EngineConfig;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, AppState, Counters};
use crate::cdr::CdrWriter;
use crate::config::{BackendKind, Config};
use crate::dns::Dns;
use crate::hep::CaptureHub;
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::provisioning::Provisioning;
use crate::stream::tls::Tls;
use crate::stream::Streams;

/// Runs the SBC until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    // The socket backend's relay binds a socket per port and side in use.
    let media_sockets = match cfg.dataplane.backend {
        BackendKind::Socket => 2 * u64::from(cfg.media.port_max.saturating_sub(cfg.media.port_min)),
        BackendKind::Dpdk => 0,
    };
    let nofile = crate::limits::raise_nofile(media_sockets);
    match &nofile {
        Ok(l) if l.enough() => tracing::debug!(soft = l.soft, "open file limit"),
        Ok(l) => tracing::warn!(
            soft = l.soft, hard = l.hard, wanted = l.wanted,
            sessions = crate::limits::socket_media_lines(l.soft),
            "the open file limit (RLIMIT_NOFILE) is below what media.port_min..media.port_max may use: \
             new calls past `sessions` media lines get 503 (media.max_sessions); raise the hard limit \
             (LimitNOFILE=, ulimit -Hn) or narrow the range"
        ),
        Err(e) => tracing::warn!(error = %e, "the open file limit (RLIMIT_NOFILE) could not be read or raised"),
    }
    let mut engine = cfg.engine_config(seed());
    // The socket relay's lines are bounded by its descriptors: past them a
    // call is refused (503) rather than connected without media sockets.
    if let (BackendKind::Socket, Ok(l), Some(m)) =
        (cfg.dataplane.backend, &nofile, engine.media.as_mut())
    {
        let fds = u32::try_from(crate::limits::socket_media_lines(l.soft)).unwrap_or(u32::MAX);
        m.max_sessions = Some(m.max_sessions.map_or(fds, |n| n.min(fds)));
    }
    let db = Arc::new(
        Provisioning::open(&cfg.database.url)
            .await
            .with_context(|| format!("opening database `{}`", cfg.database.url))?
            .with_default_profile(cfg.routing.default_profile),
    );
    // Gateways by host name get their addresses before the engine starts.
    let dns = Arc::new(Dns::system());
    let mut first = db.snapshot().await.context("reading provisioning")?;
    dns.fill(&mut first).await;
    let first = Arc::new(first);
    let backend = match cfg.dataplane.backend {
        BackendKind::Socket => socket::start(cfg.socket_config(engine), first.clone())
            .context("starting the socket backend")?,
        BackendKind::Dpdk => start_dpdk(&cfg, engine, first.clone())?,
    };
    tracing::info!(
        private = %cfg.sip.private, public = %cfg.sip.public,
        carriers = first.carriers.len(), gateways = first.gateways.len(), tenants = first.tenants.len(),
        "SIP engine running on the {} backend", backend.name
    );
    let backend = Arc::new(backend);
    if cfg.journal.enabled {
        let journal = Journal::open(std::path::Path::new(&cfg.journal.path))
            .await
            .with_context(|| {
                format!(
                    "opening the call journal `{}` ([journal] path)",
                    cfg.journal.path
                )
            })?;
        let loaded = journal.load().await.context("reading the call journal")?;
        if !loaded.calls.is_empty() {
            tracing::info!(calls = loaded.calls.len(), path = %cfg.journal.path, "call journal: restoring calls");
            backend.restore(loaded.calls);
        }
        backend
            .stats
            .journal_on
            .store(true, std::sync::atomic::Ordering::Relaxed);
        journal.start(backend.stats.clone());
    }
    let publisher = backend.clone();
    let state = AppState::new(
        db.clone(),
        Arc::new(move |snap| publisher.publish(snap)),
        Counters {
            engine: backend.stats.clone(),
            io: backend.io(),
            media: backend.media(),
            backend: Some(backend.clone()),
        },
        cfg.dataplane.backend.name(),
        first.clone(),
        cfg.api.token.clone(),
    )
    .with_health(
        {
            let backend = backend.clone();
            Arc::new(move |cmd| backend.health(cmd))
        },
        cfg.health.interval_s,
        cfg.health.timeout_ms,
    )
    .with_metric_tenants(cfg.metrics.max_tenants);
    let state = AppState { dns, ..state };
    // SIP over TCP and TLS on the public side (the stream layer), and the
    // TLS certificates read again on SIGHUP.
    let tls = Arc::new(
        Tls::new(&cfg.tls, cfg.sip.public_tls.is_some())
            .map_err(|e| anyhow::anyhow!("{e}"))
            .context("loading [tls]")?,
    );
    let names_of = state.clone();
    let streams = Streams::start(
        cfg.stream_config(),
        backend.clone(),
        Some(tls.clone()),
        Arc::new(move |addr| crate::stream::tls_name(&names_of.snapshot().0, addr)),
    )
    .await?;
    let api_tls = api_tls_config(&cfg)?;
    if let Ok(mut hup) = signal(SignalKind::hangup()) {
        let (api_tls, cfg) = (api_tls.clone(), cfg.clone());
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!("SIGHUP: TLS certificate and key read again"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: TLS reload failed; the old certificate stays")
                    }
                }
                if let Some(current) = &api_tls {
                    match api_server_config(&cfg) {
                        Ok(Some(c)) => {
                            current.reload_from_config(Arc::new(c));
                            tracing::info!("SIGHUP: API certificate and key read again");
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "SIGHUP: API TLS reload failed; the old certificate stays")
                        }
                    }
                }
            }
        });
    }
    let mut state = state.with_streams(streams.stats.clone());
    state.srtp = cfg.dataplane.backend.srtp();
    if cfg.cluster.redis.is_some() {
        let info = crate::cluster::NodeInfo {
            state: crate::cluster::NodeState::Active,
            sip_private: cfg.sip.private.to_string(),
            sip_public: cfg.sip.public.to_string(),
            api: cfg.api.listen.to_string(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        let cluster = crate::cluster::Cluster::start(&cfg.cluster, info, backend.clone())
            .context("joining the cluster (cluster.redis)")?;
        tracing::info!(node_id = %cfg.cluster.node_id, lease_s = cfg.cluster.lease_s, "cluster: tenant limits shared through the store");
        state.cluster = Some(cluster);
    }
    // One drain for `POST /api/v1/drain` and SIGTERM.
    let (drain_backend, drain_cluster, drain_flag) = (
        backend.clone(),
        state.cluster.clone(),
        state.draining.clone(),
    );
    state.drain_cmd = Arc::new(move |on| {
        if on {
            drain_backend.drain();
        } else {
            drain_backend.undrain();
        }
        if let Some(c) = &drain_cluster {
            c.set_draining(on);
        }
        drain_flag.store(on, Ordering::Relaxed);
        tracing::info!(
            draining = on,
            "drain {}",
            if on {
                "started: new calls refused 503"
            } else {
                "ended: new calls taken"
            }
        );
        true
    });
    // DNS answers expire: once a second, ask again for those that did (a
    // scan of the kept answers; DNS is only asked for expired ones), and
    // hand the engine the new addresses.
    let refresher = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let names = crate::dns::names_in(&refresher.snapshot().0);
            if refresher.dns.refresh_expired(&names).await {
                crate::api::refill(&refresher).await;
            }
        }
    });
    // Writes by other nodes and tools reach this node's engine within a second.
    tokio::spawn(crate::api::watch_provisioning(state.clone()));
    let hep = cfg.hep.target(&cfg.cluster.node_id);
    if let Some(t) = &hep {
        tracing::info!(collector = %t.collector, node_id = t.node_id, "SIP capture to HEP");
    }
    let state = state.with_capture(CaptureHub::start(backend.stats.clone(), hep));
    let state = if cfg.cdr.enabled {
        state.with_cdrs(CdrWriter::start(
            db.clone(),
            cfg.cdr.keep_days,
            &cfg.cluster.node_id,
        ))
    } else {
        state
    };
    let db_up = Arc::new(AtomicBool::new(true));
    let metrics = Arc::new(Metrics::new(&state, db_up.clone()));
    // Keep the engine's rings drained, and the database state current.
    let drainer = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        let mut n = 0u32;
        loop {
            every.tick().await;
            drainer.drain_call_events();
            drainer.drain_health_reports();
            if n.is_multiple_of(20) {
                let up = tokio::time::timeout(Duration::from_secs(1), drainer.db.ping())
                    .await
                    .unwrap_or(false);
                db_up.store(up, Ordering::Relaxed);
            }
            n = n.wrapping_add(1);
        }
    });
    let metrics_listener = tokio::net::TcpListener::bind(cfg.metrics.listen)
        .await
        .with_context(|| {
            format!(
                "binding /metrics on metrics.listen = {}",
                cfg.metrics.listen
            )
        })?;
    tracing::info!(listen = %cfg.metrics.listen, "Prometheus metrics at /metrics");
    tokio::spawn(async move {
        let _ = axum::serve(metrics_listener, metrics_router(metrics)).await;
    });
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API on api.listen = {}", cfg.api.listen))?;
    let engine_stats = backend.stats.clone();
    let drain = Duration::from_secs(cfg.shutdown.drain_s);
    let stopped = drained(engine_stats, drain, state.drain_cmd.clone());
    let cluster = state.cluster.clone();
    match api_tls {
        None => {
            tracing::info!(listen = %cfg.api.listen, "REST API listening (HTTP)");
            axum::serve(listener, api::router(state))
                .with_graceful_shutdown(stopped)
                .await
                .context("API server")?;
        }
        Some(tls) => {
            tracing::info!(listen = %cfg.api.listen, "REST API listening (HTTPS)");
            let handle = axum_server::Handle::new();
            let stopper = handle.clone();
            tokio::spawn(async move {
                stopped.await;
                stopper.graceful_shutdown(Some(Duration::from_secs(1)));
            });
            axum_server::from_tcp_rustls(listener.into_std()?, tls)
                .handle(handle)
                .serve(api::router(state).into_make_service())
                .await
                .context("API server")?;
        }
    }

    tracing::info!("shutting down");
    if let Some(c) = &cluster {
        c.leave().await;
    }
    backend.stop();
    db.close().await;
    Ok(())
}

/// `GET /metrics` (OpenMetrics 1.0 text, which Prometheus scrapes and
/// `promtool` reads); anything else 404.
pub fn metrics_router(metrics: Arc<Metrics>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    )
}

#[cfg(feature = "dpdk")]
fn start_dpdk(
    cfg: &Config,
    engine: EngineConfig,
    first: Arc<sbc_dataplane::RouteSnapshot>,
) -> anyhow::Result<Dataplane> {
    sbc_dataplane::backend::dpdk::start(cfg.dpdk_config(engine)?, first)
        .context("starting the DPDK backend (dataplane.dpdk)")
}

#[cfg(not(feature = "dpdk"))]
fn start_dpdk(
    _cfg: &Config,
    _engine: EngineConfig,
    _first: Arc<sbc_dataplane::RouteSnapshot>,
) -> anyhow::Result<Dataplane> {
    anyhow::bail!(
        "dataplane.backend = \"dpdk\" needs an sbc built with `cargo build --release --features dpdk`"
    )
}

/// Resolves when the SBC should stop: at the first SIGTERM or SIGINT the
/// data plane drains ([`Dataplane::drain`]: new calls get 503, calls in
/// progress go on), then this waits for the last call to end, `drain` to
/// pass, or a second signal, whichever comes first.
async fn drained(
    stats: Arc<sbc_dataplane::stats::EngineStats>,
    drain: Duration,
    start_drain: crate::api::DrainSender,
) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    if drain.is_zero() {
        return;
    }
    start_drain(true);
    let up = stats.calls_up.get();
    tracing::info!(
        calls_up = up,
        drain_s = drain.as_secs(),
        "draining: new calls refused 503; a second SIGTERM exits at once"
    );
    let deadline = tokio::time::Instant::now() + drain;
    loop {
        if stats.dialogs.get() == 0 {
            tracing::info!("drained: no call left");
            return;
        }
        tokio::select! {
            _ = term.recv() => return tracing::warn!(calls_up = stats.calls_up.get(), "second signal: exiting with calls up"),
            _ = int.recv() => return tracing::warn!(calls_up = stats.calls_up.get(), "second signal: exiting with calls up"),
            _ = tokio::time::sleep_until(deadline) => return tracing::warn!(calls_up = stats.calls_up.get(), "drain_s passed: exiting with calls up"),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// The API's TLS configuration when `api.tls_cert` is set (both files
/// read now, so a bad one stops the start naming its key).
fn api_tls_config(cfg: &Config) -> anyhow::Result<Option<RustlsConfig>> {
    Ok(api_server_config(cfg)?.map(|c| RustlsConfig::from_config(Arc::new(c))))
}

fn api_server_config(cfg: &Config) -> anyhow::Result<Option<rustls::ServerConfig>> {
    let (Some(cert), Some(key)) = (&cfg.api.tls_cert, &cfg.api.tls_key) else {
        return Ok(None);
    };
    let mut c =
        crate::stream::tls::server_config_from(("api.tls_cert", cert), ("api.tls_key", key))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(c))
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
