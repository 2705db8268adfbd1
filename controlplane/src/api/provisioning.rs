//! Provisioning: `GET`/`POST /api/v1/{carriers,gateways,tenants}` and
//! `DELETE` of one by its id. Each write is validated before it reaches the
//! database, then the routing snapshot is rebuilt and published.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use sbc_dataplane::routing;

use super::{created, republish, ApiError, ApiResult, AppState, Fields};
use crate::provisioning::{CarrierRow, GatewayRow, Table, TenantRow};

pub(super) async fn list_carriers(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.carriers().await?).into_response())
}

pub(super) async fn add_carrier(State(s): State<AppState>, body: Bytes) -> ApiResult {
    let f = Fields::parse(&body, &["ip", "mask", "name", "group"])?;
    let ip = f.ipv4("ip")?;
    let mask = f.int("mask", Some(32), 0, 32)?;
    let name = f.string("name", None)?;
    if name.is_empty() {
        return Err(ApiError::bad("name", "must not be empty"));
    }
    let group = f.int("group", Some(1), 0, i64::from(i32::MAX))?;
    let row = CarrierRow {
        id: 0,
        ip: ip.to_string(),
        mask,
        name,
        group,
    };
    let row = s.db.add_carrier(&row).await?;
    republish(&s).await?;
    created(row)
}

pub(super) async fn delete_carrier(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove(&s, Table::Carriers, &id, "carrier").await
}

pub(super) async fn list_gateways(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.gateways().await?).into_response())
}

pub(super) async fn add_gateway(State(s): State<AppState>, body: Bytes) -> ApiResult {
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

pub(super) async fn delete_gateway(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
    remove(&s, Table::Gateways, &id, "gateway").await
}

pub(super) async fn list_tenants(State(s): State<AppState>) -> ApiResult {
    Ok(Json(s.db.tenants().await?).into_response())
}

pub(super) async fn upsert_tenant(State(s): State<AppState>, body: Bytes) -> ApiResult {
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

pub(super) async fn delete_tenant(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult {
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
