-- The provisioning change version (mysql dialect of migrations/sqlite/0008):
-- one row every write to carriers, gateways or tenants bumps by trigger;
-- each SBC node polls it once a second. With binary logging on, creating
-- triggers needs SUPER or log_bin_trust_function_creators = 1.
CREATE TABLE provisioning_version (
    id INT PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO provisioning_version (id, version) VALUES (1, 0);
CREATE TRIGGER carriers_ins AFTER INSERT ON carriers FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER carriers_upd AFTER UPDATE ON carriers FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER carriers_del AFTER DELETE ON carriers FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER gateways_ins AFTER INSERT ON gateways FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER gateways_upd AFTER UPDATE ON gateways FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER gateways_del AFTER DELETE ON gateways FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER tenants_ins AFTER INSERT ON tenants FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER tenants_upd AFTER UPDATE ON tenants FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
CREATE TRIGGER tenants_del AFTER DELETE ON tenants FOR EACH ROW UPDATE provisioning_version SET version = version + 1 WHERE id = 1;
