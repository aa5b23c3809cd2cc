-- The workflow run log: one row per saga run, one per step, and the ordered event trail.
-- A run belongs to the job that runs it and disappears with it (the pruner deletes jobs).
CREATE TABLE jobsaga_workflow_runs (
    id           BIGSERIAL PRIMARY KEY,
    workflow     TEXT NOT NULL,
    job_id       BIGINT REFERENCES jobsaga_jobs(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL DEFAULT 0,
    status       TEXT NOT NULL CHECK (status IN (
                     'running', 'rolling_back', 'succeeded', 'failed',
                     'rolled_back', 'rollback_failed')),
    inputs       JSONB NOT NULL DEFAULT '{}',
    context      JSONB,
    result       JSONB,
    error        JSONB,
    started_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    finished_at  TIMESTAMPTZ
);

CREATE INDEX jobsaga_workflow_runs_status_idx ON jobsaga_workflow_runs (status, id);
CREATE INDEX jobsaga_workflow_runs_workflow_idx ON jobsaga_workflow_runs (workflow, id);
CREATE INDEX jobsaga_workflow_runs_job_idx ON jobsaga_workflow_runs (job_id);

CREATE TABLE jobsaga_workflow_steps (
    run_id         BIGINT NOT NULL REFERENCES jobsaga_workflow_runs(id) ON DELETE CASCADE,
    step           TEXT NOT NULL,
    position       INTEGER NOT NULL,
    status         TEXT NOT NULL CHECK (status IN (
                       'pending', 'running', 'retried', 'succeeded', 'failed',
                       'compensated', 'skipped', 'undone', 'undo_failed')),
    result         JSONB,
    error          JSONB,
    tries          INTEGER NOT NULL DEFAULT 0,
    undo_tries     INTEGER NOT NULL DEFAULT 0,
    completed_seq  INTEGER,
    enqueue        JSONB,
    started_at     TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    PRIMARY KEY (run_id, step)
);

CREATE TABLE jobsaga_workflow_events (
    run_id   BIGINT NOT NULL REFERENCES jobsaga_workflow_runs(id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    at       TIMESTAMPTZ NOT NULL,
    attempt  INTEGER NOT NULL,
    step     TEXT,
    kind     TEXT NOT NULL,
    detail   JSONB,
    PRIMARY KEY (run_id, seq)
);
