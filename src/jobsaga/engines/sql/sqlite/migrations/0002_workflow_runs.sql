-- The workflow run log: one row per saga run, one per step, and the ordered event trail.
-- A run belongs to the job that runs it and disappears with it (the pruner deletes jobs);
-- its steps and events go with the run. That second cascade is a trigger rather than
-- foreign keys: a foreign key is checked on every insert, and a run writes a few rows per
-- step (checking them doubled the cost of writing the log), while only our own code ever
-- inserts them, always for a run it has just created.
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
    dag          TEXT,
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
    run_id         INTEGER NOT NULL,
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
    run_id   INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    at       REAL NOT NULL,
    attempt  INTEGER NOT NULL,
    step     TEXT,
    kind     TEXT NOT NULL,
    detail   TEXT,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER jobsaga_workflow_runs_cascade
    AFTER DELETE ON jobsaga_workflow_runs
    FOR EACH ROW
BEGIN
    DELETE FROM jobsaga_workflow_steps WHERE run_id = OLD.id;
    DELETE FROM jobsaga_workflow_events WHERE run_id = OLD.id;
END;
