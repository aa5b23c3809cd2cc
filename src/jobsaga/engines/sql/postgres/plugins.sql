-- name: heartbeat
-- Only the process holding the name (its token) may beat under it, unless the row expired.
INSERT INTO jobsaga_nodes (name, token, started_at, heartbeat_at, expires_at, meta)
VALUES (%(name)s, %(token)s, %(started_at)s, %(now)s, %(expires_at)s, %(meta)s::jsonb)
ON CONFLICT (name) DO UPDATE
SET token = EXCLUDED.token, started_at = EXCLUDED.started_at, heartbeat_at = EXCLUDED.heartbeat_at,
    expires_at = EXCLUDED.expires_at, meta = EXCLUDED.meta
WHERE jobsaga_nodes.token = EXCLUDED.token OR jobsaga_nodes.expires_at < EXCLUDED.heartbeat_at
RETURNING name

-- name: node_row
SELECT token, heartbeat_at, expires_at, meta FROM jobsaga_nodes WHERE name = %(name)s

-- name: take_node
-- Take a name from a process that stopped beating: compare-and-set on the row we watched.
UPDATE jobsaga_nodes
SET token = %(token)s, started_at = %(started_at)s, heartbeat_at = %(now)s,
    expires_at = %(expires_at)s, meta = %(meta)s::jsonb
WHERE name = %(name)s AND token = %(old_token)s AND heartbeat_at = %(old_heartbeat)s
RETURNING name

-- name: forget_node
DELETE FROM jobsaga_nodes WHERE name = %(name)s AND token = %(token)s

-- name: own_claims
-- The reconciler: jobs executing under this node's name, claimed before every fetch still
-- under way started. A plain read; the give-back below is guarded instead of locking.
SELECT id, attempt, max_attempts, attempted_by, queue, NULL::timestamptz AS heartbeat_at
FROM jobsaga_jobs
WHERE state = 'executing' AND attempted_by = %(node)s AND attempted_at < %(before)s
ORDER BY id

-- name: give_back_jobs
-- A claim whose reply never reached its node: the job never started, so the attempt is not
-- counted and it keeps its place in the fetch order. Guarded like an acknowledgement.
UPDATE jobsaga_jobs AS j
SET state = 'available', attempt = j.attempt - 1
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(id bigint, attempt int)
WHERE j.id = r.id AND j.state = 'executing' AND j.attempt = r.attempt
  AND j.attempted_by = %(node)s
RETURNING j.id, j.queue

-- name: expire_node
-- A stopped node whose last held jobs' threads returned: its jobs may be rescued at once. Its
-- meta now says when they returned, for the rescue's error.
UPDATE jobsaga_nodes SET expires_at = %(now)s, meta = %(meta)s::jsonb
WHERE name = %(name)s AND token = %(token)s

-- name: lead
-- Take the lease if it is free or expired, renew it if this process (token) holds it; no row
-- back means another node leads. The row lock makes concurrent candidates queue up, so only
-- one wins. Renewal goes by token, not node name: two processes that share a name (a
-- misconfiguration) still cannot both lead.
INSERT INTO jobsaga_leader AS l (scope, node, token, elected_at, expires_at)
VALUES (%(scope)s, %(node)s, %(token)s, %(now)s, %(expires_at)s)
ON CONFLICT (scope) DO UPDATE
SET node = EXCLUDED.node, token = EXCLUDED.token,
    elected_at = CASE WHEN l.token = EXCLUDED.token THEN l.elected_at ELSE EXCLUDED.elected_at END,
    expires_at = EXCLUDED.expires_at
WHERE l.token = EXCLUDED.token OR l.expires_at < EXCLUDED.elected_at
RETURNING node, elected_at

-- name: resign
DELETE FROM jobsaga_leader WHERE scope = %(scope)s AND token = %(token)s

-- name: current_leader
SELECT node, elected_at, expires_at FROM jobsaga_leader WHERE scope = %(scope)s

-- name: find_orphans
-- Executing jobs whose node is past its own deadline, or has no row at all (it stopped, or
-- never heartbeated) and claimed the job more than rescue_after ago. The node's meta says
-- whether a shutdown left the job executing (its "interrupted" notes), for the error.
SELECT j.id, j.attempt, j.max_attempts, j.attempted_by, j.attempted_at, j.queue, j.worker,
       n.heartbeat_at, n.meta AS node_meta
