//! `sbc run`: start the data plane, the API, and wait for a signal.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sbc_dataplane::socket::{SocketBackend, SocketConfig};
use sbc_dataplane::EngineConfig;
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, AppState};
use crate::config::{Backend, Config};
use crate::provisioning::Provisioning;

/// Runs the SBC until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let db = Arc::new(
        Provisioning::open(&cfg.database.url)
            .await
            .with_context(|| format!("opening database `{}`", cfg.database.url))?,
    );
    let first = Arc::new(db.snapshot().await.context("reading provisioning")?);
    if cfg.dataplane.backend == Backend::Dpdk {
        anyhow::bail!("dataplane.backend = \"dpdk\": the DPDK dataplane is not built yet");
    }
    let mut engine = EngineConfig::new(cfg.sip.private, cfg.sip.public);
    engine.t1 = cfg.sip.t1_ms;
    engine.t2 = 8 * cfg.sip.t1_ms;
    engine.seed = seed();
    let backend = SocketBackend::start(
        SocketConfig {
            engine,
            sip_core: cfg.sip.engine_core,
            ring_size: 4096,
        },
        first.clone(),
    )
    .context("starting the socket backend")?;
    tracing::info!(
        private = %cfg.sip.private, public = %cfg.sip.public,
        carriers = first.carriers.len(), gateways = first.gateways.len(), tenants = first.tenants.len(),
        "SIP engine running on the socket backend"
    );
    let backend = Arc::new(backend);
    let publisher = backend.clone();
    let state = AppState {
        db: db.clone(),
        publish: Arc::new(move |snap| publisher.publish(snap)),
        engine: backend.stats.clone(),
        io: backend.io.clone(),
        backend: cfg.dataplane.backend.name(),
        started: Instant::now(),
    };
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API on api.listen = {}", cfg.api.listen))?;
    tracing::info!(listen = %cfg.api.listen, "REST API listening");
    let server =
        axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown_signal());
    server.await.context("API server")?;

    tracing::info!("shutting down");
    match Arc::try_unwrap(backend) {
        Ok(b) => b.stop(),
        Err(_) => tracing::warn!("data plane still referenced at shutdown"),
    }
    db.close().await;
    Ok(())
}

async fn shutdown_signal() {
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
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ u64::from(std::process::id()).rotate_left(32)
}
