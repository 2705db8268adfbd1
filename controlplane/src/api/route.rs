//! `POST /api/v1/route`: the decision the SIP engine would take for an
//! INVITE, from the same `RouteSnapshot::route` the engine calls.

use axum::extract::State;
use sbc_dataplane::routing::{Decision, RouteRequest};
use sbc_dataplane::Side;

use super::model::{Action, Direction, RouteDecision, RouteQuery};
use super::{ApiError, ApiJson, AppState};

/// `POST /api/v1/route`: the decision for an INVITE from `source_ip` to
/// `to`, with the routing snapshot the engine has now.
pub(super) async fn route(
    State(s): State<AppState>,
    ApiJson(q): ApiJson<RouteQuery>,
) -> Result<ApiJson<RouteDecision>, ApiError> {
    let uri = q.uri()?;
    let from = q.from_uri()?;
    let (snap, _) = s.snapshot();
    let req = RouteRequest {
        source: q.source_ip,
        user: uri.user_number().unwrap_or_default(),
        tenant_header: q.tenant_header().map(str::as_bytes),
        from_user: from.and_then(|f| f.user_number()),
    };
    // The side is the one the INVITE would arrive on: gateways call from the public side.
    let side = if snap.is_gateway(q.source_ip) {
        Side::Public
    } else {
        Side::Private
    };
    let direction = Direction::of(side);
    let mut random = s.started.elapsed().as_nanos() as u64;
    Ok(ApiJson(match snap.route(side, &req, &mut random) {
        Decision::Route {
            tenant_id,
            gateway_group,
            user,
            caller_user,
            candidates,
        } => RouteDecision {
            action: Action::Route,
            direction,
            tenant_id,
            gateway_group,
            user: Some(String::from_utf8_lossy(&user).into_owned()),
            caller_user: caller_user.map(|c| String::from_utf8_lossy(&c).into_owned()),
            profiles: candidates
                .iter()
                .map(|c| c.profile.name().to_string())
                .collect(),
            candidates: candidates.into_iter().map(|c| c.uri).collect(),
            code: None,
            reason: None,
        },
        Decision::Reject { code, reason } => RouteDecision {
            action: Action::Reject,
            direction,
            tenant_id: None,
            gateway_group: None,
            user: None,
            caller_user: None,
            candidates: Vec::new(),
            profiles: Vec::new(),
            code: Some(code),
            reason: Some(reason.to_string()),
        },
    }))
}
