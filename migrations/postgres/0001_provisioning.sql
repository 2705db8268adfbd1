-- Provisioning tables (PostgreSQL dialect of migrations/sqlite/0001).
CREATE TABLE carriers (
    id BIGSERIAL PRIMARY KEY,
    ip VARCHAR(15) NOT NULL,
    mask BIGINT NOT NULL,
    name VARCHAR(128) NOT NULL,
    grp BIGINT NOT NULL
);

CREATE TABLE gateways (
    id BIGSERIAL PRIMARY KEY,
    destination VARCHAR(255) NOT NULL,
    grp BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    weight BIGINT NOT NULL,
    description VARCHAR(255) NOT NULL
);

CREATE TABLE tenants (
    tenant_id VARCHAR(64) PRIMARY KEY,
    source_ip VARCHAR(15) NOT NULL,
    gateway_group BIGINT NOT NULL,
    max_cps BIGINT NOT NULL,
    max_concurrent BIGINT NOT NULL
);
