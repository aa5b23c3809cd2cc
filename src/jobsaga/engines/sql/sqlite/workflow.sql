-- The workflow run log on SQLite. JSON columns travel as JSON text inside the row payloads,
-- so every dialect decodes them the same way. "WHERE true" keeps SQLite's parser from
-- reading ON CONFLICT as a join constraint.

-- name: insert_run
-- A run made at once (a child run, or a run whose batched open failed); parent_step is NULL
-- for a job's own run, set for a child run (its parent's step).
INSERT INTO jobsaga_workflow_runs (workflow, job_id, attempt, status, inputs, context, dag,
                                   started_at, updated_at, parent_run_id, parent_step,
                                   iteration)
VALUES (:workflow, :job_id, :attempt, 'running', :inputs, :context, :dag, :now, :now,
        :parent_run_id, :parent_step, :iteration)
RETURNING id

-- name: find_run_of_job
-- The run that decides what the job's next attempt does: its succeeded run if it has one
-- (final: the attempt completes the job without running a step), else the run it left
-- unfinished (resumed). A run that ended in failure was rolled back: a new run starts. A run
-- that succeeded at or before the attempt an operator retried the finished job after
-- (retried_after) is not final: the job runs its saga again. A halted run is taken up as
-- a running one. The job's child runs (same job_id, parent_step set) are never its run.
SELECT id, status FROM jobsaga_workflow_runs
WHERE job_id = :job_id AND workflow = :workflow AND parent_step IS NULL
  AND status IN ('succeeded', 'running', 'rolling_back', 'halted')
  AND (status <> 'succeeded' OR :retried_after IS NULL OR attempt > :retried_after)
ORDER BY status = 'succeeded' DESC, id DESC
LIMIT 1

-- name: find_child_run
-- The child run a parent's step ran (compose) or its iteration (recurse), whatever its
-- status: the executor decides (a succeeded child is final; an unfinished one is resumed; one
-- that ended in failure may be reopened to be undone). The newest, should there be several.
SELECT id FROM jobsaga_workflow_runs
WHERE parent_run_id = :parent_run_id AND parent_step = :parent_step
  AND iteration = :iteration AND workflow = :workflow
ORDER BY id DESC
LIMIT 1

-- name: resume_run
-- The takeover: the run is this attempt's from now on (writes of earlier attempts are fenced
-- off), and a halted run runs again: its halt marker (result) goes in the same write, so a
-- node that dies right after cannot leave a running run that looks still halting.
UPDATE jobsaga_workflow_runs
SET attempt = :attempt, updated_at = :now,
    status = CASE WHEN status = 'halted' THEN 'running' ELSE status END,
    result = CASE WHEN status = 'halted' THEN NULL ELSE result END
WHERE id = :id

-- name: insert_events
-- A write retried after its commit's reply was lost finds its events there: kept as they are.
INSERT INTO jobsaga_workflow_events (run_id, seq, at, attempt, step, kind, detail)
SELECT :run_id, json_extract(value, '$.seq'), json_extract(value, '$.at'),
       json_extract(value, '$.attempt'), json_extract(value, '$.step'),
       json_extract(value, '$.kind'), json_extract(value, '$.detail')
FROM json_each(:rows)
WHERE true
ON CONFLICT (run_id, seq) DO NOTHING

