-- The workflow run log on PostgreSQL. JSON columns travel as JSON text inside the row
-- payloads (and are read back as text), so every dialect decodes them the same way.

-- name: insert_run
-- A run made at once (a child run, or a run whose batched open failed); parent_step is NULL
-- for a job's own run, set for a child run (its parent's step).
INSERT INTO jobsaga_workflow_runs (workflow, job_id, attempt, status, inputs, context, dag,
                                   started_at, updated_at, parent_run_id, parent_step,
                                   iteration)
VALUES (%(workflow)s, %(job_id)s, %(attempt)s, 'running', %(inputs)s::jsonb,
        %(context)s::jsonb, %(dag)s::jsonb, %(now)s, %(now)s, %(parent_run_id)s,
        %(parent_step)s, %(iteration)s)
RETURNING id

-- name: find_run_of_job
-- The run that decides what the job's next attempt does: its succeeded run if it has one
-- (final: the attempt completes the job without running a step), else the run it left
-- unfinished (resumed). A run that ended in failure was rolled back: a new run starts. A run
-- that succeeded at or before the attempt an operator retried the finished job after
-- (retried_after) is not final: the job runs its saga again. A halted run is taken up as
-- a running one. The job's child runs (same job_id, parent_step set) are never its run.
SELECT id, status FROM jobsaga_workflow_runs
WHERE job_id = %(job_id)s AND workflow = %(workflow)s AND parent_step IS NULL
  AND status IN ('succeeded', 'running', 'rolling_back', 'halted')
  AND (status <> 'succeeded' OR %(retried_after)s::int IS NULL OR attempt > %(retried_after)s::int)
ORDER BY status = 'succeeded' DESC, id DESC
LIMIT 1

-- name: find_child_run
-- The child run a parent's step ran (compose) or its iteration (recurse), whatever its
-- status: the executor decides (a succeeded child is final; an unfinished one is resumed; one
-- that ended in failure may be reopened to be undone). The newest, should there be several.
SELECT id FROM jobsaga_workflow_runs
WHERE parent_run_id = %(parent_run_id)s AND parent_step = %(parent_step)s
  AND iteration = %(iteration)s AND workflow = %(workflow)s
ORDER BY id DESC
LIMIT 1

-- name: resume_run
-- The takeover: the run is this attempt's from now on (writes of earlier attempts are fenced
-- off), and a halted run runs again: its halt marker (result) goes in the same write, so a
-- node that dies right after cannot leave a running run that looks still halting.
UPDATE jobsaga_workflow_runs
SET attempt = %(attempt)s, updated_at = %(now)s,
    status = CASE WHEN status = 'halted' THEN 'running' ELSE status END,
    result = CASE WHEN status = 'halted' THEN NULL ELSE result END
WHERE id = %(id)s

-- name: insert_events
-- A write retried after its commit's reply was lost finds its events there: kept as they are.
INSERT INTO jobsaga_workflow_events (run_id, seq, at, attempt, step, kind, detail)
SELECT %(run_id)s, r.seq, r.at, r.attempt, r.step, r.kind, r.detail::jsonb
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    seq int, at timestamptz, attempt int, step text, kind text, detail text)
ON CONFLICT (run_id, seq) DO NOTHING

-- name: open_runs
-- Open the runs of a round of attempts at once (the run log writer batches them): for each
-- request (in idx order), the run its job has to take up (found: succeeded, final; running,
-- rolling back or halted, resumed; that attempt then opens it alone: find_run_of_job, read,
-- resume_run), or else a new run's id, reserved from the sequence. Nothing is written: the
-- new run's row is created by its first write (write_logs), so opening a run costs no
-- commit to wait for (a crash before that write leaves no run, and its steps, none of them
-- recorded, run again). coalesce() reserves an id only for requests that found no run.
WITH wanted AS (
    SELECT * FROM jsonb_to_recordset(%(runs)s::jsonb) AS r(
        idx int, workflow text, job_id bigint, retried_after int)
), found AS (
    SELECT wanted.idx, (
        SELECT w.id FROM jobsaga_workflow_runs w
        WHERE w.job_id = wanted.job_id AND w.workflow = wanted.workflow
          AND w.parent_step IS NULL
          AND w.status IN ('succeeded', 'running', 'rolling_back', 'halted')
          AND (w.status <> 'succeeded' OR wanted.retried_after IS NULL
               OR w.attempt > wanted.retried_after)
        LIMIT 1) AS id
    FROM wanted
)
SELECT idx, coalesce(id, nextval('jobsaga_workflow_runs_id_seq')) AS id,
       id IS NOT NULL AS found
