"""Insert throughput on PostgreSQL (or SQLite): one by one, in bulk, unique, and async.

    .venv/bin/python bench/bench_insert.py [--runs 5] [--engine postgres|sqlite] [--big 100000]

Each run gets a fresh database (a new PostgreSQL schema on ``$JOBSAGA_BENCH_PG_URL``, default
the test database, or a new SQLite file) and measures, in jobs per second:

- ``insert one by one``: ``app.insert(spec)`` in a loop (2,000 jobs);
- ``ainsert one by one``: ``await app.ainsert(spec)`` in a loop (2,000 jobs);
- ``insert_all 10k`` and ``insert_all 100k`` (``--big``): one ``app.insert_all``;
- ``insert_all 10k unique``: 10,000 unique jobs (distinct keys) in one ``insert_all``;
- ``ainsert_all 10k``: one ``await app.ainsert_all``.

Specs are built before the clock starts (``Worker.new`` validates args; that cost belongs to
the caller and is measured apart as ``Worker.new``). Prints the median of ``--runs`` runs,
with the lowest and highest, and the machine's load average before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from common import fresh_database, spread

from jobsaga import App, Job, Worker

ONE_BY_ONE = 2_000
BULK = 10_000


class Noop(Worker, queue="bench", name="bench.insert_noop"):
    async def perform(self, job: Job[Any]) -> None:
        return None


class UniqueNoop(Worker, queue="bench", name="bench.insert_unique", unique={"period": None}):
    async def perform(self, job: Job[Any]) -> None:
        return None


def specs(count: int, start: int = 0, worker: type[Worker] = Noop) -> list[Any]:
    return [worker.new({"n": i, "user": f"u{i}"}) for i in range(start, start + count)]


def rate(count: int, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return count / (time.perf_counter() - started)


async def arate(count: int, fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    await fn()
    return count / (time.perf_counter() - started)


def one_run(engine: str, big: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    with fresh_database(engine) as url:
        app = App(url, workers=[Noop, UniqueNoop])
        app.migrate()
        try:
            app.insert_all(specs(10))  # warm up the pool and the channel
            figures["Worker.new"] = rate(BULK, lambda: specs(BULK))

            batch = specs(ONE_BY_ONE)
            figures["insert one by one"] = rate(
                ONE_BY_ONE, lambda: [app.insert(spec) for spec in batch]
            )

            async def async_phases() -> None:
                await app.ainsert(Noop.new({"warm": True}))
                batch = specs(ONE_BY_ONE)

                async def loop() -> None:
                    for spec in batch:
                        await app.ainsert(spec)

                figures["ainsert one by one"] = await arate(ONE_BY_ONE, loop)
                bulk = specs(BULK)
                figures["ainsert_all 10k"] = await arate(BULK, lambda: app.ainsert_all(bulk))

            asyncio.run(async_phases())

            bulk = specs(BULK)
            figures["insert_all 10k"] = rate(BULK, lambda: app.insert_all(bulk))
            unique = specs(BULK, worker=UniqueNoop)
            figures["insert_all 10k unique"] = rate(BULK, lambda: app.insert_all(unique))
            many = specs(big)
            figures[f"insert_all {big // 1000}k"] = rate(big, lambda: app.insert_all(many))
        finally:
            app.close()
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--big", type=int, default=100_000)
    options = parser.parse_args(argv)
    load_before = os.getloadavg()
    runs = [one_run(options.engine, options.big) for _ in range(options.runs)]
    load_after = os.getloadavg()
    print(
        f"{options.engine}, {options.runs} runs; load average before {load_before[0]:.2f}, "
        f"after {load_after[0]:.2f}"
    )
    print(f"{'phase':<24} {'median/s':>10} {'low':>10} {'high':>10}")
    for phase in runs[0]:
        median, low, high = spread([run[phase] for run in runs])
        print(f"{phase:<24} {median:>10,.0f} {low:>10,.0f} {high:>10,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
