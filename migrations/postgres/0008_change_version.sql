-- The provisioning change version (postgres dialect of migrations/sqlite/0008):
-- one row every statement writing carriers, gateways or tenants bumps, and a
-- NOTIFY on channel sbc_provisioning so every SBC node LISTENing rebuilds its
-- routing snapshot at once (the once-a-second poll of the row stays, for
-- notifications lost while a node was disconnected).
CREATE TABLE provisioning_version (
    id INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO provisioning_version (id, version) VALUES (1, 0);
CREATE FUNCTION sbc_provisioning_changed() RETURNS trigger AS $$
BEGIN
    UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify('sbc_provisioning', TG_TABLE_NAME);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER carriers_changed AFTER INSERT OR UPDATE OR DELETE ON carriers
    FOR EACH STATEMENT EXECUTE FUNCTION sbc_provisioning_changed();
CREATE TRIGGER gateways_changed AFTER INSERT OR UPDATE OR DELETE ON gateways
    FOR EACH STATEMENT EXECUTE FUNCTION sbc_provisioning_changed();
CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION sbc_provisioning_changed();