-- name: open_runs
-- Open the runs of a round of attempts at once (the run log writer batches them), in two
-- statements run in one transaction: the requests whose job has a run to take up (found:
-- succeeded, running, rolling back or halted; its attempt then opens it alone; never one of
-- the job's child runs), then a run inserted for each other request, in the order
-- given, so the ids returned (sorted) follow those requests (idx NULL). SQLite has no
-- sequence to reserve an id from, and its commit is cheap: the row is made here, and the
-- run's first write (write_logs) finds it there. Inputs, context and DAG are JSON inside the
-- payload ("->" gives their JSON text).
SELECT idx, id, 1 AS found FROM (
    SELECT json_extract(value, '$.idx') AS idx, (
        SELECT w.id FROM jobsaga_workflow_runs w
        WHERE w.job_id = json_extract(value, '$.job_id')
          AND w.workflow = json_extract(value, '$.workflow')
          AND w.parent_step IS NULL
          AND w.status IN ('succeeded', 'running', 'rolling_back', 'halted')
          AND (w.status <> 'succeeded' OR json_extract(value, '$.retried_after') IS NULL
               OR w.attempt > json_extract(value, '$.retried_after'))
        LIMIT 1) AS id
    FROM json_each(:runs)
) WHERE id IS NOT NULL;

INSERT INTO jobsaga_workflow_runs (workflow, job_id, attempt, status, inputs, context, dag,
                                   started_at, updated_at)
SELECT json_extract(value, '$.workflow'), json_extract(value, '$.job_id'),
       json_extract(value, '$.attempt'), 'running', nullif(value -> '$.inputs', 'null'),
       nullif(value -> '$.context', 'null'), nullif(value -> '$.dag', 'null'),
       json_extract(value, '$.now'), json_extract(value, '$.now')
FROM json_each(:runs)
WHERE NOT EXISTS (
    SELECT 1 FROM jobsaga_workflow_runs w
    WHERE w.job_id = json_extract(value, '$.job_id')
      AND w.workflow = json_extract(value, '$.workflow')
      AND w.parent_step IS NULL
      AND w.status IN ('succeeded', 'running', 'rolling_back', 'halted')
      AND (w.status <> 'succeeded' OR json_extract(value, '$.retried_after') IS NULL
           OR w.attempt > json_extract(value, '$.retried_after')))
ORDER BY key
RETURNING NULL AS idx, id, 0 AS found

-- name: write_logs
-- One round of the run log writer: what every run recorded since its last write, in three
-- statements run in one BEGIN IMMEDIATE transaction (SQLite writes one table a statement:
-- it has no round trips to save). Here open_runs created each run's row, so create_run
-- (a first write creating its run, on engines that only reserve the id) has nothing to do.
-- JSON values (results, errors, details) are JSON inside the payload: "->" gives their JSON
-- text (json_extract would unquote a string), and a JSON null is NULL. Fenced run by run, by
-- attempt and identity: a write of an attempt that was cut short, landing after the job's
-- next attempt took the run over (resume_run raised its attempt), changes nothing of that
-- run; so does a write whose run row is another run's (other job or workflow). The write
-- lock, held till COMMIT, keeps a takeover from interleaving. The fence is read once a
-- statement (the ids of the runs that pass it); "WHERE" also keeps SQLite's parser from
-- reading ON CONFLICT as a join constraint.
WITH fence AS (
    SELECT w.id FROM json_each(:runs) AS r JOIN jobsaga_workflow_runs w
      ON w.id = json_extract(r.value, '$.id')
    WHERE w.attempt <= json_extract(r.value, '$.attempt')
      AND w.workflow = json_extract(r.value, '$.workflow')
      AND w.job_id IS json_extract(r.value, '$.job_id')
)
INSERT INTO jobsaga_workflow_steps (run_id, step, position, status, result, error, tries,
                                    undo_tries, completed_seq, enqueue, started_at,
                                    finished_at)
SELECT json_extract(s.value, '$.run_id'), json_extract(s.value, '$.step'),
       json_extract(s.value, '$.position'), json_extract(s.value, '$.status'),
       nullif(s.value -> '$.result', 'null'), nullif(s.value -> '$.error', 'null'),
       json_extract(s.value, '$.tries'), json_extract(s.value, '$.undo_tries'),
       json_extract(s.value, '$.completed_seq'), nullif(s.value -> '$.enqueue', 'null'),
       json_extract(s.value, '$.started_at'), json_extract(s.value, '$.finished_at')
FROM json_each(:steps) AS s
WHERE json_extract(s.value, '$.run_id') IN (SELECT id FROM fence)
ON CONFLICT (run_id, step) DO UPDATE
SET status = excluded.status, result = excluded.result, error = excluded.error,
    tries = excluded.tries, undo_tries = excluded.undo_tries,
    completed_seq = excluded.completed_seq, enqueue = excluded.enqueue,
    started_at = excluded.started_at, finished_at = excluded.finished_at;

WITH fence AS (
    SELECT w.id FROM json_each(:runs) AS r JOIN jobsaga_workflow_runs w
      ON w.id = json_extract(r.value, '$.id')
    WHERE w.attempt <= json_extract(r.value, '$.attempt')
      AND w.workflow = json_extract(r.value, '$.workflow')
      AND w.job_id IS json_extract(r.value, '$.job_id')
)
INSERT INTO jobsaga_workflow_events (run_id, seq, at, attempt, step, kind, detail)
SELECT json_extract(e.value, '$.run_id'), json_extract(e.value, '$.seq'),
       json_extract(e.value, '$.at'), json_extract(e.value, '$.attempt'),
       json_extract(e.value, '$.step'), json_extract(e.value, '$.kind'),
       nullif(e.value -> '$.detail', 'null')
FROM json_each(:events) AS e
WHERE json_extract(e.value, '$.run_id') IN (SELECT id FROM fence)
ON CONFLICT (run_id, seq) DO NOTHING;

UPDATE jobsaga_workflow_runs
SET status = r.status, result = r.result, error = r.error, updated_at = r.now,
    finished_at = r.finished_at
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.workflow') AS workflow,
           json_extract(value, '$.job_id') AS job_id,
           json_extract(value, '$.status') AS status,
           nullif(value -> '$.result', 'null') AS result,
           nullif(value -> '$.error', 'null') AS error, json_extract(value, '$.now') AS now,
           json_extract(value, '$.finished_at') AS finished_at
    FROM json_each(:runs)
    WHERE json_extract(value, '$.update_run')
) AS r
WHERE jobsaga_workflow_runs.id = r.id AND jobsaga_workflow_runs.attempt <= r.attempt
  AND jobsaga_workflow_runs.workflow = r.workflow AND jobsaga_workflow_runs.job_id IS r.job_id

