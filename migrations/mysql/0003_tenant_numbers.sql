-- A tenant's number rules (MySQL / MariaDB dialect of migrations/sqlite/0003).
ALTER TABLE tenants ADD COLUMN number_format VARCHAR(16) NULL;
ALTER TABLE tenants ADD COLUMN country_code VARCHAR(16) NULL;
ALTER TABLE tenants ADD COLUMN strip_prefix VARCHAR(16) NULL;
