//! SQL provisioning: carriers, gateways and tenants, and the routing snapshot
//! built from them. Every write is one transaction; validation happens before
//! it, so bad input changes nothing.
//!
//! One code path serves the three databases through sqlx's `Any` driver: the
//! embedded SQLite default, MySQL/MariaDB and PostgreSQL. Only two things
//! differ per database: the DDL of the migrations (`migrations/<dialect>/`,
//! same versions and tables), how a new row's id comes back, and how a read
//! transaction asks for one consistent view ([`Provisioning::snapshot`]).

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use sbc_dataplane::media::offer::parse_codecs;
use sbc_dataplane::numbers::{NumberFormat, NumberRules};
use sbc_dataplane::routing::{
    self, Carrier, Credentials, Gateway, MediaEncryption, Profile, RouteSnapshot, Tenant,
};
use serde::{Deserialize, Serialize};
use sqlx::any::{AnyArguments, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::query::Query;
use sqlx::{Any, AnyPool, Connection, Executor, Row, Transaction};
use std::collections::BTreeMap;

/// Why a provisioning call failed; the API answers 503 with its text.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused the statement or cannot be reached.
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The schema could not be brought to our version.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value the routing snapshot cannot use (names the value).
    #[error("stored row is invalid: {0}")]
    Corrupt(String),
    /// A URL that names none of the three databases.
    #[error(
        "unsupported database URL scheme `{0}` (sqlite://, mysql://, mariadb://, postgres://)"
    )]
    Scheme(String),
}

/// The SQL dialects we run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite, the embedded default.
    Sqlite,
    /// MySQL or MariaDB.
    MySql,
    /// PostgreSQL.
    Postgres,
}

impl Dialect {
    /// The dialect of a database URL, and the URL as sqlx wants it.
    pub fn of(url: &str) -> Result<(Dialect, String), DbError> {
        let scheme = url.split(':').next().unwrap_or_default();
        match scheme {
            "sqlite" if url.contains('?') => Ok((Dialect::Sqlite, url.to_string())),
            // Create the file on first start.
            "sqlite" => Ok((Dialect::Sqlite, format!("{url}?mode=rwc"))),
            "mysql" => Ok((Dialect::MySql, url.to_string())),
            "mariadb" => Ok((Dialect::MySql, url.replacen("mariadb:", "mysql:", 1))),
            "postgres" | "postgresql" => Ok((Dialect::Postgres, url.to_string())),
            other => Err(DbError::Scheme(other.to_string())),
        }
    }

    /// The name `GET /api/v1/status` reports as `database_kind`.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "sqlite",
            Dialect::MySql => "mysql",
            Dialect::Postgres => "postgres",
        }
    }
}

static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");
static MYSQL: Migrator = sqlx::migrate!("../migrations/mysql");
static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

/// The profile called `name` (exactly as [`Profile::name`] writes it), or
/// why not: `unknown profile "x" (transparent, livekit)`. How the API,
/// `sbcctl` and the config read a profile's name.
pub fn profile_named(name: &str) -> Result<Profile, String> {
    Profile::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
        format!("unknown profile {name:?} ({})", known.join(", "))
    })
}

/// The number format called `name` (exactly as [`NumberFormat::name`]
/// writes it), or why not: `unknown number format "x" (e164, digits,
/// as_is)`. How the API and `sbcctl` read a format's name.
pub fn number_format_named(name: &str) -> Result<NumberFormat, String> {
    NumberFormat::parse(name).ok_or_else(|| {
        let known: Vec<&str> = NumberFormat::ALL.iter().map(|f| f.name()).collect();
        format!("unknown number format {name:?} ({})", known.join(", "))
    })
}

/// A carrier (allowlist entry) as stored, and as the API answers it
/// (OpenAPI `Carrier`). The API validated it before it was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CarrierRow {
    /// Assigned by the database on insert.
    pub id: i64,
    /// Network address, dotted-quad IPv4.
    pub ip: String,
    /// Prefix length, 0..=32.
    pub mask: i64,
    /// A name for people, not empty.
    pub name: String,
    /// Gateway group that INVITEs from this carrier are routed to when no
    /// tenant applies, 0..=2^31-1 (column `grp`).
    #[sqlx(rename = "grp")]
    pub group: i64,
}

