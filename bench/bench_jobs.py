"""Job-layer throughput: inserting no-op jobs one by one and in bulk, then processing them.

    .venv/bin/python bench/bench_jobs.py [--jobs N] [--engine sqlite|postgres]

Each run gets a fresh database: a new SQLite file in a temporary folder, or a new PostgreSQL
schema (dropped afterwards) on ``$JOBSAGA_BENCH_PG_URL`` (default: the test database). For
each engine it measures, in jobs per second:

- ``insert one by one``: ``app.insert`` N times (one transaction each);
- ``insert_all (bulk)``: one ``app.insert_all`` of N jobs;
- ``process async no-op``: one node, one queue at concurrency 10, ``async def perform``;
- ``process sync no-op``: the same with a plain ``def perform`` (run in the thread pool).

Processing time runs from the node's start until the last job is written as completed.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from common import CONCURRENCY, fresh_database, timed

from jobsaga import App, Job, Worker


class AsyncNoop(Worker, queue="async", name="bench.async_noop"):
    async def perform(self, job: Job[Any]) -> None:
        return None


class SyncNoop(Worker, queue="sync", name="bench.sync_noop"):
    def perform(self, job: Job[Any]) -> None:
        return None


def unfinished(app: App, queue: str) -> int:
    counts = app.engine.queue_counts().get(queue, {})
    return sum(n for state, n in counts.items() if state != "completed")


def process(app: App, queue: str) -> float:
    """Run one node on ``queue`` until every job in it is completed; seconds taken."""
    node = app.node({queue: CONCURRENCY}, poll_interval=0.05)
    started = time.perf_counter()
    with node.start_in_thread():
        while unfinished(app, queue):
            time.sleep(0.01)
        took = time.perf_counter() - started
    return took


def run(engine: str, jobs: int) -> list[tuple[str, str, int, float]]:
    results: list[tuple[str, str, int, float]] = []
    with fresh_database(engine) as url:
        app = App(url, workers=[AsyncNoop, SyncNoop])
        app.migrate()
        try:
            one_by_one = [AsyncNoop.new({"n": i}) for i in range(jobs)]
            took = timed(lambda: [app.insert(spec) for spec in one_by_one])
            results.append((engine, "insert one by one", jobs, took))

            bulk = [SyncNoop.new({"n": i}) for i in range(jobs)]
            took = timed(lambda: app.insert_all(bulk))
            results.append((engine, "insert_all (bulk)", jobs, took))

            took = process(app, "async")
            results.append((engine, f"process async no-op, concurrency {CONCURRENCY}", jobs, took))
            took = process(app, "sync")
            results.append((engine, f"process sync no-op, concurrency {CONCURRENCY}", jobs, took))
        finally:
            app.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase (10000)")
    parser.add_argument(
        "--engine", choices=["sqlite", "postgres"], help="one engine (default: both)"
    )
    options = parser.parse_args(argv)
    if options.jobs < 1:
        parser.error("--jobs must be >= 1")
    engines = [options.engine] if options.engine else ["sqlite", "postgres"]
    print(f"{'engine':<9} {'phase':<36} {'jobs':>7} {'seconds':>8} {'jobs/s':>8}")
    for engine in engines:
        for name, phase, count, took in run(engine, options.jobs):
            print(f"{name:<9} {phase:<36} {count:>7} {took:>8.2f} {count / took:>8.0f}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
