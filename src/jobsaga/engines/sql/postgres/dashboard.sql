-- The dashboard's Overview page (jobsaga.web.pages.overview), refreshed every few seconds: each
-- query reads a partial index, so the page costs the same over a table of a million finished
-- jobs as over an empty one. Finished jobs are read through jobsaga_jobs_prune_idx by a range
-- on its expression (the finish time), written out exactly as the index has it, with the
-- index's own state predicate: only the rows finished since %(since)s are read.

-- name: dashboard_finished_by_queue
-- Jobs finished since %(since)s, per queue and state (the unfinished are queue_state_counts).
SELECT queue, state, count(*) AS n FROM jobsaga_jobs
WHERE state IN ('completed', 'cancelled', 'discarded')
  AND coalesce(CASE state WHEN 'completed' THEN completed_at
                          WHEN 'cancelled' THEN cancelled_at
                          ELSE discarded_at END, inserted_at) >= %(since)s
GROUP BY queue, state

-- name: dashboard_throughput
-- Per minute since %(since)s (minute 0 the first): jobs completed, jobs discarded ("failed"),
-- and retries started (a job whose latest attempt, begun at attempted_at, is its second or
-- later). Finished jobs come from the prune index's range; retries of jobs still running or
-- waiting to retry from the executing and staging partial indexes.
WITH finished AS (
    SELECT state, completed_at, discarded_at, attempted_at, attempt FROM jobsaga_jobs
    WHERE state IN ('completed', 'cancelled', 'discarded')
      AND coalesce(CASE state WHEN 'completed' THEN completed_at
                              WHEN 'cancelled' THEN cancelled_at
                              ELSE discarded_at END, inserted_at) >= %(since)s
),
retries AS (
    SELECT attempted_at FROM finished WHERE attempt >= 2
    UNION ALL
    SELECT attempted_at FROM jobsaga_jobs WHERE state = 'executing' AND attempt >= 2
    UNION ALL
    SELECT attempted_at FROM jobsaga_jobs
    WHERE state IN ('scheduled', 'retryable') AND state = 'retryable' AND attempt >= 2
)
SELECT 'completed' AS kind,
       floor(extract(epoch FROM completed_at - %(since)s) / 60)::int AS minute, count(*) AS n
FROM finished WHERE state = 'completed' GROUP BY 2
UNION ALL
SELECT 'failed', floor(extract(epoch FROM discarded_at - %(since)s) / 60)::int, count(*)
FROM finished WHERE state = 'discarded' AND discarded_at IS NOT NULL GROUP BY 2
UNION ALL
SELECT 'retried', floor(extract(epoch FROM attempted_at - %(since)s) / 60)::int, count(*)
FROM retries WHERE attempted_at >= %(since)s GROUP BY 2
