-- Call detail records: one row per call (a dialog the SBC created), written
-- in batches by the control plane from the engine's call records. Times are
-- UTC milliseconds since the Unix epoch; media figures are per direction,
-- summed over the call's media lines (jitter: the largest). Rows older than
-- [cdr] keep_days are deleted.
CREATE TABLE cdrs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    caller_call_id VARCHAR(255) NOT NULL,
    callee_call_id VARCHAR(255) NOT NULL,
    tenant_id VARCHAR(64),
    direction VARCHAR(8) NOT NULL,
    caller_addr VARCHAR(64) NOT NULL,
    callee_addr VARCHAR(64) NOT NULL,
    start_ms INTEGER NOT NULL,
    answer_ms INTEGER,
    end_ms INTEGER NOT NULL,
    result VARCHAR(16) NOT NULL,
    final_code INTEGER NOT NULL,
    reason VARCHAR(64) NOT NULL,
    ended_by VARCHAR(8),
    attempts INTEGER NOT NULL,
    caller_packets INTEGER NOT NULL,
    caller_bytes INTEGER NOT NULL,
    caller_lost INTEGER NOT NULL,
    caller_jitter_ms REAL NOT NULL,
    callee_packets INTEGER NOT NULL,
    callee_bytes INTEGER NOT NULL,
    callee_lost INTEGER NOT NULL,
    callee_jitter_ms REAL NOT NULL
);
CREATE INDEX cdrs_start ON cdrs (start_ms);
CREATE INDEX cdrs_tenant_start ON cdrs (tenant_id, start_ms);