/// A gateway (dispatcher destination) as stored, and as the API answers it
/// (OpenAPI `Gateway`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct GatewayRow {
    /// Assigned by the database on insert.
    pub id: i64,
    /// `sip:HOST[:port]`, HOST an IPv4 literal or a host name (resolved
    /// per RFC 3263; port 5060, or SRV's, when absent).
    pub destination: String,
    /// Dispatcher group, 1..=2^31-1 (column `grp`).
    #[sqlx(rename = "grp")]
    pub group: i64,
    /// Higher is tried first, within `i32`.
    pub priority: i64,
    /// Share among gateways of equal priority, 0..=1,000,000.
    pub weight: i64,
    /// Free text for people.
    pub description: String,
    /// How the SBC speaks to it, a [`Profile::name`] (`transparent`,
    /// `livekit`) as stored; `None` (SQL NULL, JSON null) means
    /// `[routing] default_profile`, which the snapshot resolves it to.
    #[serde(default)]
    pub profile: Option<String>,
    /// Digest username the SBC answers the gateway's 401/407 with (NULL:
    /// its challenges go back to the caller).
    #[serde(default)]
    pub auth_username: Option<String>,
    /// Its password: stored, never answered by the API (`auth_password_set`
    /// says whether there is one).
    #[serde(default, skip_serializing)]
    pub auth_password: Option<String>,
    /// Only challenges of this realm are answered (NULL: any).
    #[serde(default)]
    pub auth_realm: Option<String>,
    /// Header lines added to every initial INVITE sent to it: `X-` names
    /// to values (a LiveKit trunk's `headers`); stored as a JSON object,
    /// NULL when empty.
    #[sqlx(try_from = "Option<String>")]
    #[serde(default)]
    pub headers: GatewayHeaders,
    /// SRTP toward it: `disable`, `allow` or `require` (a
    /// [`sbc_dataplane::routing::MediaEncryption::name`]).
    #[serde(default = "disable")]
    pub media_encryption: String,
    /// Whether a password is stored (not a column: the API fills it in).
    #[sqlx(skip)]
    #[serde(default)]
    pub auth_password_set: bool,
    /// The transport its destination names: `udp`, `tcp` or `tls` (`sips:`
    /// or `;transport=`; not a column: read from `destination`).
    #[sqlx(skip)]
    #[serde(default)]
    pub transport: String,
    /// For a destination that names a host: what it resolves to now (not
    /// stored; the API fills it in when it lists gateways).
    #[sqlx(skip)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsView>,
}

/// The default of [`GatewayRow::media_encryption`].
fn disable() -> String {
    "disable".into()
}

/// The transport a gateway destination names, by its config name (`udp`
/// when it does not parse: such a row is refused at snapshot time anyway).
pub fn transport_of(destination: &str) -> String {
    routing::parse_destination(destination)
        .map_or(sbc_dataplane::Transport::Udp, |(_, t)| t)
        .name()
        .to_string()
}

/// A gateway's extra INVITE headers: `X-` names to values, in name order.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GatewayHeaders(pub BTreeMap<String, String>);

impl TryFrom<Option<String>> for GatewayHeaders {
    type Error = serde_json::Error;

    /// The column's JSON object (NULL: none).
    fn try_from(column: Option<String>) -> Result<Self, Self::Error> {
        match column {
            None => Ok(GatewayHeaders::default()),
            Some(text) => serde_json::from_str(&text).map(GatewayHeaders),
        }
    }
}

impl GatewayHeaders {
    /// The column's value: a JSON object, NULL when empty.
    pub fn to_column(&self) -> Option<String> {
        (!self.0.is_empty()).then(|| serde_json::Value::from_iter(self.0.clone()).to_string())
    }

    /// As header lines, `Name: value\r\n` each, for the engine.
    pub fn lines(&self) -> Vec<u8> {
        self.0
            .iter()
            .flat_map(|(n, v)| format!("{n}: {v}\r\n").into_bytes())
            .collect()
    }
}

/// What a gateway's host name resolves to, as `GET /api/v1/gateways`
/// shows it (RFC 3263; `crate::dns`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct DnsView {
    /// The addresses in the order they are tried, `IPv4:port`, with their
    /// SRV priority and weight (0 for A records).
    pub addresses: Vec<DnsAddress>,
    /// Seconds until the answer expires and is asked again.
    pub expires_in_s: u64,
    /// Why it resolves to nothing (the gateway is then down).
    pub error: Option<String>,
}

