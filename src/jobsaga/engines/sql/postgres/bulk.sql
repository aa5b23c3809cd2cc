-- Bulk job operations in batches (PostgreSQL): `jobsaga jobs cancel/retry/delete` change
-- thousands of jobs a batch per transaction, so progress can be shown and a batch committed
-- stays done if the command is stopped. /*job_filter*/ is operations.sql's filter.

-- name: select_target_batch
-- The next batch of jobs an operation will change, after the last id of the batch before,
-- locked in id order as select_targets locks them.
SELECT id, state, queue, attempt, attempted_by FROM jobsaga_jobs
WHERE state = ANY(%(eligible)s::text[]) AND id > %(after)s AND /*job_filter*/
ORDER BY id
LIMIT %(batch)s
FOR UPDATE

-- name: states_of_ids
-- What became of ids an operator named and the operation did not change: missing, or in a
-- state the operation does not apply to.
SELECT id, state FROM jobsaga_jobs WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id
