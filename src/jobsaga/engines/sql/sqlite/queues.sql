-- What `jobsaga queues` lists besides the counts of queue_state_counts.

-- name: queue_names
-- Every queue that holds a job in any state, finished ones included, and nothing counted: no
-- index leads with queue for every state (the fetch index holds available jobs only), so
-- this reads the table once. A plain DISTINCT is the cheapest such read (measured over a
-- million finished jobs in six queues: about 0.25 s on either engine, against 0.3 s for
-- PostgreSQL and 1.1 s for SQLite to count them per queue and state).
SELECT DISTINCT queue FROM jobsaga_jobs

-- name: known_node_names
-- The nodes a control may name: those with a heartbeat record (live, or dead and not yet
-- forgotten) and those a control already names (so it can be lifted after the node is gone).
SELECT name FROM jobsaga_nodes
UNION
SELECT node AS name FROM jobsaga_queue_controls WHERE node <> ''
