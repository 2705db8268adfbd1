-- Provisioning tables: the carrier allowlist, dispatcher gateways and tenants.
-- Columns follow the REST contract; `grp` holds the JSON field `group`
-- (a reserved word in SQL).
CREATE TABLE carriers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ip VARCHAR(15) NOT NULL,
    mask INTEGER NOT NULL,
    name VARCHAR(128) NOT NULL,
    grp INTEGER NOT NULL
);

CREATE TABLE gateways (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination VARCHAR(255) NOT NULL,
    grp INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    description VARCHAR(255) NOT NULL
);

CREATE TABLE tenants (
    tenant_id VARCHAR(64) PRIMARY KEY,
    source_ip VARCHAR(15) NOT NULL,
    gateway_group INTEGER NOT NULL,
    max_cps INTEGER NOT NULL,
    max_concurrent INTEGER NOT NULL
);
