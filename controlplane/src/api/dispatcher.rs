//! Gateway health, as Kamailio's `dispatcher.list`, `dispatcher.ping` and
//! `dispatcher.set_state` gave it: `GET /api/v1/dispatcher`,
//! `POST /api/v1/dispatcher/ping` and `POST /api/v1/dispatcher/state`.
//! The engine judges; the API shows its latest report of each gateway
//! (drained from the engine's ring) and hands operators' requests to it.

use std::net::SocketAddrV4;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use sbc_dataplane::health::{AdminState, HealthCmd};
use sbc_dataplane::routing::RouteSnapshot;

use super::model::{Destination, DispatcherList, PingRequest, StateRequest};
use super::{ApiError, ApiJson, AppState, HealthEntry};

/// `GET /api/v1/dispatcher`: every gateway with its health.
pub(super) async fn list(State(s): State<AppState>) -> ApiJson<DispatcherList> {
    ApiJson(s.dispatcher())
}

/// `POST /api/v1/dispatcher/ping {"group": N}` (no group: all): probes the
/// group's gateways now and answers once each answered or the probe
/// timeout passed, with what the probes found.
pub(super) async fn ping(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<PingRequest>,
) -> Result<ApiJson<DispatcherList>, ApiError> {
    let (snap, _) = s.snapshot();
    let targets: Vec<SocketAddrV4> = snap
        .gateways
        .iter()
        .filter(|g| req.group.is_none_or(|n| i64::from(g.group) == n))
        .flat_map(|g| g.targets.iter().map(|t| t.addr))
        .collect();
    if targets.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "field `group`: no gateway in that group",
        ));
    }
    s.drain_health_reports();
    let before: Vec<u64> = targets.iter().map(|a| results_of(&s, *a)).collect();
    for a in &targets {
        if !(s.health_cmd)(HealthCmd::Probe(*a)) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine is not taking health requests now",
            ));
        }
    }
    // Until every probe sent now has its result, or the timeout passed.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(s.health_timeout_ms + 250);
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        s.drain_health_reports();
        let done = targets
            .iter()
            .zip(&before)
            .all(|(a, n)| results_of(&s, *a) > *n);
        if done || tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    Ok(ApiJson(destinations(&s, &snap, req.group)))
}

/// `POST /api/v1/dispatcher/state {"id": ID, "state": "inactive"}`: an
/// operator's setting for a gateway (`active`, `inactive`, `disabled`).
pub(super) async fn set_state(
    State(s): State<AppState>,
    ApiJson(req): ApiJson<StateRequest>,
) -> Result<ApiJson<DispatcherList>, ApiError> {
    let (snap, _) = s.snapshot();
    let Some(g) = snap.gateways.iter().find(|g| g.id == req.id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("field `id`: no gateway {}", req.id),
        ));
    };
    let Some(first) = g.addr() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "field `id`: gateway {} has no address now (its name does not resolve)",
                req.id
            ),
        ));
    };
    // Every address of the gateway takes the setting (its SRV targets).
    let before = results_of(&s, first);
    for t in &g.targets {
        if !(s.health_cmd)(HealthCmd::SetState(t.addr, req.state)) {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine is not taking health requests now",
            ));
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_000);
    while results_of(&s, first) == before && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        s.drain_health_reports();
    }
    let mut list = destinations(&s, &snap, None);
    list.destinations.retain(|d| d.id == req.id);
    Ok(ApiJson(list))
}

/// How many reports of `addr` the API has seen: one per probe result or
/// change of state.
fn results_of(s: &AppState, addr: SocketAddrV4) -> u64 {
    s.health
        .lock()
        .ok()
        .and_then(|h| h.get(&addr).map(|e| e.results))
        .unwrap_or(0)
}

fn entry(s: &AppState, addr: SocketAddrV4) -> Option<HealthEntry> {
    s.health.lock().ok().and_then(|h| h.get(&addr).cloned())
}

/// The gateways of the snapshot (of `group`, when given) with their health,
/// by group then priority (highest first) then id.
pub(super) fn destinations(
    s: &AppState,
    snap: &RouteSnapshot,
    group: Option<i64>,
) -> DispatcherList {
    let probing = s.health_interval_s > 0;
    let mut out: Vec<Destination> = snap
        .gateways
        .iter()
        .filter(|g| group.is_none_or(|n| i64::from(g.group) == n))
        .map(|g| {
            // A gateway is listed under its first address; one whose name
            // does not resolve is down for that reason.
            let unresolved = g.addr().is_none().then(|| {
                s.dns
                    .answer(&g.destination)
                    .and_then(|a| a.error)
                    .unwrap_or_else(|| "DNS: not resolved yet".to_string())
            });
            let e = g.addr().and_then(|a| entry(s, a));
            let since_s = e.as_ref().map(|e| e.changed.elapsed().as_secs());
            let r = e.map(|e| e.report);
            let admin = r.as_ref().map_or(AdminState::Active, |r| r.admin);
            let up = r.as_ref().is_none_or(|r| r.up)
                && admin != AdminState::Disabled
                && unresolved.is_none();
            let trying = r.as_ref().is_some_and(|r| r.up && r.failures > 0);
            let mut flags = String::from(match (admin, up, trying) {
                (AdminState::Disabled, ..) => "D",
                (_, true, true) => "T",
                (_, true, false) => "A",
                (_, false, _) => "I",
            });
            flags.push(if probing && admin != AdminState::Disabled {
                'P'
            } else {
                'X'
            });
            Destination {
                id: g.id,
                group: i64::from(g.group),
                uri: g.destination.clone(),
                flags,
                state: if up { "up" } else { "down" }.to_string(),
                admin: admin.name().to_string(),
                priority: i64::from(g.priority),
                weight: i64::from(g.weight),
                latency_last_ms: r.as_ref().and_then(|r| r.latency_last),
                latency_avg_ms: r.as_ref().and_then(|r| r.latency_avg),
                failures: r.as_ref().map_or(0, |r| r.failures),
                reason: unresolved.unwrap_or_else(|| {
                    r.as_ref()
                        .map_or_else(|| "not probed yet".to_string(), |r| r.reason.clone())
                }),
                addresses: g.targets.iter().map(|t| t.addr.to_string()).collect(),
                since_s,
                probes: r.as_ref().map_or(0, |r| r.probes),
                probe_failures: r.as_ref().map_or(0, |r| r.probe_failures),
            }
        })
        .collect();
    out.sort_by_key(|d| (d.group, -d.priority, d.id));
    let up = out.iter().filter(|d| d.state == "up").count() as u64;
    DispatcherList {
        probing,
        up,
        down: out.len() as u64 - up,
        destinations: out,
    }
}
