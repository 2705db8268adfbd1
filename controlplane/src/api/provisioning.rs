//! Provisioning: `GET`/`POST /api/v1/{carriers,gateways,tenants}` and
//! `DELETE` of one by its id. A write is validated before it reaches the
//! database ([`ApiJson`]), then the routing snapshot is rebuilt and
//! published before the answer goes out.

use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::model::{CarrierIn, CarrierRow, FieldError, GatewayIn, GatewayRow, TenantIn, TenantRow};
use super::{republish, ApiError, ApiJson, AppState};
use crate::provisioning::Table;
use crate::provisioning::{DnsAddress, DnsView};
use sbc_dataplane::routing::MediaEncryption;

/// A handler's answer: a status and a JSON body, or an error.
type Answer<T> = Result<(StatusCode, ApiJson<T>), ApiError>;

/// A list answer, or an error.
type List<T> = Result<ApiJson<Vec<T>>, ApiError>;

/// `GET /api/v1/carriers`.
pub(super) async fn list_carriers(State(s): State<AppState>) -> List<CarrierRow> {
    Ok(ApiJson(s.db.carriers().await?))
}

/// `POST /api/v1/carriers`: 201 with the stored carrier.
pub(super) async fn add_carrier(
    State(s): State<AppState>,
    ApiJson(carrier): ApiJson<CarrierIn>,
) -> Answer<CarrierRow> {
    let row = s.db.add_carrier(&carrier.into_row()).await?;
    republish(&s).await?;
    Ok((StatusCode::CREATED, ApiJson(row)))
}

/// `DELETE /api/v1/carriers/{id}`: 204, or 404.
pub(super) async fn delete_carrier(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&s, Table::Carriers, &id, "carrier").await
}

/// `GET /api/v1/gateways`.
pub(super) async fn list_gateways(State(s): State<AppState>) -> List<GatewayRow> {
    let mut rows = s.db.gateways().await?;
    // What a host name resolves to now.
    let now = std::time::Instant::now();
    for r in &mut rows {
        r.dns = s.dns.answer(&r.destination).map(|a| DnsView {
            addresses: a
                .targets
                .iter()
                .map(|t| DnsAddress {
                    address: t.addr.to_string(),
                    priority: t.priority,
                    weight: t.weight,
                })
                .collect(),
            expires_in_s: a.until.saturating_duration_since(now).as_secs(),
            error: a.error,
        });
    }
    Ok(ApiJson(rows))
}

/// `POST /api/v1/gateways`: 201 with the stored gateway.
pub(super) async fn add_gateway(
    State(s): State<AppState>,
    ApiJson(gateway): ApiJson<GatewayIn>,
) -> Answer<GatewayRow> {
    if gateway.media_encryption != MediaEncryption::Disable && !s.srtp {
        return Err(FieldError::new(
            "media_encryption",
            "this SBC relays no SRTP (built without the srtp feature): only disable",
        )
        .into());
    }
    let row = s.db.add_gateway(&gateway.into_row()).await?;
    republish(&s).await?;
    Ok((StatusCode::CREATED, ApiJson(row)))
}

/// `DELETE /api/v1/gateways/{id}`: 204, or 404.
pub(super) async fn delete_gateway(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&s, Table::Gateways, &id, "gateway").await
}

/// `GET /api/v1/tenants`.
pub(super) async fn list_tenants(State(s): State<AppState>) -> List<TenantRow> {
    Ok(ApiJson(s.db.tenants().await?))
}

/// `POST /api/v1/tenants`: 201 with the tenant when it is new, 200 when it
/// replaced the one with its `tenant_id`.
pub(super) async fn upsert_tenant(
    State(s): State<AppState>,
    ApiJson(tenant): ApiJson<TenantIn>,
) -> Answer<TenantRow> {
    let row = tenant.into_row();
    let was_created = s.db.upsert_tenant(&row).await?;
    republish(&s).await?;
    let code = if was_created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, ApiJson(row)))
}

/// `DELETE /api/v1/tenants/{tenant_id}`: 204, or 404.
pub(super) async fn delete_tenant(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    remove(&s, Table::Tenants, &id, "tenant").await
}

/// Deletes the row of `table` keyed `key`: 400 for a carrier or gateway id
/// that is not an integer, 404 when there is no such row.
async fn remove(s: &AppState, table: Table, key: &str, what: &str) -> Result<StatusCode, ApiError> {
    if table != Table::Tenants && key.parse::<i64>().is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} id must be an integer"),
        ));
    }
    if !s.db.delete(table, key).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no {what} {key}"),
        ));
    }
    republish(s).await?;
    Ok(StatusCode::NO_CONTENT)
}
