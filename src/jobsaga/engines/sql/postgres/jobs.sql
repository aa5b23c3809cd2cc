-- name: insert_jobs
-- Many jobs in one statement; rows arrive as one JSON array so the statement is the same
-- for one job or a few hundred (more go through COPY: copy_jobs). Only the id and the key
-- come back: the engine builds each stored job from its spec.
INSERT INTO jobsaga_jobs (state, queue, worker, args, meta, tags, max_attempts, priority,
                          inserted_at, scheduled_at, unique_key, unique_states)
SELECT r.state, r.queue, r.worker, r.args, r.meta, r.tags, r.max_attempts, r.priority,
       r.inserted_at, r.scheduled_at, r.unique_key, r.unique_states
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    idx int, state text, queue text, worker text, args jsonb, meta jsonb, tags jsonb,
    max_attempts int, priority int, inserted_at timestamptz, scheduled_at timestamptz,
    unique_key text, unique_states text)
ORDER BY r.unique_key NULLS FIRST, r.idx  -- unique keys in one order: racing batches cannot deadlock
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key

-- name: insert_job_and_notify
-- One plain job outside a caller's transaction (insert one by one): typed parameters rather
-- than a JSON array for the server to take apart, and the wake-up NOTIFY (the payload is
-- wake_payload's, made by the engine) in the same autocommitted statement, so an insert is
-- one round trip instead of BEGIN, INSERT, NOTIFY, COMMIT.
WITH ins AS (
    INSERT INTO jobsaga_jobs (state, queue, worker, args, meta, tags, max_attempts, priority,
                              inserted_at, scheduled_at)
    VALUES (%(state)s, %(queue)s, %(worker)s, %(args)s::jsonb, %(meta)s::jsonb, %(tags)s::jsonb,
            %(max_attempts)s, %(priority)s, %(inserted_at)s, %(scheduled_at)s)
    RETURNING id
),
woken AS (SELECT pg_notify(%(channel)s, %(payload)s))
SELECT ins.id FROM ins CROSS JOIN woken

-- name: reserve_job_ids
-- Ids for jobs written by COPY, which cannot return the ones it assigns: in increasing order.
SELECT array_agg(nextval('jobsaga_jobs_id_seq')) AS ids FROM generate_series(1, %(n)s)

-- name: copy_jobs
-- Plain jobs in bulk, with the ids reserve_job_ids gave; binary rows whose fields match these
-- columns' types exactly (engines/postgres_copy.py).
COPY jobsaga_jobs (id, state, queue, worker, args, meta, tags, max_attempts, priority,
                   inserted_at, scheduled_at) FROM STDIN (FORMAT BINARY)

-- name: create_job_staging
-- Unique jobs in bulk are copied here first, then inserted with ON CONFLICT: COPY cannot skip
-- a held key. Dropped after use (drop_job_staging), so a caller's transaction can stage again.
CREATE TEMP TABLE jobsaga_job_staging (
    idx bigint, state text, queue text, worker text, args jsonb, meta jsonb, tags jsonb,
    max_attempts integer, priority smallint, inserted_at timestamptz, scheduled_at timestamptz,
    unique_key text, unique_states text) ON COMMIT DROP

-- name: copy_job_staging
COPY jobsaga_job_staging (idx, state, queue, worker, args, meta, tags, max_attempts, priority,
                          inserted_at, scheduled_at, unique_key, unique_states)
FROM STDIN (FORMAT BINARY)

-- name: insert_from_staging
INSERT INTO jobsaga_jobs (state, queue, worker, args, meta, tags, max_attempts, priority,
                          inserted_at, scheduled_at, unique_key, unique_states)
SELECT state, queue, worker, args, meta, tags, max_attempts, priority,
       inserted_at, scheduled_at, unique_key, unique_states
FROM jobsaga_job_staging
ORDER BY unique_key, idx  -- as insert_jobs: racing batches take the keys in one order
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING id, unique_key

-- name: drop_job_staging
DROP TABLE jobsaga_job_staging

-- name: find_unique
SELECT * FROM jobsaga_jobs WHERE unique_key = %(unique_key)s

-- name: find_unique_many
SELECT * FROM jobsaga_jobs
WHERE unique_key = ANY (SELECT jsonb_array_elements_text(%(keys)s::jsonb))

-- name: release_unique
UPDATE jobsaga_jobs SET unique_key = NULL
WHERE id = %(id)s AND unique_key = %(unique_key)s AND inserted_at < %(before)s

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s)

