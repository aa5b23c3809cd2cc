-- Saga composition: a run may be a child run, another workflow run as one step of a parent
-- run (compose) or one iteration of a workflow run repeatedly (recurse). Each child is a run
-- of its own (its steps, events, status), carrying its parent's job_id, so deleting the job
-- deletes it with the parent; it names the parent run (parent_run_id, NULL when the parent's
-- log was kept in memory), the parent's step that ran it (parent_step: NULL exactly for a
-- job's own, top-level runs) and its iteration (0 for compose; 0, 1, 2... for recurse).
-- No foreign key on parent_run_id: a parent's row is created by its first write, which a
-- child's first write may not follow (and a key would be checked on every run written); the
-- cascade trigger deletes a run's children instead, as it deletes its steps and events.
--
-- A run may also be halted (a step asked the run to stop until its job's next attempt, which
-- takes it up as it takes up a running one). Existing rows all satisfy the wider check.
ALTER TABLE jobsaga_workflow_runs
    ADD COLUMN parent_run_id BIGINT,
    ADD COLUMN parent_step TEXT,
    ADD COLUMN iteration INTEGER NOT NULL DEFAULT 0,
    DROP CONSTRAINT jobsaga_workflow_runs_status_check,
    ADD CONSTRAINT jobsaga_workflow_runs_status_check CHECK (status IN (
        'running', 'rolling_back', 'halted', 'succeeded', 'failed',
        'rolled_back', 'rollback_failed'));

-- A run's children, in step and iteration order; partial: top-level runs are not in it.
CREATE INDEX jobsaga_workflow_runs_parent_idx
    ON jobsaga_workflow_runs (parent_run_id, parent_step, iteration)
    WHERE parent_run_id IS NOT NULL;

-- Deleting a run deletes its children (and theirs: the trigger fires for each of them).
CREATE OR REPLACE FUNCTION jobsaga_workflow_run_deleted() RETURNS trigger AS $$
BEGIN
    DELETE FROM jobsaga_workflow_steps WHERE run_id = OLD.id;
    DELETE FROM jobsaga_workflow_events WHERE run_id = OLD.id;
    DELETE FROM jobsaga_workflow_runs WHERE parent_run_id = OLD.id;
    RETURN OLD;
END;
$$ LANGUAGE plpgsql;
