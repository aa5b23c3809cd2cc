-- Bulk job operations in batches (SQLite): `jobsaga jobs cancel/retry/delete` change
-- thousands of jobs a batch per transaction, so progress can be shown and a batch committed
-- stays done if the command is stopped. /*job_filter*/ is operations.sql's filter.

-- name: select_target_batch
-- The next batch of jobs an operation will change, after the last id of the batch before,
-- read in the operation's write transaction (BEGIN IMMEDIATE) as select_targets is.
SELECT id, state, queue, attempt, attempted_by FROM jobsaga_jobs
WHERE state IN (SELECT value FROM json_each(:eligible)) AND id > :after AND /*job_filter*/
ORDER BY id
LIMIT :batch

-- name: states_of_ids
-- What became of ids an operator named and the operation did not change: missing, or in a
-- state the operation does not apply to.
SELECT id, state FROM jobsaga_jobs WHERE id IN (SELECT value FROM json_each(:ids)) ORDER BY id
