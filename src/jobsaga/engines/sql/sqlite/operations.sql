-- Job operations and queue control (SQLite). Every optional filter is a NULL-able parameter,
-- so one statement serves every combination; /*job_filter*/ is replaced by the job_filter
-- block when the file is loaded. Lists arrive as JSON arrays, times as REAL unix seconds.

-- name: job_filter
(:ids IS NULL OR id IN (SELECT value FROM json_each(:ids)))
AND (:states IS NULL OR state IN (SELECT value FROM json_each(:states)))
AND (:queues IS NULL OR queue IN (SELECT value FROM json_each(:queues)))
AND (:workers IS NULL OR worker IN (SELECT value FROM json_each(:workers)))
AND (:tags IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:tags) AS wanted
        WHERE wanted.value NOT IN (SELECT value FROM json_each(tags))))
AND (:priorities IS NULL OR priority IN (SELECT value FROM json_each(:priorities)))
-- args and meta: the wanted object's every value must be in the job's at the same path, equal
-- as JSON (numbers by value, arrays whole and in order, objects inside arrays whole), except
-- objects outside arrays, which need only hold the wanted keys. SQLite has no JSON equality:
-- the wanted value is walked with its path, comparing types, scalars and sizes. One walk
-- serves both columns: each wanted entry carries the job's document it is held against.
AND ((:args_subset IS NULL AND :meta_subset IS NULL) OR NOT EXISTS (
        WITH RECURSIVE wanted(doc, path, type, value, atom, exact) AS (
            SELECT args, w.fullkey, w.type, w.value, w.atom, 0
            FROM json_each(coalesce(:args_subset, '{}')) AS w
            UNION ALL
            SELECT meta, w.fullkey, w.type, w.value, w.atom, 0
            FROM json_each(coalesce(:meta_subset, '{}')) AS w
            UNION ALL
            SELECT wanted.doc, wanted.path || substr(w.fullkey, 2), w.type, w.value, w.atom,
                   wanted.exact OR wanted.type = 'array'
            FROM wanted, json_each(CASE WHEN wanted.type IN ('object', 'array')
                                   THEN wanted.value ELSE '[]' END) AS w
        )
        SELECT 1 FROM wanted
        WHERE (CASE json_type(wanted.doc, wanted.path) WHEN 'real' THEN 'integer'
               ELSE json_type(wanted.doc, wanted.path) END)
              IS NOT (CASE wanted.type WHEN 'real' THEN 'integer' ELSE wanted.type END)
           OR (wanted.type NOT IN ('object', 'array')
               AND json_extract(wanted.doc, wanted.path) IS NOT wanted.atom)
           OR (wanted.type = 'array'
               AND json_array_length(wanted.doc, wanted.path) <> json_array_length(wanted.value))
           OR (wanted.type = 'object' AND wanted.exact
               AND (SELECT count(*) FROM json_each(wanted.doc, wanted.path))
                   <> (SELECT count(*) FROM json_each(wanted.value)))))
AND (:since IS NULL OR CASE :time_field
        WHEN 'inserted_at' THEN inserted_at
        WHEN 'scheduled_at' THEN scheduled_at
        WHEN 'attempted_at' THEN attempted_at
        WHEN 'finished_at' THEN coalesce(completed_at, discarded_at, cancelled_at)
     END >= :since)
AND (:until IS NULL OR CASE :time_field
        WHEN 'inserted_at' THEN inserted_at
        WHEN 'scheduled_at' THEN scheduled_at
        WHEN 'attempted_at' THEN attempted_at
        WHEN 'finished_at' THEN coalesce(completed_at, discarded_at, cancelled_at)
     END < :until)
AND (:nodes IS NULL OR attempted_by IN (SELECT value FROM json_each(:nodes)))
-- args_path: pairs of (JSON path, text); the value at every path must read as that text (a
-- string without its quotes, a number or true/false as written; a missing path or a null
-- reads as NULL, as PostgreSQL's #>> does).
AND (:arg_paths IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(:arg_paths) AS w
        WHERE (CASE json_type(args, json_extract(w.value, '$[0]'))
                   WHEN 'true' THEN 'true'
                   WHEN 'false' THEN 'false'
                   ELSE CAST(json_extract(args, json_extract(w.value, '$[0]')) AS TEXT) END)
              IS NOT json_extract(w.value, '$[1]')))
