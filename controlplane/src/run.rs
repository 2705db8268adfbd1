//! `sbc run`: start the data plane, the API, and wait for a signal.

use std::sync::Arc;

use anyhow::Context;
use sbc_dataplane::backend::socket::{self, SocketConfig};
use sbc_dataplane::backend::Dataplane;
use sbc_dataplane::engine::{MediaSettings, Policy};
use sbc_dataplane::{BySide, EngineConfig};
use tokio::signal::unix::{signal, SignalKind};

use crate::api::{self, AppState, Counters};
use crate::config::{BackendKind, Config, UnknownSource};
use crate::provisioning::Provisioning;

/// Runs the SBC until SIGINT or SIGTERM.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    let db = Arc::new(
        Provisioning::open(&cfg.database.url)
            .await
            .with_context(|| format!("opening database `{}`", cfg.database.url))?,
    );
    let first = Arc::new(db.snapshot().await.context("reading provisioning")?);
    let mut engine = EngineConfig::new(cfg.sip.private, cfg.sip.public);
    engine.t1 = cfg.sip.t1_ms;
    engine.t2 = 8 * cfg.sip.t1_ms;
    engine.seed = seed();
    engine.media = Some(media_settings(&cfg));
    engine.policy = Policy {
        failover_codes: cfg.routing.failover_codes.clone(),
        failover_timeout: cfg.routing.failover_timeout_ms,
        limit_code: cfg.routing.limit_code,
        retry_after_s: cfg.routing.retry_after_s,
        drop_unknown_sources: cfg.routing.unknown_source == UnknownSource::Drop,
    };
    let backend = match cfg.dataplane.backend {
        BackendKind::Socket => socket::start(
            SocketConfig {
                engine,
                sip_core: cfg.sip.engine_core,
                ring_size: 4096,
            },
            first.clone(),
        )
        .context("starting the socket backend")?,
        BackendKind::Dpdk => start_dpdk(&cfg, engine, first.clone())?,
    };
    tracing::info!(
        private = %cfg.sip.private, public = %cfg.sip.public,
        carriers = first.carriers.len(), gateways = first.gateways.len(), tenants = first.tenants.len(),
        "SIP engine running on the {} backend", backend.name
    );
    let backend = Arc::new(backend);
    let publisher = backend.clone();
    let state = AppState::new(
        db.clone(),
        Arc::new(move |snap| publisher.publish(snap)),
        Counters {
            engine: backend.stats.clone(),
            io: backend.io(),
            media: backend.media(),
        },
        cfg.dataplane.backend.name(),
        first.clone(),
        cfg.api.token.clone(),
    );
    // Keep the engine's call-outcome ring drained.
    let drainer = state.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            every.tick().await;
            drainer.drain_call_events();
        }
    });
    let listener = tokio::net::TcpListener::bind(cfg.api.listen)
        .await
        .with_context(|| format!("binding the API on api.listen = {}", cfg.api.listen))?;
    tracing::info!(listen = %cfg.api.listen, "REST API listening");
    let server =
        axum::serve(listener, api::router(state)).with_graceful_shutdown(shutdown_signal());
    server.await.context("API server")?;

    tracing::info!("shutting down");
    backend.stop();
    db.close().await;
    Ok(())
}

#[cfg(feature = "dpdk")]
fn start_dpdk(
    cfg: &Config,
    engine: EngineConfig,
    first: Arc<sbc_dataplane::RouteSnapshot>,
) -> anyhow::Result<Dataplane> {
    let d = cfg
        .dataplane
        .dpdk
        .as_ref()
        .context("dataplane.dpdk is required when backend = \"dpdk\"")?;
    sbc_dataplane::backend::dpdk::start(
        sbc_dataplane::backend::dpdk::DpdkConfig {
            eal_args: d.eal_args.clone(),
            ports: BySide::new(d.private_port, d.public_port),
            prefixes: BySide::new(d.private_prefix, d.public_prefix),
            next_hops: BySide::new(d.private_next_hop, d.public_next_hop),
            idle_sleep_us: d.idle_sleep_us,
            engine,
            sip_core: cfg.sip.engine_core,
            ring_size: 4096,
        },
        first,
    )
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

/// The media relay's addresses (default: the SIP addresses) and port ranges.
/// When both sides share one address, each side gets half of the range.
fn media_settings(cfg: &Config) -> MediaSettings {
    let private_ip = cfg.media.private_ip.unwrap_or(*cfg.sip.private.ip());
    let public_ip = cfg.media.public_ip.unwrap_or(*cfg.sip.public.ip());
    let (min, max) = (cfg.media.port_min, cfg.media.port_max);
    let (private_ports, public_ports) = if private_ip == public_ip {
        let mid = min + (max - min) / 2;
        ((min, mid), (mid, max))
    } else {
        ((min, max), (min, max))
    };
    MediaSettings {
        ip: BySide::new(private_ip, public_ip),
        ports: BySide::new(private_ports, public_ports),
        timeout: cfg.media.timeout_s * 1000,
    }
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
