//! `POST /api/v1/route`: the decision the SIP engine would take for an
//! INVITE, from the same `RouteSnapshot::route` the engine calls.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use sbc_dataplane::routing::{Decision, RouteRequest};
use sbc_dataplane::sip::grammar::SipUri;
use sbc_dataplane::Side;
use serde_json::{json, Value};

use super::{ApiError, ApiResult, AppState, Fields};

/// `POST /api/v1/route`: the decision the SIP engine would take for an INVITE.
pub(super) async fn route(State(s): State<AppState>, body: Bytes) -> ApiResult {
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
