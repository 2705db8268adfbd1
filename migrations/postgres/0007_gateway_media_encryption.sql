-- SRTP toward the gateway (RFC 3711, SDES keys per RFC 4568, only over TLS),
-- by LiveKit's names: disable, allow (best effort), require. (postgres dialect of migrations/sqlite/0007.)
ALTER TABLE gateways ADD COLUMN media_encryption VARCHAR(16) NOT NULL DEFAULT 'disable';
