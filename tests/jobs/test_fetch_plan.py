"""The fetch walks the fetch index in its order, whatever the table's statistics say.

Right after a burst of inserts the statistics still describe the table as it was (empty, or
full of finished jobs): a plan chosen on them once sorted every available row of the queue
for each fetch. These tests build that situation (no ANALYZE since the burst, autovacuum off
on PostgreSQL so it cannot refresh them meanwhile) and read the plan the database chooses.
"""

from __future__ import annotations

from typing import Any

from jobsaga import App, JobSpec

BURST = 100_000


def burst(app: App, engine_name: str) -> None:
    """BURST available jobs in one statement (through the API it would take the suite
    half a minute; the planner sees the same table either way)."""
    if engine_name == "postgres":
        now, n = "%(now)s", "%(n)s"
        numbers = f"generate_series(1, {n}) AS s(i)"
    else:
        now, n = ":now", ":n"
        numbers = f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s)"
    sql = (
        "INSERT INTO jobsaga_jobs (state, queue, worker, priority, inserted_at, scheduled_at) "
        f"SELECT 'available', 'q', 'W', mod(i, 3), {now}, {now} FROM {numbers}"
    )
    with app.engine.transaction() as tx:
        tx.execute(sql, {"n": BURST, "now": app.engine.time_param(app.clock())})


def fetch_plan(app: App, engine_name: str, limit: int) -> str:
    sql = app.engine.queries["fetch_jobs"]
    params: dict[str, Any] = {"queue": "q", "limit": limit, "node": "n"}
    params["now"] = app.engine.time_param(app.clock())
    with app.engine.transaction() as tx:
        if engine_name == "postgres":
            rows = tx.execute("EXPLAIN " + sql, params)
            return "\n".join(str(row["QUERY PLAN"]) for row in rows)
        rows = tx.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row["detail"]) for row in rows)


def raw(app: App, sql: str) -> None:
    with app.engine.transaction() as tx:
        tx.execute(sql)


def test_fetch_after_a_burst_walks_the_fetch_index_without_sorting(
    app: App, engine_name: str
) -> None:
    """The issue's case: 100,000 jobs in one burst into a table never analysed. (With
    jobsaga_jobs_state_idx present, PostgreSQL sorted every one of them for each fetch;
    below about 50,000 rows the indexes' heights tie and it chose well, so the burst is
    this large on purpose.)"""
    if engine_name == "postgres":
        raw(app, "ALTER TABLE jobsaga_jobs SET (autovacuum_enabled = false)")
    burst(app, engine_name)

    for limit in (10, 1000):
        plan = fetch_plan(app, engine_name, limit)
        assert "jobsaga_jobs_fetch_idx" in plan, plan
        if engine_name == "postgres":
            assert "Sort" not in plan, plan
        else:
            assert "TEMP B-TREE" not in plan, plan


def test_fetch_still_claims_in_fetch_order_after_a_burst(app: App) -> None:
    """What the plan must not change: priority first, then scheduled time, then id."""
    app.insert_all(
        [
            JobSpec(worker="W", queue="q", args={}, priority=i % 3, max_attempts=20)
            for i in range(300)
        ]
    )
    jobs = app.engine.fetch("q", 50, "n")
    keys = [(job.priority, job.scheduled_at, job.id) for job in jobs]
    assert len(jobs) == 50
    assert keys == sorted(keys)
    assert {job.priority for job in jobs} == {0}