FROM jobsaga_jobs AS j
LEFT JOIN jobsaga_nodes AS n ON n.name = j.attempted_by
WHERE j.state = 'executing'
  AND ((n.name IS NULL AND (j.attempted_at IS NULL OR j.attempted_at < %(unknown_before)s))
       OR n.expires_at < %(now)s)
ORDER BY j.id
LIMIT %(limit)s
FOR UPDATE OF j SKIP LOCKED

-- name: find_own_orphans
-- Jobs that an earlier process under this node's name left executing when it died: with a
-- fixed node name (a StatefulSet pod, say) the new process's heartbeats would vouch for them.
SELECT j.id, j.attempt, j.max_attempts, j.attempted_by, j.attempted_at, j.queue, j.worker,
       NULL::timestamptz AS heartbeat_at
FROM jobsaga_jobs AS j
WHERE j.state = 'executing' AND j.attempted_by = %(node)s AND j.attempted_at < %(before)s
ORDER BY j.id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED

-- name: rescue_jobs
-- The guard on state and attempt leaves alone a job that was acknowledged meanwhile.
UPDATE jobsaga_jobs AS j
SET state = r.state,
    scheduled_at = CASE WHEN r.state = 'available' THEN r.at ELSE j.scheduled_at END,
    discarded_at = CASE WHEN r.state = 'discarded' THEN r.at ELSE j.discarded_at END,
    errors = j.errors || jsonb_build_array(r.error)
FROM jsonb_to_recordset(%(rows)s::jsonb) AS r(
    id bigint, attempt int, state text, at timestamptz, error jsonb)
WHERE j.id = r.id AND j.state = 'executing' AND j.attempt = r.attempt
RETURNING j.*

-- name: forget_dead_nodes
DELETE FROM jobsaga_nodes AS n
WHERE n.expires_at < %(before)s
  AND NOT EXISTS (SELECT 1 FROM jobsaga_jobs AS j
                  WHERE j.state = 'executing' AND j.attempted_by = n.name)

-- name: prunable
state IN ('completed', 'cancelled', 'discarded')
  AND coalesce(CASE state WHEN 'completed' THEN completed_at
                          WHEN 'cancelled' THEN cancelled_at
                          ELSE discarded_at END, inserted_at) < %(before)s

-- name: prune_jobs
-- The fragment "prunable" is the pruner's rule, written once for this and count_prunable: a
-- finished job that reached its state (completed, cancelled, discarded) before the given time.
-- "= ANY(ARRAY(...))" makes the delete look up the picked ids by primary key; "IN (...)"
-- lets the planner hash-join against a scan of the whole table.
DELETE FROM jobsaga_jobs
WHERE id = ANY(ARRAY(
    SELECT id FROM jobsaga_jobs
    WHERE /*prunable*/
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
))
RETURNING id

-- name: count_prunable
-- What prune_jobs would delete, per state: jobsaga jobs prune asks about this count.
SELECT state, count(*) AS n FROM jobsaga_jobs WHERE /*prunable*/ GROUP BY state

-- name: cron_ticks
SELECT name, last_tick_at FROM jobsaga_cron

-- name: cron_register
INSERT INTO jobsaga_cron (name, expression, worker, detail, last_tick_at, updated_at)
VALUES (%(name)s, %(expression)s, %(worker)s, %(detail)s::jsonb, %(now)s, %(now)s)
ON CONFLICT (name) DO UPDATE
SET expression = EXCLUDED.expression, worker = EXCLUDED.worker, detail = EXCLUDED.detail,
    updated_at = EXCLUDED.updated_at

-- name: cron_forget_others
DELETE FROM jobsaga_cron
WHERE name NOT IN (SELECT jsonb_array_elements_text(%(names)s::jsonb))

-- name: cron_claim_tick
-- Compare-and-set: of all the nodes that try, one moves the tick forward and inserts its job.
UPDATE jobsaga_cron SET last_tick_at = %(tick)s, ticks = ticks + 1
WHERE name = %(name)s AND last_tick_at < %(tick)s
RETURNING name

-- name: cron_list
SELECT * FROM jobsaga_cron ORDER BY name
