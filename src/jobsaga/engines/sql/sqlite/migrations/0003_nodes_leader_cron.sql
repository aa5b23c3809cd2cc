-- Cluster bookkeeping for the plugins: node heartbeats, the leader lease, cron ticks, and the
-- pruner's index (the lifeline finds executing jobs through jobsaga_jobs_state_idx).
-- Times are REAL unix seconds, JSON is TEXT.

-- One row per running node. A node writes its own deadline (expires_at = heartbeat + its own
-- rescue_after), so the rescuer never needs to know another node's settings.
-- token identifies the process holding the name, so two live processes can never share one.
CREATE TABLE jobsaga_nodes (
    name          TEXT PRIMARY KEY,
    token         TEXT NOT NULL,
    started_at    REAL NOT NULL,
    heartbeat_at  REAL NOT NULL,
    expires_at    REAL NOT NULL,
    meta          TEXT NOT NULL DEFAULT '{}'
);

-- The leader lease: one row per scope, held by one node until expires_at.
-- The lease is renewed by token (the holding process), not by node name.
CREATE TABLE jobsaga_leader (
    scope       TEXT PRIMARY KEY,
    node        TEXT NOT NULL,
    token       TEXT NOT NULL,
    elected_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);

-- One row per cron entry; last_tick_at only moves forward, by a compare-and-set in the
-- transaction that inserts the tick's job, so each tick is inserted once.
CREATE TABLE jobsaga_cron (
    name          TEXT PRIMARY KEY,
    expression    TEXT NOT NULL,
    worker        TEXT NOT NULL,
    detail        TEXT NOT NULL DEFAULT '{}',
    last_tick_at  REAL NOT NULL,
    ticks         INTEGER NOT NULL DEFAULT 0,
    updated_at    REAL NOT NULL
);

-- The pruner deletes finished jobs by the time they finished.
CREATE INDEX jobsaga_jobs_prune_idx ON jobsaga_jobs (coalesce(
    CASE state WHEN 'completed' THEN completed_at
               WHEN 'cancelled' THEN cancelled_at
               ELSE discarded_at END, inserted_at))
    WHERE state IN ('completed', 'cancelled', 'discarded');
