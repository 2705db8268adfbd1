-- The codecs of the offer the SBC makes a tenant's livekit gateways when a
-- carrier's INVITE has none (a delayed offer): encoding names separated by
-- commas, in order of preference (`PCMA,PCMU,telephone-event`). NULL: the
-- configured default (`[routing] offer_codecs`). No CHECK, as for 0002: the
-- routing snapshot refuses a value it cannot use.
ALTER TABLE tenants ADD COLUMN offer_codecs VARCHAR(128);