FROM found
ORDER BY idx

-- name: write_logs
-- One round of the run log writer: what every run on the node recorded since its last write
-- (run rows, step rows, events), as one statement (one round trip, one commit). A step waits
-- for its predecessors' outcomes to be written, so a chain of steps pays this once per step;
-- concurrent runs share it. A run's first write creates its row (create_run: open_runs only
-- reserved its id); later ones update it when it changed (update_run). Fenced run by run: a
-- write of an attempt that was cut short, landing after the job's next attempt took the run
-- over (resume_run raised its attempt), changes nothing of that run; so does a write whose
-- run row is another run's (same id, other job or workflow: an id the sequence handed out
-- again after the server crashed before the first write). The row locks order a write and a
-- takeover (taken in id order, so two writes never wait on each other in a cycle): the one
-- that got the lock first happened first. A write retried after its commit's reply was lost
-- is harmless: the run is there, steps are upserted and events keep their first write.
-- JSON values (results, errors, details) are JSON inside the payload, parsed once with it.
-- Every run is reached through its primary key (a LATERAL lookup, an upsert): joined to a
-- recordset, which the planner takes for 100 rows, a run table of a few thousand rows was
-- read whole at every round (a millisecond of a 1.5 ms write).
WITH runs AS (
    SELECT * FROM jsonb_to_recordset(%(runs)s::jsonb) AS r(
        id bigint, attempt int, workflow text, job_id bigint, create_run boolean,
        update_run boolean, status text, inputs jsonb, context jsonb, dag jsonb, result jsonb,
        error jsonb, started_at timestamptz, now timestamptz, finished_at timestamptz)
), locked AS (
    SELECT w.id FROM (SELECT * FROM runs ORDER BY id) AS runs
    CROSS JOIN LATERAL (
        SELECT w.id FROM jobsaga_workflow_runs w
        WHERE w.id = runs.id AND w.attempt <= runs.attempt AND w.workflow = runs.workflow
          AND w.job_id IS NOT DISTINCT FROM runs.job_id
        FOR UPDATE
    ) AS w
), written_runs AS (
    -- Only created or changed runs; a run that is not new conflicts with its row, which is
    -- updated when the fence lets it (the row a new run would be is never there, unless a
    -- retried write had made it: then it is this run's).
    INSERT INTO jobsaga_workflow_runs AS w (id, workflow, job_id, attempt, status, inputs,
                                            context, dag, result, error, started_at,
                                            updated_at, finished_at)
    SELECT runs.id, runs.workflow, runs.job_id, runs.attempt, runs.status,
           coalesce(runs.inputs, '{}'), runs.context, runs.dag, runs.result, runs.error,
           coalesce(runs.started_at, runs.now), runs.now, runs.finished_at
    FROM runs
    WHERE runs.create_run OR runs.update_run
    ORDER BY runs.id
    ON CONFLICT (id) DO UPDATE
    SET status = excluded.status, result = excluded.result, error = excluded.error,
        updated_at = excluded.updated_at, finished_at = excluded.finished_at
    WHERE w.attempt <= excluded.attempt AND w.workflow = excluded.workflow
      AND w.job_id IS NOT DISTINCT FROM excluded.job_id
    RETURNING w.id
), fence AS (
    SELECT id FROM locked UNION ALL SELECT id FROM written_runs  -- "IN" needs no dedup
), written_steps AS (
    INSERT INTO jobsaga_workflow_steps (run_id, step, position, status, result, error, tries,
                                        undo_tries, completed_seq, enqueue, started_at,
                                        finished_at)
    SELECT s.run_id, s.step, s.position, s.status, s.result, s.error, s.tries,
           s.undo_tries, s.completed_seq, s.enqueue, s.started_at, s.finished_at
    FROM jsonb_to_recordset(%(steps)s::jsonb) AS s(
        run_id bigint, step text, position int, status text, result jsonb, error jsonb,
        tries int, undo_tries int, completed_seq int, enqueue jsonb, started_at timestamptz,
        finished_at timestamptz)
    WHERE s.run_id IN (SELECT id FROM fence)
    ON CONFLICT (run_id, step) DO UPDATE
    SET status = excluded.status, result = excluded.result, error = excluded.error,
        tries = excluded.tries, undo_tries = excluded.undo_tries,
        completed_seq = excluded.completed_seq, enqueue = excluded.enqueue,
        started_at = excluded.started_at, finished_at = excluded.finished_at
)
INSERT INTO jobsaga_workflow_events (run_id, seq, at, attempt, step, kind, detail)
SELECT e.run_id, e.seq, e.at, e.attempt, e.step, e.kind, e.detail
FROM jsonb_to_recordset(%(events)s::jsonb) AS e(
    run_id bigint, seq int, at timestamptz, attempt int, step text, kind text, detail jsonb)
WHERE e.run_id IN (SELECT id FROM fence)
ON CONFLICT (run_id, seq) DO NOTHING

-- name: get_run
SELECT id, workflow, job_id, attempt, status, inputs::text AS inputs,
       context::text AS context, dag::text AS dag, result::text AS result,
       error::text AS error,
       started_at, updated_at, finished_at, parent_run_id, parent_step, iteration
FROM jobsaga_workflow_runs WHERE id = %(id)s

-- name: get_steps
SELECT step, position, status, result::text AS result, error::text AS error, tries,
       undo_tries, completed_seq, enqueue::text AS enqueue, started_at, finished_at
FROM jobsaga_workflow_steps WHERE run_id = %(run_id)s ORDER BY position

-- name: get_events
SELECT seq, at, attempt, step, kind, detail::text AS detail
FROM jobsaga_workflow_events WHERE run_id = %(run_id)s ORDER BY seq

-- name: list_runs
SELECT id, workflow, job_id, attempt, status, inputs::text AS inputs,
       context::text AS context, dag::text AS dag, result::text AS result,
       error::text AS error,
       started_at, updated_at, finished_at, parent_run_id, parent_step, iteration
FROM jobsaga_workflow_runs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s::bigint)
  AND (%(parent_run_id)s::bigint IS NULL OR parent_run_id = %(parent_run_id)s::bigint)
  AND (NOT %(top_level)s::boolean OR parent_step IS NULL)
