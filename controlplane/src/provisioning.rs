//! SQL provisioning: carriers, gateways and tenants, and the routing snapshot
//! built from them. Every write is one transaction; validation happens before
//! it, so bad input changes nothing.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use sbc_dataplane::routing::{self, Carrier, Gateway, RouteSnapshot, Tenant};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CarrierRow {
    pub id: i64,
    pub ip: String,
    pub mask: i64,
    pub name: String,
    pub group: i64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GatewayRow {
    pub id: i64,
    pub destination: String,
    pub group: i64,
    pub priority: i64,
    pub weight: i64,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantRow {
    pub tenant_id: String,
    pub source_ip: String,
    pub gateway_group: i64,
    pub max_cps: i64,
    pub max_concurrent: i64,
}

/// The provisioning database.
#[derive(Debug)]
pub struct Provisioning {
    pool: SqlitePool,
    version: AtomicU64,
}

impl Provisioning {
    /// Opens (creating if needed) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Provisioning, DbError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        sqlx::migrate!("../migrations").run(&pool).await?;
        Ok(Provisioning {
            pool,
            version: AtomicU64::new(0),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn carriers(&self) -> Result<Vec<CarrierRow>, DbError> {
        let rows = sqlx::query("SELECT id, ip, mask, name, grp FROM carriers ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| CarrierRow {
                id: r.get("id"),
                ip: r.get("ip"),
                mask: r.get("mask"),
                name: r.get("name"),
                group: r.get("grp"),
            })
            .collect())
    }

    pub async fn add_carrier(
        &self,
        ip: &str,
        mask: i64,
        name: &str,
        group: i64,
    ) -> Result<CarrierRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query("INSERT INTO carriers (ip, mask, name, grp) VALUES (?, ?, ?, ?)")
            .bind(ip)
            .bind(mask)
            .bind(name)
            .bind(group)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        tx.commit().await?;
        Ok(CarrierRow {
            id,
            ip: ip.into(),
            mask,
            name: name.into(),
            group,
        })
    }

    pub async fn gateways(&self) -> Result<Vec<GatewayRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, destination, grp, priority, weight, description FROM gateways ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| GatewayRow {
                id: r.get("id"),
                destination: r.get("destination"),
                group: r.get("grp"),
                priority: r.get("priority"),
                weight: r.get("weight"),
                description: r.get("description"),
            })
            .collect())
    }

    pub async fn add_gateway(&self, g: &GatewayRow) -> Result<GatewayRow, DbError> {
        let mut tx = self.pool.begin().await?;
        let id = sqlx::query(
            "INSERT INTO gateways (destination, grp, priority, weight, description) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&g.destination)
        .bind(g.group)
        .bind(g.priority)
        .bind(g.weight)
        .bind(&g.description)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
        tx.commit().await?;
        Ok(GatewayRow { id, ..g.clone() })
    }

    pub async fn tenants(&self) -> Result<Vec<TenantRow>, DbError> {
        let rows = sqlx::query(
            "SELECT tenant_id, source_ip, gateway_group, max_cps, max_concurrent FROM tenants ORDER BY tenant_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| TenantRow {
                tenant_id: r.get("tenant_id"),
                source_ip: r.get("source_ip"),
                gateway_group: r.get("gateway_group"),
                max_cps: r.get("max_cps"),
                max_concurrent: r.get("max_concurrent"),
            })
            .collect())
    }

    /// Adds or updates a tenant; `true` when it was created.
    pub async fn upsert_tenant(&self, t: &TenantRow) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE tenants SET source_ip = ?, gateway_group = ?, max_cps = ?, max_concurrent = ? WHERE tenant_id = ?",
        )
        .bind(&t.source_ip)
        .bind(t.gateway_group)
        .bind(t.max_cps)
        .bind(t.max_concurrent)
        .bind(&t.tenant_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            sqlx::query(
                "INSERT INTO tenants (tenant_id, source_ip, gateway_group, max_cps, max_concurrent) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&t.tenant_id)
            .bind(&t.source_ip)
            .bind(t.gateway_group)
            .bind(t.max_cps)
            .bind(t.max_concurrent)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(updated == 0)
    }

    /// Deletes a row of `table` by its key; `false` when there was none.
    pub async fn delete(&self, table: Table, key: &str) -> Result<bool, DbError> {
        let sql = match table {
            Table::Carriers => "DELETE FROM carriers WHERE id = ?",
            Table::Gateways => "DELETE FROM gateways WHERE id = ?",
            Table::Tenants => "DELETE FROM tenants WHERE tenant_id = ?",
        };
        let mut tx = self.pool.begin().await?;
        let n = sqlx::query(sql)
            .bind(key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Reads every table into a new immutable snapshot with the next version.
    pub async fn snapshot(&self) -> Result<RouteSnapshot, DbError> {
        let corrupt = |what: &str, v: &str| DbError::Corrupt(format!("{what} {v:?}"));
        let carriers = self
            .carriers()
            .await?
            .into_iter()
            .map(|c| {
                Ok(Carrier {
                    id: c.id,
                    ip: Ipv4Addr::from_str(&c.ip).map_err(|_| corrupt("carrier ip", &c.ip))?,
                    mask: u8::try_from(c.mask)
                        .map_err(|_| corrupt("carrier mask", &c.mask.to_string()))?,
                    name: c.name,
                    group: u32::try_from(c.group).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let gateways = self
            .gateways()
            .await?
            .into_iter()
            .map(|g| {
                Ok(Gateway {
                    id: g.id,
                    addr: routing::parse_destination(&g.destination)
                        .map_err(|_| corrupt("gateway destination", &g.destination))?,
                    destination: g.destination,
                    group: u32::try_from(g.group).unwrap_or(0),
                    priority: i32::try_from(g.priority).unwrap_or(0),
                    weight: u32::try_from(g.weight).unwrap_or(0),
                    description: g.description,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let tenants = self
            .tenants()
            .await?
            .into_iter()
            .map(|t| {
                Ok(Tenant {
                    source_ip: Ipv4Addr::from_str(&t.source_ip)
                        .map_err(|_| corrupt("tenant source_ip", &t.source_ip))?,
                    tenant_id: t.tenant_id,
                    gateway_group: u32::try_from(t.gateway_group).unwrap_or(0),
                    max_cps: u32::try_from(t.max_cps).unwrap_or(0),
                    max_concurrent: u32::try_from(t.max_concurrent).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let version = self.version.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(RouteSnapshot {
            version,
            carriers,
            gateways,
            tenants,
        })
    }
}

/// The provisioned tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Carriers,
    Gateways,
    Tenants,
}
