-- Digest credentials the SBC answers a gateway's 401/407 with (RFC 3261 22;
-- the API writes the password and never returns it). NULL username: the
-- gateway's challenges go back to the caller as before.
ALTER TABLE gateways ADD COLUMN auth_username VARCHAR(128);
ALTER TABLE gateways ADD COLUMN auth_password VARCHAR(128);
ALTER TABLE gateways ADD COLUMN auth_realm VARCHAR(128);