-- name: insert_jobs_and_notify
-- Plain jobs (no uniqueness) outside a caller's transaction, more than one but fewer than
-- COPY pays for: insert_jobs (spliced into the first CTE by the engine) and the wake-up
-- NOTIFY (wake_payload's, made by the engine) in one autocommitted statement, one round trip.
WITH ins AS (
/* insert_jobs */
),
woken AS (SELECT pg_notify(%(channel)s, %(payload)s))
SELECT ins.id FROM ins CROSS JOIN woken

-- name: fetch_jobs
WITH picked AS (
    SELECT id FROM jobsaga_jobs
    WHERE state = 'available' AND queue = %(queue)s
    ORDER BY priority, scheduled_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobsaga_jobs AS j
SET state = 'executing', attempt = j.attempt + 1,
    attempted_at = %(now)s, attempted_by = %(node)s
FROM picked
WHERE j.id = picked.id
RETURNING j.*

-- name: ack_jobs
-- One statement acknowledges a batch of outcomes. The guard on state and attempt leaves a
-- job alone that was cancelled or rescued while it ran.
UPDATE jobsaga_jobs AS j
SET state = a.state,
    scheduled_at = coalesce(a.scheduled_at, j.scheduled_at),
    attempt = j.attempt + a.attempt_delta,
    errors = CASE WHEN a.error IS NULL THEN j.errors ELSE j.errors || jsonb_build_array(a.error) END,
    meta = CASE WHEN a.meta IS NULL THEN j.meta ELSE j.meta || a.meta END,
    completed_at = CASE WHEN a.state = 'completed' THEN a.at ELSE j.completed_at END,
    discarded_at = CASE WHEN a.state = 'discarded' THEN a.at ELSE j.discarded_at END,
    cancelled_at = CASE WHEN a.state = 'cancelled' THEN a.at ELSE j.cancelled_at END
FROM jsonb_to_recordset(%(acks)s::jsonb) AS a(
    id bigint, attempt int, state text, at timestamptz, scheduled_at timestamptz,
    attempt_delta int, error jsonb, meta jsonb)
WHERE j.id = a.id AND j.state = 'executing' AND j.attempt = a.attempt
RETURNING j.id

-- name: discard_undecodable
-- Claimed jobs whose rows cannot be decoded (see Engine.discard_undecodable): discarded with
-- the reason appended to errors, or errors replaced when that column is what is broken.
UPDATE jobsaga_jobs AS j
SET state = 'discarded',
    discarded_at = r.at,
    errors = CASE WHEN jsonb_typeof(j.errors) = 'array' THEN j.errors || jsonb_build_array(r.error)
                  ELSE jsonb_build_array(r.error) END
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(id bigint, at timestamptz, error jsonb)
WHERE j.id = r.id AND j.state = 'executing' AND j.attempted_by = %(node)s
RETURNING j.id

-- name: stage_jobs
WITH due AS (
    SELECT id FROM jobsaga_jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= %(now)s
    ORDER BY scheduled_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE jobsaga_jobs AS j SET state = 'available'
FROM due WHERE j.id = due.id
RETURNING j.queue

-- name: next_due
SELECT min(scheduled_at) AS at FROM jobsaga_jobs WHERE state IN ('scheduled', 'retryable')

-- name: get_job
SELECT * FROM jobsaga_jobs WHERE id = %(id)s

-- name: queue_counts
SELECT queue, state, count(*) AS n FROM jobsaga_jobs GROUP BY queue, state

-- name: claim_job
-- The testing toolkit runs one given waiting job at once, whatever its queue or schedule.
UPDATE jobsaga_jobs
SET state = 'executing', attempt = %(attempt)s, attempted_at = %(now)s, attempted_by = %(node)s
WHERE id = %(id)s AND state IN ('available', 'scheduled', 'retryable')
RETURNING *

-- name: make_due
-- The testing toolkit's drain_queue(with_scheduled=True): run a queue's waiting jobs now,
-- except those (snoozed during this drain) it must not run again.
UPDATE jobsaga_jobs SET scheduled_at = %(now)s
WHERE queue = %(queue)s AND state IN ('scheduled', 'retryable')
  AND NOT (id = ANY (SELECT jsonb_array_elements_text(%(except_ids)s::jsonb)::bigint))
