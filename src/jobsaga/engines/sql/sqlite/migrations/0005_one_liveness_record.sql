-- One liveness record per node. Each node's queues (limit, paused, running, health) now live
-- in its heartbeat row (jobsaga_nodes.meta), written by its one beat, early when a control or
-- its health changes, and read as live exactly while the node's own deadline (expires_at)
-- has not passed. The second table, with an expiry of its own, goes. Nothing moves: its rows
-- were a live status that every running node rewrites into its record at its next beat.
-- A node of an earlier version still writes that table: migrate, then restart the nodes.
DROP TABLE jobsaga_queue_nodes;
