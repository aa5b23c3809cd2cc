-- Queue control across nodes. SQLite has no NOTIFY, so the desired state of each queue is
-- persisted here and nodes poll it cheaply (a read, no write lock); a node that starts picks
-- it up before it fetches. node = '' means every node; a row for one node overrides it.
-- NULL in paused/concurrency means "no override" (the node's own configuration applies).
CREATE TABLE jobsaga_queue_controls (
    queue        TEXT NOT NULL,
    node         TEXT NOT NULL DEFAULT '',
    paused       INTEGER CHECK (paused IS NULL OR paused IN (0, 1)),
    concurrency  INTEGER CHECK (concurrency IS NULL OR concurrency >= 1),
    updated_at   REAL NOT NULL,
    PRIMARY KEY (queue, node)
);

-- What each live node runs: one row per node and queue, written by the node when it starts,
-- when a control changes it, and every few seconds (expires_at tells readers it is alive).
CREATE TABLE jobsaga_queue_nodes (
    node         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    concurrency  INTEGER NOT NULL,
    paused       INTEGER NOT NULL,
    started_at   REAL NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (node, queue)
);

