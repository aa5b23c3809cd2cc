-- name: insert_jobs
-- Many jobs in one statement; rows arrive as one JSON array. "WHERE true" keeps SQLite's
-- parser from reading ON CONFLICT as a join constraint.
INSERT INTO jobsaga_jobs (state, queue, worker, args, meta, tags, max_attempts, priority,
                          inserted_at, scheduled_at, unique_key, unique_states)
SELECT json_extract(value, '$.state'), json_extract(value, '$.queue'),
       json_extract(value, '$.worker'), json(json_extract(value, '$.args')),
       json(json_extract(value, '$.meta')), json(json_extract(value, '$.tags')),
       json_extract(value, '$.max_attempts'), json_extract(value, '$.priority'),
       json_extract(value, '$.inserted_at'), json_extract(value, '$.scheduled_at'),
       json_extract(value, '$.unique_key'), json_extract(value, '$.unique_states')
FROM json_each(:rows)
WHERE true
ORDER BY key
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
RETURNING *

-- name: find_unique
SELECT * FROM jobsaga_jobs WHERE unique_key = :unique_key

-- name: find_unique_many
SELECT * FROM jobsaga_jobs WHERE unique_key IN (SELECT value FROM json_each(:keys))

-- name: release_unique
UPDATE jobsaga_jobs SET unique_key = NULL
WHERE id = :id AND unique_key = :unique_key AND inserted_at < :before

-- name: has_available
SELECT 1 FROM jobsaga_jobs WHERE state = 'available' AND queue = :queue LIMIT 1

-- name: fetch_jobs
UPDATE jobsaga_jobs
SET state = 'executing', attempt = attempt + 1, attempted_at = :now, attempted_by = :node
WHERE id IN (
    SELECT id FROM jobsaga_jobs
    WHERE state = 'available' AND queue = :queue
    ORDER BY priority, scheduled_at, id
    LIMIT :limit
)
RETURNING *

-- name: ack_jobs
UPDATE jobsaga_jobs
SET state = a.state,
    scheduled_at = coalesce(a.scheduled_at, jobsaga_jobs.scheduled_at),
    attempt = jobsaga_jobs.attempt + a.attempt_delta,
    errors = CASE WHEN a.error IS NULL THEN jobsaga_jobs.errors
                  ELSE json_insert(jobsaga_jobs.errors, '$[#]', json(a.error)) END,
    meta = CASE WHEN a.meta IS NULL THEN jobsaga_jobs.meta
                ELSE json_patch(jobsaga_jobs.meta, a.meta) END,
    completed_at = CASE WHEN a.state = 'completed' THEN a.at ELSE jobsaga_jobs.completed_at END,
    discarded_at = CASE WHEN a.state = 'discarded' THEN a.at ELSE jobsaga_jobs.discarded_at END,
    cancelled_at = CASE WHEN a.state = 'cancelled' THEN a.at ELSE jobsaga_jobs.cancelled_at END
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.state') AS state, json_extract(value, '$.at') AS at,
           json_extract(value, '$.scheduled_at') AS scheduled_at,
           json_extract(value, '$.attempt_delta') AS attempt_delta,
           json_extract(value, '$.error') AS error, json_extract(value, '$.meta') AS meta
    FROM json_each(:acks)
) AS a
WHERE jobsaga_jobs.id = a.id AND jobsaga_jobs.state = 'executing'
  AND jobsaga_jobs.attempt = a.attempt
RETURNING jobsaga_jobs.id

-- name: discard_undecodable
-- Claimed jobs whose rows cannot be decoded (see Engine.discard_undecodable): discarded with
-- the reason appended to errors, or errors replaced when that column is what is broken.
UPDATE jobsaga_jobs
SET state = 'discarded',
    discarded_at = json_extract(r.value, '$.at'),
    errors = CASE WHEN json_valid(jobsaga_jobs.errors)
                       AND json_type(jobsaga_jobs.errors) = 'array'
                  THEN json_insert(jobsaga_jobs.errors, '$[#]', json(json_extract(r.value, '$.error')))
                  ELSE json_array(json(json_extract(r.value, '$.error'))) END
FROM json_each(:rows) AS r
WHERE jobsaga_jobs.id = json_extract(r.value, '$.id') AND jobsaga_jobs.state = 'executing'
  AND jobsaga_jobs.attempted_by = :node
RETURNING jobsaga_jobs.id

-- name: stage_jobs
UPDATE jobsaga_jobs SET state = 'available'
WHERE id IN (
    SELECT id FROM jobsaga_jobs
    WHERE state IN ('scheduled', 'retryable') AND scheduled_at <= :now
    ORDER BY scheduled_at
    LIMIT :limit
)
RETURNING queue

-- name: next_due
SELECT min(scheduled_at) AS at FROM jobsaga_jobs WHERE state IN ('scheduled', 'retryable')

-- name: get_job
SELECT * FROM jobsaga_jobs WHERE id = :id

-- name: queue_counts
SELECT queue, state, count(*) AS n FROM jobsaga_jobs GROUP BY queue, state

-- name: claim_job
-- The testing toolkit runs one given waiting job at once, whatever its queue or schedule.
UPDATE jobsaga_jobs
SET state = 'executing', attempt = :attempt, attempted_at = :now, attempted_by = :node
WHERE id = :id AND state IN ('available', 'scheduled', 'retryable')
RETURNING *

-- name: make_due
-- The testing toolkit's drain_queue(with_scheduled=True): run a queue's waiting jobs now,
-- except those (snoozed during this drain) it must not run again.
UPDATE jobsaga_jobs SET scheduled_at = :now
WHERE queue = :queue AND state IN ('scheduled', 'retryable')
  AND id NOT IN (SELECT value FROM json_each(:except_ids))