/// One address of a [`DnsView`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsAddress {
    /// `IPv4:port`.
    pub address: String,
    /// SRV priority (lower first).
    pub priority: u16,
    /// SRV weight.
    pub weight: u16,
}

/// A tenant as stored, and as the API answers it (OpenAPI `Tenant`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct TenantRow {
    /// 1 to 64 letters, digits, `-` or `.`; the key.
    pub tenant_id: String,
    /// The address the tenant's INVITEs come from, dotted-quad IPv4.
    pub source_ip: String,
    /// Gateway group its calls go to, 1..=2^31-1.
    pub gateway_group: i64,
    /// New calls per second allowed, 1..=1,000,000.
    pub max_cps: i64,
    /// Calls up at once allowed, 1..=10,000,000.
    pub max_concurrent: i64,
    /// The form of its numbers toward its gateways, a [`NumberFormat::name`]
    /// (`e164`, `digits`, `as_is`); `None` (SQL NULL, JSON null) leaves
    /// numbers as they come (migration 0003).
    #[serde(default)]
    pub number_format: Option<String>,
    /// The country code `e164` gives national numbers, 1 to 3 digits.
    #[serde(default)]
    pub country_code: Option<String>,
    /// A prefix removed first when a number starts with it.
    #[serde(default)]
    pub strip_prefix: Option<String>,
    /// The codecs of the SBC's own offer to its `livekit` gateways for a
    /// delayed offer, encoding names separated by commas in order of
    /// preference (`PCMA,PCMU,telephone-event`); `None` (SQL NULL, JSON
    /// null): `[routing] offer_codecs` (migration 0004).
    #[serde(default)]
    pub offer_codecs: Option<String>,
}

impl TenantRow {
    /// The number rules its three columns describe (`None`: numbers pass
    /// as they come), or the stored value the snapshot cannot use.
    fn number_rules(&self) -> Result<Option<NumberRules>, DbError> {
        let format = match &self.number_format {
            None => None,
            Some(name) => Some(
                NumberFormat::parse(name)
                    .ok_or_else(|| DbError::Corrupt(format!("tenant number_format {name:?}")))?,
            ),
        };
        let (cc, strip) = (self.country_code.as_deref(), self.strip_prefix.as_deref());
        NumberRules::from_settings(format, cc, strip).map_err(|e| {
            let value = if e.field() == "country_code" {
                cc
            } else {
                strip
            };
            DbError::Corrupt(format!(
                "tenant {} {:?}: {}",
                e.field(),
                value.unwrap_or_default(),
                e.message()
            ))
        })
    }
}

const CARRIERS: &str = "SELECT id, ip, mask, name, grp FROM carriers ORDER BY id";
const GATEWAYS: &str =
    "SELECT id, destination, grp, priority, weight, description, profile, auth_username, auth_password, auth_realm, headers, media_encryption FROM gateways ORDER BY id";
const TENANTS: &str = "SELECT tenant_id, source_ip, gateway_group, max_cps, max_concurrent, \
                       number_format, country_code, strip_prefix, offer_codecs FROM tenants \
                       ORDER BY tenant_id";

/// The change version row (`migrations/*/0008`).
const CHANGE_VERSION: &str = "SELECT version FROM provisioning_version WHERE id = 1";

/// The provisioning database.
#[derive(Debug)]
pub struct Provisioning {
    pool: AnyPool,
    dialect: Dialect,
    /// The URL as sqlx wants it (PostgreSQL's LISTEN connection opens its own).
    url: String,
    version: AtomicU64,
    /// The database's change version the last snapshot was read with.
    built_from: AtomicI64,
    default_profile: Profile,
}

/// The PostgreSQL channel the provisioning triggers NOTIFY on
/// (`migrations/postgres/0008`).
pub const CHANGE_CHANNEL: &str = "sbc_provisioning";

