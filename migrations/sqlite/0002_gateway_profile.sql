-- A gateway's profile: how the SBC speaks to it (`transparent`, `livekit`).
-- NULL means the configured `[routing] default_profile`; no CHECK, so a new
-- profile needs no migration: the routing snapshot refuses a name it does not
-- know, as it refuses any other invalid stored value.
ALTER TABLE gateways ADD COLUMN profile VARCHAR(16);