-- text: a scan of the JSON text of args and errors (no index serves a match anywhere in a text)
AND (:text_plain IS NULL
     OR args LIKE :text_plain ESCAPE '\' OR errors LIKE :text_plain ESCAPE '\'
     OR (:text_ascii IS NOT NULL
         AND (args LIKE :text_ascii ESCAPE '\' OR errors LIKE :text_ascii ESCAPE '\')))
-- id bounds, inclusive, never NULL in the condition: a rowid range, which a keyset page
-- (ORDER BY id ... LIMIT) walks from its cursor however deep the page
AND id >= coalesce(:min_id, 0)
AND id <= coalesce(:max_id, 9223372036854775807)

-- name: list_jobs_newest
SELECT * FROM jobsaga_jobs WHERE /*job_filter*/
ORDER BY id DESC LIMIT coalesce(:limit, -1) OFFSET :offset

-- name: list_jobs_oldest
SELECT * FROM jobsaga_jobs WHERE /*job_filter*/
ORDER BY id LIMIT coalesce(:limit, -1) OFFSET :offset

-- name: count_jobs
SELECT state, count(*) AS n FROM jobsaga_jobs WHERE /*job_filter*/ GROUP BY state

-- name: count_jobs_capped
-- How many jobs match, counting no further than cap (the dashboard says "10,000+" rather
-- than count a million rows on every refresh).
SELECT count(*) AS n FROM (SELECT 1 FROM jobsaga_jobs WHERE /*job_filter*/ LIMIT :cap)

-- name: select_targets
-- The jobs an operation will change, read in the operation's write transaction
-- (BEGIN IMMEDIATE), so nothing changes them between this read and the update.
SELECT id, state, queue, attempt, attempted_by FROM jobsaga_jobs
WHERE state IN (SELECT value FROM json_each(:eligible)) AND /*job_filter*/
ORDER BY id

-- name: cancel_ids
UPDATE jobsaga_jobs
SET state = 'cancelled', cancelled_at = :now,
    errors = json_insert(errors, '$[#]', json_object(
        'attempt', attempt, 'at', :at_text, 'kind', 'cancelled',
        'error', :error, 'traceback', ''))
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state IN ('available', 'scheduled', 'retryable', 'executing')

-- name: retry_ids
UPDATE jobsaga_jobs
SET state = 'available', scheduled_at = :now,
    max_attempts = CASE WHEN attempt >= max_attempts THEN attempt + 1 ELSE max_attempts END,
    completed_at = NULL, discarded_at = NULL, cancelled_at = NULL,
    -- A finished saga job retried by hand runs its saga again: its runs up to this attempt
    -- are not final for the attempts after it (workflow.sql, find_run_of_job).
    meta = CASE WHEN state IN ('completed', 'discarded', 'cancelled')
                THEN json_set(meta, '$.retried_after_attempt', attempt)
                ELSE meta END
WHERE id IN (SELECT value FROM json_each(:ids))
  AND state IN ('retryable', 'completed', 'discarded', 'cancelled')

-- name: delete_ids
DELETE FROM jobsaga_jobs
WHERE id IN (SELECT value FROM json_each(:ids)) AND state <> 'executing'

-- name: job_rows_for_node
-- A node's safety check of the jobs it is performing: anything no longer executing as this
-- attempt was cancelled, deleted or taken over, and its result would be ignored.
SELECT id, state, attempt, attempted_by FROM jobsaga_jobs
WHERE id IN (SELECT value FROM json_each(:ids))

-- name: set_paused
INSERT INTO jobsaga_queue_controls (queue, node, paused, updated_at)
VALUES (:queue, :node, :paused, :now)
ON CONFLICT (queue, node) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at

-- name: set_concurrency
INSERT INTO jobsaga_queue_controls (queue, node, concurrency, updated_at)
VALUES (:queue, :node, :concurrency, :now)
ON CONFLICT (queue, node) DO UPDATE
SET concurrency = excluded.concurrency, updated_at = excluded.updated_at

-- name: clear_node_paused
-- A control for every node is the latest word: per-node overrides of the same setting go.
UPDATE jobsaga_queue_controls SET paused = NULL, updated_at = :now
WHERE queue = :queue AND node <> ''

-- name: clear_node_concurrency
UPDATE jobsaga_queue_controls SET concurrency = NULL, updated_at = :now
WHERE queue = :queue AND node <> ''

-- name: drop_empty_controls
DELETE FROM jobsaga_queue_controls
WHERE queue = :queue AND paused IS NULL AND concurrency IS NULL

-- name: controls_for_node
SELECT queue, node, paused, concurrency FROM jobsaga_queue_controls WHERE node IN ('', :node)

-- name: all_controls
SELECT queue, node, paused, concurrency, updated_at FROM jobsaga_queue_controls
ORDER BY queue, node

-- name: live_nodes
-- The nodes whose own deadline has not passed: the one test of liveness, the complement of
-- the lifeline's (it rescues a node's jobs once expires_at < now). Each row's meta is the
-- node's last beat: its queues (limit, paused, running, health) and its held jobs.
SELECT name, started_at, heartbeat_at, expires_at, meta FROM jobsaga_nodes
WHERE expires_at >= :now
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
