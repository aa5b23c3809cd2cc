-- Resuming a halted saga run's parked job (workflow/resuming.py).

-- name: lock_job_to_resume
-- The job, held until the resume commits: a concurrent resume waits here, then finds it
-- no longer parked.
SELECT * FROM jobsaga_jobs WHERE id = %(id)s FOR UPDATE

-- name: resume_parked_job
-- Only a job still parked on this run is set going (the guard a concurrent resume meets).
UPDATE jobsaga_jobs
SET state = 'available', scheduled_at = %(now)s, args = %(args)s::jsonb,
    meta = (meta - 'halted_run') || %(meta)s::jsonb
WHERE id = %(id)s AND state = 'scheduled'
  AND meta -> 'halted_run' = to_jsonb(%(run_id)s::bigint)
RETURNING id
