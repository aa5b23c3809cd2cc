-- An entry whose name changed (unnamed entries were once "<schedule> <worker>", and are now
-- named by a hash of schedule, worker and options) continues its old row: the leader that
-- records the crontab carries the old row's last tick over in the same transaction that
-- drops the old row, so a tick inserted under the old name is not inserted again under the
-- new one, and one missed is still caught up.

-- name: cron_take_over
-- The new row was just made (its last tick is "now"): it starts where the old one was.
UPDATE jobsaga_cron SET last_tick_at = %(since)s, ticks = %(ticks)s
WHERE name = %(name)s

-- name: cron_advance
-- Both rows exist (a leader of each version ran): the later last tick holds.
UPDATE jobsaga_cron SET last_tick_at = %(since)s
WHERE name = %(name)s AND last_tick_at < %(since)s
