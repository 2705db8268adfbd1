-- Digest credentials the SBC answers a gateway's 401/407 with (RFC 3261 22;
-- the API writes the password and never returns it). NULL username: the
-- gateway's challenges go back to the caller as before.
ALTER TABLE gateways ADD COLUMN auth_username VARCHAR(128);
ALTER TABLE gateways ADD COLUMN auth_password VARCHAR(128);
ALTER TABLE gateways ADD COLUMN auth_realm VARCHAR(128);
-- Header lines added to every initial INVITE toward the gateway (a LiveKit trunk's
-- `headers`): a JSON object of X- names to values; NULL: none.
ALTER TABLE gateways ADD COLUMN headers VARCHAR(6000);
