-- Resuming a halted saga run's parked job (workflow/resuming.py).

-- name: lock_job_to_resume
-- The job, read inside the resume's write transaction (BEGIN IMMEDIATE holds the file's
-- write lock): a concurrent resume waits, then finds it no longer parked.
SELECT * FROM jobsaga_jobs WHERE id = :id

-- name: resume_parked_job
-- Only a job still parked on this run is set going (the guard a concurrent resume meets).
UPDATE jobsaga_jobs
SET state = 'available', scheduled_at = :now, args = json(:args),
    meta = json_patch(json_remove(meta, '$.halted_run'), json(:meta))
WHERE id = :id AND state = 'scheduled'
  AND json_extract(meta, '$.halted_run') = :run_id
RETURNING id