impl Provisioning {
    /// Connects to, creates if needed (SQLite) and migrates the database at `url`.
    pub async fn open(url: &str) -> Result<Provisioning, DbError> {
        sqlx::any::install_default_drivers();
        let (dialect, url) = Dialect::of(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            // A database that went away answers quickly; the pool reconnects by itself.
            .acquire_timeout(std::time::Duration::from_secs(3))
            .connect(&url)
            .await?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE,
            Dialect::MySql => &MYSQL,
            Dialect::Postgres => &POSTGRES,
        };
        migrator.run(&pool).await?;
        Ok(Provisioning {
            pool,
            dialect,
            url,
            version: AtomicU64::new(0),
            built_from: AtomicI64::new(-1),
            default_profile: Profile::default(),
        })
    }

    /// The profile the snapshot gives a gateway stored without one (`[routing]
    /// default_profile`; [`Profile::default`] unless set here).
    pub fn with_default_profile(self, profile: Profile) -> Provisioning {
        Provisioning {
            default_profile: profile,
            ..self
        }
    }

    /// Closes every connection; later calls fail with [`DbError::Sql`].
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The database we run on.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Is the database answering?
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// The connection pool (the CDR store shares it).
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that writes. On SQLite it takes the write lock at
    /// once (`BEGIN IMMEDIATE`): a deferred one that reads first and then
    /// writes can meet another writer (the CDR batches) in a deadlock that
    /// SQLite answers with "database is locked" at once, without waiting.
    pub(crate) async fn write_tx(&self) -> Result<Transaction<'static, Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            _ => self.pool.begin().await,
        }
    }

    /// `?` placeholders in the dialect's form (`$1`, `$2`... for PostgreSQL).
    pub(crate) fn sql(&self, q: &str) -> String {
        if self.dialect != Dialect::Postgres {
            return q.to_string();
        }
        let mut out = String::with_capacity(q.len() + 8);
        let mut n = 0;
        for c in q.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// An INSERT statement that can tell the new row's id.
    fn insert_sql(&self, q: &str) -> String {
        match self.dialect {
            Dialect::MySql => q.to_string(),
            _ => format!("{} RETURNING id", self.sql(q)),
        }
    }

    /// Runs an INSERT from [`Self::insert_sql`] in `tx`; the new row's id.
    async fn insert<'q>(
        &self,
        tx: &mut Transaction<'_, Any>,
        q: Query<'q, Any, AnyArguments<'q>>,
    ) -> Result<i64, DbError> {
        // SQLite and PostgreSQL answer `RETURNING id`; MySQL/MariaDB reports
        // the id with the result (MySQL 8 has no RETURNING).
        if self.dialect != Dialect::MySql {
            return Ok(q.fetch_one(&mut **tx).await?.try_get::<i64, _>(0)?);
        }
        q.execute(&mut **tx)
            .await?
            .last_insert_id()
            .ok_or_else(|| DbError::Corrupt("no id for the new row".into()))
    }

    /// Every carrier, by id.
    pub async fn carriers(&self) -> Result<Vec<CarrierRow>, DbError> {
        Ok(sqlx::query_as(CARRIERS).fetch_all(&self.pool).await?)
    }

    /// Stores a new carrier (its `id` is ignored); the row with its new id.
    pub async fn add_carrier(&self, c: &CarrierRow) -> Result<CarrierRow, DbError> {
        let mut tx = self.write_tx().await?;
        let sql = self.insert_sql("INSERT INTO carriers (ip, mask, name, grp) VALUES (?, ?, ?, ?)");
        let q = sqlx::query(&sql)
            .bind(&c.ip)
            .bind(c.mask)
            .bind(&c.name)
            .bind(c.group);
        let id = self.insert(&mut tx, q).await?;
        tx.commit().await?;
        Ok(CarrierRow { id, ..c.clone() })
    }

    /// Every gateway, by id.
    pub async fn gateways(&self) -> Result<Vec<GatewayRow>, DbError> {
        let mut rows: Vec<GatewayRow> = sqlx::query_as(GATEWAYS).fetch_all(&self.pool).await?;
        for r in &mut rows {
            r.auth_password_set = r.auth_password.is_some();
            r.transport = transport_of(&r.destination);
        }
        Ok(rows)
    }

    /// Stores a new gateway (its `id` is ignored); the row with its new id.
    pub async fn add_gateway(&self, g: &GatewayRow) -> Result<GatewayRow, DbError> {
        let mut tx = self.write_tx().await?;
        let sql = self.insert_sql(
            "INSERT INTO gateways (destination, grp, priority, weight, description, profile, auth_username, auth_password, auth_realm, headers, media_encryption) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        );
        let q = sqlx::query(&sql)
            .bind(&g.destination)
            .bind(g.group)
            .bind(g.priority)
            .bind(g.weight)
            .bind(&g.description)
            .bind(g.profile.clone())
            .bind(g.auth_username.clone())
            .bind(g.auth_password.clone())
            .bind(g.auth_realm.clone())
            .bind(g.headers.to_column())
            .bind(&g.media_encryption);
        let id = self.insert(&mut tx, q).await?;
        tx.commit().await?;
        Ok(GatewayRow {
            id,
            transport: transport_of(&g.destination),
            ..g.clone()
        })
    }

    /// Every tenant, by tenant id.
    pub async fn tenants(&self) -> Result<Vec<TenantRow>, DbError> {
        Ok(sqlx::query_as(TENANTS).fetch_all(&self.pool).await?)
    }

    /// Adds or updates a tenant; `true` when it was created.
    pub async fn upsert_tenant(&self, t: &TenantRow) -> Result<bool, DbError> {
        let mut tx = self.write_tx().await?;
        let exists = sqlx::query(&self.sql("SELECT tenant_id FROM tenants WHERE tenant_id = ?"))
            .bind(&t.tenant_id)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        let sql = if exists {
            "UPDATE tenants SET source_ip = ?, gateway_group = ?, max_cps = ?, max_concurrent = ?, \
             number_format = ?, country_code = ?, strip_prefix = ?, offer_codecs = ? \
             WHERE tenant_id = ?"
        } else {
            "INSERT INTO tenants (source_ip, gateway_group, max_cps, max_concurrent, \
             number_format, country_code, strip_prefix, offer_codecs, tenant_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        };
        sqlx::query(&self.sql(sql))
            .bind(&t.source_ip)
            .bind(t.gateway_group)
            .bind(t.max_cps)
            .bind(t.max_concurrent)
            .bind(t.number_format.clone())
            .bind(t.country_code.clone())
            .bind(t.strip_prefix.clone())
            .bind(t.offer_codecs.clone())
            .bind(&t.tenant_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(!exists)
    }

    /// Deletes a row of `table` by its key; `false` when there was none.
    pub async fn delete(&self, table: Table, key: &str) -> Result<bool, DbError> {
        let mut tx = self.write_tx().await?;
        let done = match table {
            Table::Carriers | Table::Gateways => {
                let id: i64 = key
                    .parse()
                    .map_err(|_| DbError::Corrupt(format!("id {key:?}")))?;
                let sql = match table {
                    Table::Carriers => "DELETE FROM carriers WHERE id = ?",
                    _ => "DELETE FROM gateways WHERE id = ?",
                };
                sqlx::query(&self.sql(sql))
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
            }
            Table::Tenants => {
                sqlx::query(&self.sql("DELETE FROM tenants WHERE tenant_id = ?"))
                    .bind(key)
                    .execute(&mut *tx)
                    .await?
            }
        };
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// A new snapshot version, for a snapshot changed without the database
    /// (new DNS answers).
    pub fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The database's change version: a counter every write to the
    /// provisioned tables bumps by trigger, whoever writes (another SBC
    /// node, another tool, SQL by hand; `migrations/*/0008`).
    ///
    /// # Errors
    /// [`DbError::Sql`] when the database cannot be reached.
    pub async fn change_version(&self) -> Result<i64, DbError> {
        let row = sqlx::query(CHANGE_VERSION).fetch_one(&self.pool).await?;
        Ok(row.try_get::<i64, _>(0)?)
    }

    /// The change version the last [`Provisioning::snapshot`] was read with
    /// (-1 before the first): when [`Provisioning::change_version`] differs,
    /// the database changed since.
    pub fn built_from(&self) -> i64 {
        self.built_from.load(Ordering::Relaxed)
    }

    /// On PostgreSQL, a connection LISTENing on [`CHANGE_CHANNEL`], which
    /// the provisioning triggers NOTIFY on every write; `None` on the other
    /// databases, which are polled ([`Provisioning::change_version`]).
    ///
    /// # Errors
    /// [`DbError::Sql`] when the connection or the LISTEN fails.
    pub async fn change_listener(&self) -> Result<Option<sqlx::postgres::PgListener>, DbError> {
        if self.dialect != Dialect::Postgres {
            return Ok(None);
        }
        let mut l = sqlx::postgres::PgListener::connect(&self.url).await?;
        l.listen(CHANGE_CHANNEL).await?;
        Ok(Some(l))
    }

    /// Reads every table into a new immutable snapshot with the next version.
    ///
    /// The three tables are read in one read-only transaction that sees one
    /// state of the database, so a snapshot never mixes the states before
    /// and after a concurrent write: SQLite's read transaction holds its view
    /// from the first SELECT to COMMIT, and PostgreSQL and MySQL/MariaDB are
    /// asked for REPEATABLE READ (their default READ COMMITTED, resp. a server
    /// configured so, would give each SELECT its own view).
    pub async fn snapshot(&self) -> Result<RouteSnapshot, DbError> {
        let mut conn = self.pool.acquire().await?;
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN",
            Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            Dialect::MySql => {
                // Applies to the next transaction only; START TRANSACTION cannot say it.
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                    .await?;
                "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
            }
        };
        let mut tx = conn.begin_with(begin).await?;
        let carriers: Vec<CarrierRow> = sqlx::query_as(CARRIERS).fetch_all(&mut *tx).await?;
        let gateways: Vec<GatewayRow> = sqlx::query_as(GATEWAYS).fetch_all(&mut *tx).await?;
        let tenants: Vec<TenantRow> = sqlx::query_as(TENANTS).fetch_all(&mut *tx).await?;
        // In the same view: the change version these rows are.
        let changed: i64 = sqlx::query(CHANGE_VERSION)
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        tx.commit().await?;
        let corrupt = |what: &str, v: &str| DbError::Corrupt(format!("{what} {v:?}"));
        let carriers = carriers
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
        let gateways = gateways
            .into_iter()
            .map(|g| {
                // A host name gets its addresses from DNS (`Dns::fill`).
                let (dest, transport) = routing::parse_destination(&g.destination)
                    .map_err(|_| corrupt("gateway destination", &g.destination))?;
                let targets = match dest {
                    routing::Destination::Literal(a) => vec![routing::Resolved::at(a)],
                    routing::Destination::Name { .. } => Vec::new(),
                };
                Ok(Gateway {
                    id: g.id,
                    targets,
                    destination: g.destination,
                    group: u32::try_from(g.group).unwrap_or(0),
                    priority: i32::try_from(g.priority).unwrap_or(0),
                    weight: u32::try_from(g.weight).unwrap_or(0),
                    description: g.description,
                    profile: match &g.profile {
                        None => self.default_profile,
                        Some(name) => {
                            Profile::parse(name).ok_or_else(|| corrupt("gateway profile", name))?
                        }
                    },
                    auth: match (g.auth_username, g.auth_password) {
                        (Some(username), Some(password)) => Some(Arc::new(Credentials {
                            username,
                            password,
                            realm: g.auth_realm,
                        })),
                        _ => None,
                    },
                    headers: Arc::from(g.headers.lines()),
                    transport,
                    media_encryption: MediaEncryption::parse(&g.media_encryption)
                        .ok_or_else(|| corrupt("gateway media_encryption", &g.media_encryption))?,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let tenants = tenants
            .into_iter()
            .map(|t| {
                Ok(Tenant {
                    numbers: t.number_rules()?,
                    offer_codecs: t
                        .offer_codecs
                        .as_deref()
                        .map(|list| {
                            parse_codecs(list).map_err(|e| {
                                DbError::Corrupt(format!("tenant offer_codecs {list:?}: {e}"))
                            })
                        })
                        .transpose()?,
                    source_ip: Ipv4Addr::from_str(&t.source_ip)
                        .map_err(|_| corrupt("tenant source_ip", &t.source_ip))?,
                    tenant_id: t.tenant_id,
                    gateway_group: u32::try_from(t.gateway_group).unwrap_or(0),
                    max_cps: u32::try_from(t.max_cps).unwrap_or(0),
                    max_concurrent: u32::try_from(t.max_concurrent).unwrap_or(0),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        let version = self.next_version();
        self.built_from.store(changed, Ordering::Relaxed);
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
    /// `carriers`, keyed by integer id.
    Carriers,
    /// `gateways`, keyed by integer id.
    Gateways,
    /// `tenants`, keyed by tenant id.
    Tenants,
}