ORDER BY id DESC
LIMIT %(limit)s

-- name: get_children
-- A run's child runs, in the parent's step order (as its steps were declared), then by
-- iteration (recurse), then as they were made.
SELECT c.id, c.workflow, c.status, c.parent_step, c.iteration, c.started_at, c.finished_at,
       c.error::text AS error
FROM jobsaga_workflow_runs c
LEFT JOIN jobsaga_workflow_steps s ON s.run_id = c.parent_run_id AND s.step = c.parent_step
WHERE c.parent_run_id = %(run_id)s
ORDER BY s.position NULLS LAST, c.parent_step, c.iteration, c.id

-- name: max_seq
SELECT coalesce(max(seq), 0) AS seq FROM jobsaga_workflow_events WHERE run_id = %(run_id)s

-- name: count_runs
-- How many runs list_runs would show without its limit ("showing 50 of 60").
SELECT count(*) AS n
FROM jobsaga_workflow_runs
WHERE (%(statuses)s::text[] IS NULL OR status = ANY(%(statuses)s::text[]))
  AND (%(workflow)s::text IS NULL OR workflow = %(workflow)s::text)
  AND (%(job_id)s::bigint IS NULL OR job_id = %(job_id)s::bigint)
  AND (%(parent_run_id)s::bigint IS NULL OR parent_run_id = %(parent_run_id)s::bigint)
  AND (NOT %(top_level)s::boolean OR parent_step IS NULL)

-- name: follow_up_jobs
-- The jobs a succeeded run enqueued: each names it in meta.enqueued_by_run (set when the
-- step that registered it completed), found through jobsaga_jobs_enqueued_by_run_idx.
SELECT id, state, queue, worker, attempt, max_attempts, scheduled_at, completed_at
FROM jobsaga_jobs
WHERE meta ? 'enqueued_by_run' AND meta ->> 'enqueued_by_run' = %(run_id)s::text
  AND jsonb_typeof(meta -> 'enqueued_by_run') = 'number'  -- the run's id, never a string "42"
ORDER BY id
