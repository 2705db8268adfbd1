-- The SBC node that carried each call (its [cluster] node_id), so that
-- several nodes writing to one database can be told apart and summed
-- (GET /api/v1/stats/calls?cluster=true). Rows from before: ''.
ALTER TABLE cdrs ADD COLUMN node_id VARCHAR(64) NOT NULL DEFAULT '';