-- name: get_run
SELECT id, workflow, job_id, attempt, status, inputs, context, dag, result, error,
       started_at, updated_at, finished_at, parent_run_id, parent_step, iteration
FROM jobsaga_workflow_runs WHERE id = :id

-- name: get_steps
SELECT step, position, status, result, error, tries, undo_tries, completed_seq, enqueue,
       started_at, finished_at
FROM jobsaga_workflow_steps WHERE run_id = :run_id ORDER BY position

-- name: get_events
SELECT seq, at, attempt, step, kind, detail
FROM jobsaga_workflow_events WHERE run_id = :run_id ORDER BY seq

-- name: list_runs
SELECT id, workflow, job_id, attempt, status, inputs, context, dag, result, error,
       started_at, updated_at, finished_at, parent_run_id, parent_step, iteration
FROM jobsaga_workflow_runs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:job_id IS NULL OR job_id = :job_id)
  AND (:parent_run_id IS NULL OR parent_run_id = :parent_run_id)
  AND (NOT :top_level OR parent_step IS NULL)
ORDER BY id DESC
LIMIT coalesce(:limit, -1)

-- name: get_children
-- A run's child runs, in the parent's step order (as its steps were declared), then by
-- iteration (recurse), then as they were made.
SELECT c.id, c.workflow, c.status, c.parent_step, c.iteration, c.started_at, c.finished_at,
       c.error
FROM jobsaga_workflow_runs c
LEFT JOIN jobsaga_workflow_steps s ON s.run_id = c.parent_run_id AND s.step = c.parent_step
WHERE c.parent_run_id = :run_id
ORDER BY s.position IS NULL, s.position, c.parent_step, c.iteration, c.id

-- name: max_seq
SELECT coalesce(max(seq), 0) AS seq FROM jobsaga_workflow_events WHERE run_id = :run_id

-- name: count_runs
-- How many runs list_runs would show without its limit ("showing 50 of 60").
SELECT count(*) AS n
FROM jobsaga_workflow_runs
WHERE (:statuses IS NULL OR status IN (SELECT value FROM json_each(:statuses)))
  AND (:workflow IS NULL OR workflow = :workflow)
  AND (:job_id IS NULL OR job_id = :job_id)
  AND (:parent_run_id IS NULL OR parent_run_id = :parent_run_id)
  AND (NOT :top_level OR parent_step IS NULL)

-- name: follow_up_jobs
-- The jobs a succeeded run enqueued: each names it in meta.enqueued_by_run (set when the
-- step that registered it completed), found through jobsaga_jobs_enqueued_by_run_idx.
SELECT id, state, queue, worker, attempt, max_attempts, scheduled_at, completed_at
FROM jobsaga_jobs
WHERE instr(meta, '"enqueued_by_run"') > 0
  AND CASE WHEN json_valid(meta) THEN json_extract(meta, '$.enqueued_by_run') END = :run_id
  AND CASE WHEN json_valid(meta) THEN json_type(meta, '$.enqueued_by_run') END = 'integer'
ORDER BY id
