-- Follow-up jobs name the saga run that enqueued them (meta.enqueued_by_run), and
-- `jobsaga runs show` lists them by it. Partial: only follow-up jobs are in it, so the jobs
-- table's other rows cost it nothing, and the lookup does not scan a table of a million jobs.
-- The key is indexed as text, not cast to bigint: a cast in an index expression runs on every
-- write, and a job whose meta holds a non-number there would fail to insert.
CREATE INDEX jobsaga_jobs_enqueued_by_run_idx
    ON jobsaga_jobs ((meta ->> 'enqueued_by_run'))
    WHERE meta ? 'enqueued_by_run';
