-- A gateway's profile (MySQL / MariaDB dialect of migrations/sqlite/0002).
ALTER TABLE gateways ADD COLUMN profile VARCHAR(16) NULL;
