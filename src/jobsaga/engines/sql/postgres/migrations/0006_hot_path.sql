-- The hot path: the fetch walks jobsaga_jobs_fetch_idx in its order whatever the statistics say,
-- and rows without a unique key skip the unique-key trigger.
--
-- jobsaga_jobs_state_idx (state, queue) answered the fetch's "state = 'available' AND queue = ?"
-- as well as the fetch index does, and is narrower: right after a burst of inserts, while the
-- table's statistics still said it held a few rows, the planner preferred it and then sorted
-- every available row of the queue for each fetch (100,000 rows to disk, ~80 ms a fetch instead
-- of ~2 ms). With it gone, the only index that serves the fetch is the one whose order is the
-- fetch order. What else read it gets a partial index of its own, so a table of a million
-- finished jobs costs those queries nothing either:
-- the lifeline, the reconciler and the node records look up executing jobs by node.
DROP INDEX jobsaga_jobs_state_idx;
CREATE INDEX jobsaga_jobs_executing_idx ON jobsaga_jobs (attempted_by, attempted_at)
    WHERE state = 'executing';

-- The trigger that releases unique keys ran its PL/pgSQL function for every row the fetch
-- claims and every outcome written, although only jobs with a unique key have anything to
-- release. Its WHEN clause now skips the call for the others (SQLite's trigger had one).
DROP TRIGGER jobsaga_jobs_release_unique_key ON jobsaga_jobs;
CREATE TRIGGER jobsaga_jobs_release_unique_key
    BEFORE INSERT OR UPDATE OF state ON jobsaga_jobs
    FOR EACH ROW WHEN (NEW.unique_key IS NOT NULL)
    EXECUTE FUNCTION jobsaga_release_unique_key();
