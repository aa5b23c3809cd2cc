-- Queue control across nodes. Nodes hear changes by NOTIFY and also poll this small table as
-- a safety net; a node that starts picks it up before it fetches. node = '' means every
-- node; a row for one node overrides it. NULL in paused/concurrency means "no override".
CREATE TABLE jobsaga_queue_controls (
    queue        TEXT NOT NULL,
    node         TEXT NOT NULL DEFAULT '',
    paused       BOOLEAN,
    concurrency  INTEGER CHECK (concurrency IS NULL OR concurrency >= 1),
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (queue, node)
);

-- What each live node runs: one row per node and queue, written by the node when it starts,
-- when a control changes it, and every few seconds (expires_at tells readers it is alive).
CREATE TABLE jobsaga_queue_nodes (
    node         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    concurrency  INTEGER NOT NULL,
    paused       BOOLEAN NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (node, queue)
);

