-- A gateway's profile (PostgreSQL dialect of migrations/sqlite/0002).
ALTER TABLE gateways ADD COLUMN profile VARCHAR(16);
