-- The provisioning change version: one row that every write to carriers,
-- gateways or tenants bumps (by trigger, so writes from any SBC node or any
-- other tool count). Each node reads it once a second and rebuilds its
-- routing snapshot when it differs from the one its snapshot was built from.
CREATE TABLE provisioning_version (
    id INTEGER PRIMARY KEY,
    version INTEGER NOT NULL
);
INSERT INTO provisioning_version (id, version) VALUES (1, 0);
CREATE TRIGGER carriers_ins AFTER INSERT ON carriers BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER carriers_upd AFTER UPDATE ON carriers BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER carriers_del AFTER DELETE ON carriers BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER gateways_ins AFTER INSERT ON gateways BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER gateways_upd AFTER UPDATE ON gateways BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER gateways_del AFTER DELETE ON gateways BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_ins AFTER INSERT ON tenants BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_upd AFTER UPDATE ON tenants BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER tenants_del AFTER DELETE ON tenants BEGIN UPDATE provisioning_version SET version = version + 1 WHERE id = 1; END;
