-- The workflow run log: one row per saga run, one per step, and the ordered event trail.
-- A run belongs to the job that runs it and disappears with it (the pruner deletes jobs).
-- Times are REAL unix seconds (UTC); JSON columns are TEXT holding JSON.
CREATE TABLE jobsaga_workflow_runs (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow     TEXT NOT NULL,
    job_id       INTEGER REFERENCES jobsaga_jobs(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN (
                     'running', 'rolling_back', 'succeeded', 'failed',
                     'rolled_back', 'rollback_failed')),
    inputs       TEXT NOT NULL DEFAULT '{}',
    context      TEXT,
    result       TEXT,
    error        TEXT,
    started_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    finished_at  REAL
);

CREATE INDEX jobsaga_workflow_runs_status_idx ON jobsaga_workflow_runs (status, id);
CREATE INDEX jobsaga_workflow_runs_workflow_idx ON jobsaga_workflow_runs (workflow, id);
CREATE INDEX jobsaga_workflow_runs_job_idx ON jobsaga_workflow_runs (job_id);

CREATE TABLE jobsaga_workflow_steps (
    run_id         INTEGER NOT NULL REFERENCES jobsaga_workflow_runs(id) ON DELETE CASCADE,
    step           TEXT NOT NULL,
    position       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN (
                       'pending', 'running', 'retried', 'succeeded', 'failed',
                       'compensated', 'skipped', 'undone', 'undo_failed')),
    result         TEXT,
    error          TEXT,
    tries          INTEGER NOT NULL DEFAULT 0,
    undo_tries     INTEGER NOT NULL DEFAULT 0,
    completed_seq  INTEGER,
    enqueue        TEXT,
    started_at     REAL,
    finished_at    REAL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;

CREATE TABLE jobsaga_workflow_events (
    run_id   INTEGER NOT NULL REFERENCES jobsaga_workflow_runs(id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    at       REAL NOT NULL,
    attempt  INTEGER NOT NULL,
    step     TEXT,
    kind     TEXT NOT NULL,
    detail   TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
