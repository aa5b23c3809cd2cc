-- Job operations and queue control (PostgreSQL). Every optional filter is a NULL-able
-- parameter, so one statement serves every combination; /*job_filter*/ is replaced by the
-- job_filter block when the file is loaded.

-- name: job_filter
(%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
AND (%(states)s::text[] IS NULL OR state = ANY(%(states)s::text[]))
AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
AND (%(workers)s::text[] IS NULL OR worker = ANY(%(workers)s::text[]))
AND (%(tags)s::jsonb IS NULL OR tags @> %(tags)s::jsonb)
AND (%(priorities)s::int[] IS NULL OR priority = ANY(%(priorities)s::int[]))
-- args and meta: every path to a non-object value of a wanted object must lead to an equal
-- value in the job's (jsonb equality: arrays whole and in order), and every path to a wanted
-- object to an object. Not @>, which would also match an array holding more elements. One
-- walk serves both columns: each wanted entry carries the job's document it is held against.
AND ((%(args_subset)s::jsonb IS NULL AND %(meta_subset)s::jsonb IS NULL) OR NOT EXISTS (
        WITH RECURSIVE wanted(doc, path, value) AS (
            SELECT args, ARRAY[w.key], w.value FROM jsonb_each(%(args_subset)s::jsonb) AS w
            UNION ALL
            SELECT meta, ARRAY[w.key], w.value FROM jsonb_each(%(meta_subset)s::jsonb) AS w
            UNION ALL
            SELECT wanted.doc, wanted.path || w.key, w.value
            FROM wanted, jsonb_each(CASE jsonb_typeof(wanted.value)
                                    WHEN 'object' THEN wanted.value ELSE '{}' END) AS w
        )
        SELECT 1 FROM wanted WHERE CASE jsonb_typeof(wanted.value)
            WHEN 'object' THEN jsonb_typeof(wanted.doc #> wanted.path) IS DISTINCT FROM 'object'
            ELSE wanted.doc #> wanted.path IS DISTINCT FROM wanted.value END))
AND (%(since)s::timestamptz IS NULL OR CASE %(time_field)s::text
        WHEN 'inserted_at' THEN inserted_at
        WHEN 'scheduled_at' THEN scheduled_at
        WHEN 'attempted_at' THEN attempted_at
        WHEN 'finished_at' THEN coalesce(completed_at, discarded_at, cancelled_at)
     END >= %(since)s::timestamptz)
AND (%(until)s::timestamptz IS NULL OR CASE %(time_field)s::text
        WHEN 'inserted_at' THEN inserted_at
        WHEN 'scheduled_at' THEN scheduled_at
        WHEN 'attempted_at' THEN attempted_at
        WHEN 'finished_at' THEN coalesce(completed_at, discarded_at, cancelled_at)
     END < %(until)s::timestamptz)
AND (%(nodes)s::text[] IS NULL OR attempted_by = ANY(%(nodes)s::text[]))
-- args_path: pairs of (keys, text); the value at every path must read as that text (#>>:
-- a string without its quotes, a number as written; a missing path or a null reads as NULL).
AND (%(arg_paths)s::jsonb IS NULL OR NOT EXISTS (
        SELECT 1 FROM jsonb_array_elements(%(arg_paths)s::jsonb) AS w(pair)
        WHERE args #>> ARRAY(SELECT jsonb_array_elements_text(w.pair -> 0))
              IS DISTINCT FROM w.pair ->> 1))
-- text: a scan of the JSON text of args and errors (no index serves a match anywhere in a text)
AND (%(text_plain)s::text IS NULL
     OR args::text ILIKE %(text_plain)s::text OR errors::text ILIKE %(text_plain)s::text
     OR (%(text_ascii)s::text IS NOT NULL
         AND (args::text ILIKE %(text_ascii)s::text OR errors::text ILIKE %(text_ascii)s::text)))
-- id bounds, inclusive, never NULL in the condition: a range on the primary key, which a
-- keyset page (ORDER BY id ... LIMIT) walks from its cursor however deep the page
AND id >= coalesce(%(min_id)s::bigint, 0)
AND id <= coalesce(%(max_id)s::bigint, 9223372036854775807)

-- name: list_jobs_newest
SELECT * FROM jobsaga_jobs WHERE /*job_filter*/
ORDER BY id DESC LIMIT %(limit)s OFFSET %(offset)s

-- name: list_jobs_oldest
SELECT * FROM jobsaga_jobs WHERE /*job_filter*/
ORDER BY id LIMIT %(limit)s OFFSET %(offset)s

-- name: count_jobs
SELECT state, count(*) AS n FROM jobsaga_jobs WHERE /*job_filter*/ GROUP BY state

-- name: count_jobs_capped
-- How many jobs match, counting no further than cap (the dashboard says "10,000+" rather
-- than count a million rows on every refresh).
SELECT count(*) AS n FROM (
    SELECT 1 FROM jobsaga_jobs WHERE /*job_filter*/ LIMIT %(cap)s
) AS capped

-- name: select_targets
-- The jobs an operation will change, locked in id order (as the ack path meets them) so a
-- concurrent acknowledgement either lands first, and the job is no longer eligible, or
-- waits and then finds the job changed.
SELECT id, state, queue, attempt, attempted_by FROM jobsaga_jobs
WHERE state = ANY(%(eligible)s::text[]) AND /*job_filter*/
ORDER BY id
FOR UPDATE

-- name: cancel_ids
UPDATE jobsaga_jobs
SET state = 'cancelled', cancelled_at = %(now)s,
    errors = errors || jsonb_build_array(jsonb_build_object(
        'attempt', attempt, 'at', %(at_text)s::text, 'kind', 'cancelled',
        'error', %(error)s::text, 'traceback', ''))
WHERE id = ANY(%(ids)s::bigint[])
  AND state IN ('available', 'scheduled', 'retryable', 'executing')

-- name: retry_ids
UPDATE jobsaga_jobs
SET state = 'available', scheduled_at = %(now)s,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END,
    completed_at = NULL, discarded_at = NULL, cancelled_at = NULL,
    -- A finished saga job retried by hand runs its saga again: its runs up to this attempt
    -- are not final for the attempts after it (workflow.sql, find_run_of_job).
    meta = CASE WHEN state IN ('completed', 'discarded', 'cancelled')
                THEN jsonb_set(meta, '{retried_after_attempt}', to_jsonb(attempt))
                ELSE meta END
WHERE id = ANY(%(ids)s::bigint[])
  AND state IN ('retryable', 'completed', 'discarded', 'cancelled')

-- name: delete_ids
DELETE FROM jobsaga_jobs WHERE id = ANY(%(ids)s::bigint[]) AND state <> 'executing'

-- name: job_rows_for_node
-- A node's safety check of the jobs it is performing: anything no longer executing as this
-- attempt was cancelled, deleted or taken over, and its result would be ignored.
SELECT id, state, attempt, attempted_by FROM jobsaga_jobs WHERE id = ANY(%(ids)s::bigint[])

-- name: set_paused
INSERT INTO jobsaga_queue_controls (queue, node, paused, updated_at)
VALUES (%(queue)s, %(node)s, %(paused)s, %(now)s)
ON CONFLICT (queue, node) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at

-- name: set_concurrency
INSERT INTO jobsaga_queue_controls (queue, node, concurrency, updated_at)
VALUES (%(queue)s, %(node)s, %(concurrency)s, %(now)s)
ON CONFLICT (queue, node) DO UPDATE
SET concurrency = excluded.concurrency, updated_at = excluded.updated_at

-- name: clear_node_paused
-- A control for every node is the latest word: per-node overrides of the same setting go.
UPDATE jobsaga_queue_controls SET paused = NULL, updated_at = %(now)s
WHERE queue = %(queue)s AND node <> ''

-- name: clear_node_concurrency
UPDATE jobsaga_queue_controls SET concurrency = NULL, updated_at = %(now)s
WHERE queue = %(queue)s AND node <> ''

-- name: drop_empty_controls
DELETE FROM jobsaga_queue_controls
WHERE queue = %(queue)s AND paused IS NULL AND concurrency IS NULL

-- name: controls_for_node
SELECT queue, node, paused, concurrency FROM jobsaga_queue_controls
WHERE node IN ('', %(node)s)

-- name: all_controls
SELECT queue, node, paused, concurrency, updated_at FROM jobsaga_queue_controls
ORDER BY queue, node

-- name: live_nodes
-- The nodes whose own deadline has not passed: the one test of liveness, the complement of
-- the lifeline's (it rescues a node's jobs once expires_at < now). Each row's meta is the
-- node's last beat: its queues (limit, paused, running, health) and its held jobs.
SELECT name, started_at, heartbeat_at, expires_at, meta FROM jobsaga_nodes
WHERE expires_at >= %(now)s
ORDER BY name

-- name: queue_state_counts
-- One arm per partial index (fetch, staging, executing): the unfinished jobs are read without
-- touching the finished ones, however many of those the table holds.
SELECT queue, 'available' AS state, count(*) AS n FROM jobsaga_jobs
WHERE state = 'available' GROUP BY queue
UNION ALL
SELECT queue, state, count(*) AS n FROM jobsaga_jobs
WHERE state IN ('scheduled', 'retryable') GROUP BY queue, state
UNION ALL
SELECT queue, 'executing' AS state, count(*) AS n FROM jobsaga_jobs
WHERE state = 'executing' GROUP BY queue

-- name: running_by_node
SELECT queue, attempted_by AS node, count(*) AS n FROM jobsaga_jobs
WHERE state = 'executing'
GROUP BY queue, attempted_by
