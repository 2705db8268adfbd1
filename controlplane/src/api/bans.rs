//! The flood guard's bans (`sbc_dataplane::guard`): `GET /api/v1/bans`
//! lists those in force, `DELETE /api/v1/bans/{ip}` lifts one (`sbcctl ban
//! list|remove`). The engine thread owns the guard; these ask it through
//! the engine's stats rings and wait for its answer (it runs every turn,
//! at least every 50 ms).

use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::model::BanView;
use super::{ApiError, ApiJson, AppState};

/// The bans in force, as the engine thread lists them; 503 when it does
/// not answer within a second.
async fn bans_now(s: &AppState) -> Result<Vec<BanView>, ApiError> {
    let e = &s.stats.engine;
    while e.bans.pop().is_some() {}
    e.bans_wanted.store(true, Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Some((now, bans)) = e.bans.pop() {
            return Ok(bans
                .into_iter()
                .map(|b| BanView {
                    ip: b.ip.to_string(),
                    reason: b.reason.to_string(),
                    banned_for_s: now.saturating_sub(b.since) / 1000,
                    expires_in_s: b.until.saturating_sub(now).div_ceil(1000),
                    dropped: b.dropped,
                })
                .collect());
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the SIP engine did not answer",
    ))
}

/// `GET /api/v1/bans`: the sources the flood guard drops, by address.
pub(super) async fn list(State(s): State<AppState>) -> Result<ApiJson<Vec<BanView>>, ApiError> {
    Ok(ApiJson(bans_now(&s).await?))
}

/// `DELETE /api/v1/bans/{ip}`: 204 when that source was banned (it is
/// not any more), 404 when it was not, 400 for no IPv4 address.
pub(super) async fn remove(
    State(s): State<AppState>,
    Path(ip): Path<String>,
) -> Result<StatusCode, ApiError> {
    let addr: Ipv4Addr = ip.trim().parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("field `ip`: {ip:?} is not an IPv4 address"),
        )
    })?;
    let banned = bans_now(&s).await?.iter().any(|b| b.ip == addr.to_string());
    if !banned {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{addr} is not banned"),
        ));
    }
    if s.stats.engine.unban.push(addr).is_err() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the SIP engine's queue is full; try again",
        ));
    }
    Ok(StatusCode::NO_CONTENT)
}
