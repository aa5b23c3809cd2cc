-- Saga composition: a run may be a child run, another workflow run as one step of a parent
-- run (compose) or one iteration of a workflow run repeatedly (recurse). Each child is a run
-- of its own (its steps, events, status), carrying its parent's job_id, so deleting the job
-- deletes it with the parent; it names the parent run (parent_run_id, NULL when the parent's
-- log was kept in memory), the parent's step that ran it (parent_step: NULL exactly for a
-- job's own, top-level runs) and its iteration (0 for compose; 0, 1, 2... for recurse).
-- A run may also be halted (a step asked the run to stop until its job's next attempt, which
-- takes it up as it takes up a running one).
--
-- SQLite cannot change a CHECK constraint: the table is rebuilt, in the migration's one
-- transaction. The old table is renamed aside (its indexes go with it: dropped first, so the
-- new ones take their names), the new one made under the real name, the rows copied with
-- their ids, the id counter carried over (an id is never handed out twice), the old table
-- dropped, and the indexes and the cascade trigger made again. The trigger is dropped first:
-- nothing may delete the steps and events of the runs being moved.
--
-- parent_run_id is a foreign key to the run itself, ON DELETE CASCADE: deleting a run
-- deletes its children, and theirs (a trigger cannot: SQLite does not fire a trigger from
-- itself). A top-level run (NULL) costs it no check; updates never touch it.
DROP TRIGGER jobsaga_workflow_runs_cascade;
DROP INDEX jobsaga_workflow_runs_status_idx;
DROP INDEX jobsaga_workflow_runs_workflow_idx;
DROP INDEX jobsaga_workflow_runs_job_idx;
ALTER TABLE jobsaga_workflow_runs RENAME TO jobsaga_workflow_runs_0007;

CREATE TABLE jobsaga_workflow_runs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow       TEXT NOT NULL,
    job_id         INTEGER REFERENCES jobsaga_jobs(id) ON DELETE CASCADE,
    attempt        INTEGER NOT NULL DEFAULT 0,
    status         TEXT NOT NULL CHECK (status IN (
                       'running', 'rolling_back', 'halted', 'succeeded', 'failed',
                       'rolled_back', 'rollback_failed')),
    inputs         TEXT NOT NULL DEFAULT '{}',
    context        TEXT,
    dag            TEXT,
    result         TEXT,
    error          TEXT,
    started_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    finished_at    REAL,
    parent_run_id  INTEGER REFERENCES jobsaga_workflow_runs(id) ON DELETE CASCADE,
    parent_step    TEXT,
    iteration      INTEGER NOT NULL DEFAULT 0
);

INSERT INTO jobsaga_workflow_runs (id, workflow, job_id, attempt, status, inputs, context, dag,
                                   result, error, started_at, updated_at, finished_at)
SELECT id, workflow, job_id, attempt, status, inputs, context, dag, result, error,
       started_at, updated_at, finished_at
FROM jobsaga_workflow_runs_0007
ORDER BY id;

-- The copy set the counter to the highest id copied; the old one may be higher (runs deleted).
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobsaga_workflow_runs', 0
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobsaga_workflow_runs');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce(
    (SELECT seq FROM sqlite_sequence WHERE name = 'jobsaga_workflow_runs_0007'), 0))
WHERE name = 'jobsaga_workflow_runs';

DROP TABLE jobsaga_workflow_runs_0007;

CREATE INDEX jobsaga_workflow_runs_status_idx ON jobsaga_workflow_runs (status, id);
CREATE INDEX jobsaga_workflow_runs_workflow_idx ON jobsaga_workflow_runs (workflow, id);
CREATE INDEX jobsaga_workflow_runs_job_idx ON jobsaga_workflow_runs (job_id);
-- A run's children, in step and iteration order (and what the cascade looks children up by);
-- partial: top-level runs are not in it.
CREATE INDEX jobsaga_workflow_runs_parent_idx
    ON jobsaga_workflow_runs (parent_run_id, parent_step, iteration)
    WHERE parent_run_id IS NOT NULL;

CREATE TRIGGER jobsaga_workflow_runs_cascade
    AFTER DELETE ON jobsaga_workflow_runs
    FOR EACH ROW
BEGIN
    DELETE FROM jobsaga_workflow_steps WHERE run_id = OLD.id;
    DELETE FROM jobsaga_workflow_events WHERE run_id = OLD.id;
END;
