-- name: heartbeat
-- Only the process holding the name (its token) may beat under it, unless the row expired.
INSERT INTO jobsaga_nodes (name, token, started_at, heartbeat_at, expires_at, meta)
VALUES (:name, :token, :started_at, :now, :expires_at, json(:meta))
ON CONFLICT (name) DO UPDATE
SET token = excluded.token, started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
    expires_at = excluded.expires_at, meta = excluded.meta
WHERE jobsaga_nodes.token = excluded.token OR jobsaga_nodes.expires_at < excluded.heartbeat_at
RETURNING name

-- name: node_row
SELECT token, heartbeat_at, expires_at, meta FROM jobsaga_nodes WHERE name = :name

-- name: take_node
-- Take a name from a process that stopped beating: compare-and-set on the row we watched.
UPDATE jobsaga_nodes
SET token = :token, started_at = :started_at, heartbeat_at = :now,
    expires_at = :expires_at, meta = json(:meta)
WHERE name = :name AND token = :old_token AND heartbeat_at = :old_heartbeat
RETURNING name

-- name: forget_node
DELETE FROM jobsaga_nodes WHERE name = :name AND token = :token

-- name: own_claims
-- The reconciler: jobs executing under this node's name, claimed before every fetch still
-- under way started. A plain read; the give-back below is guarded instead of locking.
SELECT id, attempt, max_attempts, attempted_by, queue, NULL AS heartbeat_at
FROM jobsaga_jobs
WHERE state = 'executing' AND attempted_by = :node AND attempted_at < :before
ORDER BY id

-- name: give_back_jobs
-- A claim whose reply never reached its node: the job never started, so the attempt is not
-- counted and it keeps its place in the fetch order. Guarded like an acknowledgement.
UPDATE jobsaga_jobs
SET state = 'available', attempt = jobsaga_jobs.attempt - 1
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt
    FROM json_each(:rows)
) AS r
WHERE jobsaga_jobs.id = r.id AND jobsaga_jobs.state = 'executing'
  AND jobsaga_jobs.attempt = r.attempt AND jobsaga_jobs.attempted_by = :node
RETURNING id, queue

-- name: expire_node
-- A stopped node whose last held jobs' threads returned: its jobs may be rescued at once. Its
-- meta now says when they returned, for the rescue's error.
UPDATE jobsaga_nodes SET expires_at = :now, meta = json(:meta)
WHERE name = :name AND token = :token

-- name: lead
-- Take the lease if it is free or expired, renew it if this process (token) holds it; no row
-- back means another node (perhaps another process on the file) leads.
INSERT INTO jobsaga_leader (scope, node, token, elected_at, expires_at)
VALUES (:scope, :node, :token, :now, :expires_at)
ON CONFLICT (scope) DO UPDATE
SET node = excluded.node, token = excluded.token,
    elected_at = CASE WHEN jobsaga_leader.token = excluded.token
                      THEN jobsaga_leader.elected_at ELSE excluded.elected_at END,
    expires_at = excluded.expires_at
WHERE jobsaga_leader.token = excluded.token OR jobsaga_leader.expires_at < excluded.elected_at
RETURNING node, elected_at

-- name: resign
DELETE FROM jobsaga_leader WHERE scope = :scope AND token = :token

-- name: current_leader
SELECT node, elected_at, expires_at FROM jobsaga_leader WHERE scope = :scope

-- name: find_orphans
-- The node's meta says whether a shutdown left the job executing (its "interrupted" notes).
SELECT j.id, j.attempt, j.max_attempts, j.attempted_by, j.attempted_at, j.queue, j.worker,
       n.heartbeat_at, n.meta AS node_meta
FROM jobsaga_jobs AS j
LEFT JOIN jobsaga_nodes AS n ON n.name = j.attempted_by
WHERE j.state = 'executing'
  AND ((n.name IS NULL AND (j.attempted_at IS NULL OR j.attempted_at < :unknown_before))
       OR n.expires_at < :now)
ORDER BY j.id
LIMIT :limit

-- name: find_own_orphans
-- Jobs that an earlier process under this node's name left executing when it died: with a
-- fixed node name (a StatefulSet pod, say) the new process's heartbeats would vouch for them.
SELECT j.id, j.attempt, j.max_attempts, j.attempted_by, j.attempted_at, j.queue, j.worker,
       NULL AS heartbeat_at
FROM jobsaga_jobs AS j
WHERE j.state = 'executing' AND j.attempted_by = :node AND j.attempted_at < :before
ORDER BY j.id
LIMIT :limit

-- name: rescue_jobs
UPDATE jobsaga_jobs
SET state = r.state,
    scheduled_at = CASE WHEN r.state = 'available' THEN r.at ELSE jobsaga_jobs.scheduled_at END,
    discarded_at = CASE WHEN r.state = 'discarded' THEN r.at ELSE jobsaga_jobs.discarded_at END,
    errors = json_insert(jobsaga_jobs.errors, '$[#]', json(r.error))
FROM (
    SELECT json_extract(value, '$.id') AS id, json_extract(value, '$.attempt') AS attempt,
           json_extract(value, '$.state') AS state, json_extract(value, '$.at') AS at,
           json_extract(value, '$.error') AS error
    FROM json_each(:rows)
) AS r
WHERE jobsaga_jobs.id = r.id AND jobsaga_jobs.state = 'executing'
  AND jobsaga_jobs.attempt = r.attempt
RETURNING *

-- name: forget_dead_nodes
DELETE FROM jobsaga_nodes
WHERE expires_at < :before
  AND NOT EXISTS (SELECT 1 FROM jobsaga_jobs AS j
                  WHERE j.state = 'executing' AND j.attempted_by = jobsaga_nodes.name)

-- name: prunable
state IN ('completed', 'cancelled', 'discarded')
  AND coalesce(CASE state WHEN 'completed' THEN completed_at
                          WHEN 'cancelled' THEN cancelled_at
                          ELSE discarded_at END, inserted_at) < :before

-- name: prune_jobs
-- The fragment "prunable" is the pruner's rule, written once for this and count_prunable: a
-- finished job that reached its state (completed, cancelled, discarded) before the given time.
-- INDEXED BY: without statistics SQLite prefers jobsaga_jobs_state_idx and reads every
-- finished job to find the few old ones.
DELETE FROM jobsaga_jobs
WHERE id IN (
    SELECT id FROM jobsaga_jobs INDEXED BY jobsaga_jobs_prune_idx
    WHERE /*prunable*/
    LIMIT :limit
)
RETURNING id

-- name: count_prunable
-- What prune_jobs would delete, per state: jobsaga jobs prune asks about this count.
SELECT state, count(*) AS n FROM jobsaga_jobs INDEXED BY jobsaga_jobs_prune_idx
WHERE /*prunable*/ GROUP BY state

-- name: cron_ticks
SELECT name, last_tick_at FROM jobsaga_cron

-- name: cron_register
INSERT INTO jobsaga_cron (name, expression, worker, detail, last_tick_at, updated_at)
VALUES (:name, :expression, :worker, json(:detail), :now, :now)
ON CONFLICT (name) DO UPDATE
SET expression = excluded.expression, worker = excluded.worker, detail = excluded.detail,
    updated_at = excluded.updated_at

-- name: cron_forget_others
DELETE FROM jobsaga_cron WHERE name NOT IN (SELECT value FROM json_each(:names))

-- name: cron_claim_tick
UPDATE jobsaga_cron SET last_tick_at = :tick, ticks = ticks + 1
WHERE name = :name AND last_tick_at < :tick
RETURNING name

-- name: cron_list
SELECT * FROM jobsaga_cron ORDER BY name
