-- Call detail records: one row per call (a dialog the SBC created), written
-- in batches by the control plane from the engine's call records. Times are
-- UTC milliseconds since the Unix epoch; media figures are per direction,
-- summed over the call's media lines (jitter: the largest). Rows older than
-- [cdr] keep_days are deleted.
CREATE TABLE cdrs (
    id BIGSERIAL PRIMARY KEY,
    caller_call_id VARCHAR(255) NOT NULL,
    callee_call_id VARCHAR(255) NOT NULL,
    tenant_id VARCHAR(64),
    direction VARCHAR(8) NOT NULL,
    caller_addr VARCHAR(64) NOT NULL,
    callee_addr VARCHAR(64) NOT NULL,
    start_ms BIGINT NOT NULL,
    answer_ms BIGINT,
    end_ms BIGINT NOT NULL,
    result VARCHAR(16) NOT NULL,
    final_code BIGINT NOT NULL,
    reason VARCHAR(64) NOT NULL,
    ended_by VARCHAR(8),
    attempts BIGINT NOT NULL,
    caller_packets BIGINT NOT NULL,
    caller_bytes BIGINT NOT NULL,
    caller_lost BIGINT NOT NULL,
    caller_jitter_ms DOUBLE PRECISION NOT NULL,
    callee_packets BIGINT NOT NULL,
    callee_bytes BIGINT NOT NULL,
    callee_lost BIGINT NOT NULL,
    callee_jitter_ms DOUBLE PRECISION NOT NULL
);
CREATE INDEX cdrs_start ON cdrs (start_ms);
CREATE INDEX cdrs_tenant_start ON cdrs (tenant_id, start_ms);
