-- A tenant's number rules: the form of its numbers toward its gateways
-- (`number_format`: `e164`, `digits`, `as_is`), the country code `e164` gives
-- national numbers, and a prefix stripped first. NULL format: numbers pass as
-- they come (and the other two are NULL). No CHECK, as for 0002: the routing
-- snapshot refuses a value it cannot use, as it refuses any other invalid
-- stored value.
ALTER TABLE tenants ADD COLUMN number_format VARCHAR(16);
ALTER TABLE tenants ADD COLUMN country_code VARCHAR(16);
ALTER TABLE tenants ADD COLUMN strip_prefix VARCHAR(16);
