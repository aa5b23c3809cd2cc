"""Workflow engine overhead per step: a 100-step chain and a 1,000-step wide DAG of no-op steps.

Each configuration runs the workflow several times through the executor a WorkflowWorker
uses (without a job around it) and reports the median wall time per run and per step:

* ``memory``: ``persist=False``, no run log written: the executor's own cost.
* ``sqlite`` / ``postgres``: the run log written to the engine, as in production.

Steps are ``async def`` no-ops (pure engine overhead); ``--sync`` makes them plain ``def``,
adding the hop to a worker thread. Usage::

    .venv/bin/python bench/bench_workflow.py [--runs 5] [--sync] [--pg postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

import psycopg

from jobsaga import App, Workflow, step
from jobsaga.workflow.running import execute

PG_URL = os.environ.get("JOBSAGA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def chain(n: int, sync: bool) -> type[Workflow]:
    namespace: dict[str, Any] = {}
    for i in range(n):
        if i == 0:
            namespace["s0"] = step(_noop_first(sync), name="s0")
        else:
            namespace[f"s{i}"] = step(_noop(sync), name=f"s{i}", args={"prev": f"s{i - 1}"})
    return build(f"Chain{n}", namespace, name=f"bench.chain{n}")


def wide(n: int, sync: bool, concurrency: int) -> type[Workflow]:
    namespace: dict[str, Any] = {f"w{i}": step(_noop_first(sync), name=f"w{i}") for i in range(n)}
    namespace["join"] = step(_noop_first(sync), name="join", wait_for=[f"w{i}" for i in range(n)])
    return build(f"Wide{n}", namespace, name=f"bench.wide{n}", max_concurrency=concurrency)


def build(class_name: str, namespace: dict[str, Any], **options: Any) -> type[Workflow]:
    """A workflow class made at run time, as a class statement would make it."""
    meta: Any = type(Workflow)
    workflow: type[Workflow] = meta(class_name, (Workflow,), namespace, **options)
    return workflow


def _noop_first(sync: bool) -> Any:
    if sync:

        def first(self: Any) -> int:
            return 1

        return first

    async def afirst(self: Any) -> int:
        return 1

    return afirst


def _noop(sync: bool) -> Any:
    if sync:

        def nxt(self: Any, prev: int) -> int:
            return prev + 1

        return nxt

    async def anxt(self: Any, prev: int) -> int:
        return prev + 1

    return anxt


async def once(app: App, workflow: type[Workflow], persist: bool) -> Any:
    # What WorkflowWorker.perform runs, minus the job: no read-back of the log afterwards.
    return await execute(app, workflow, job=None, persist=persist, _test_context=True)


async def measure(app: App, workflow: type[Workflow], runs: int, persist: bool) -> list[float]:
    times = []
    await once(app, workflow, persist)  # warm up
    for _ in range(runs):
        start = time.perf_counter()
        result = await once(app, workflow, persist)
        times.append(time.perf_counter() - start)
        assert result.ok, result.error
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sync", action="store_true", help="plain def steps (threads)")
    parser.add_argument("--pg", default=PG_URL)
    parser.add_argument("--concurrency", type=int, default=8)
    options = parser.parse_args()

    workflows = [
        ("chain of 100", chain(100, options.sync), 100),
        ("wide DAG of 1,000", wide(1000, options.sync, options.concurrency), 1001),
    ]
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(options.pg, autocommit=True)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    folder = tempfile.mkdtemp()
    apps = {
        "memory": (App(f"sqlite:///{folder}/memory.db"), False),
        "sqlite": (App(f"sqlite:///{folder}/bench.db"), True),
        "postgres": (App(f"{options.pg}?options=-csearch_path%3D{schema}"), True),
    }
    kind = "sync (threads)" if options.sync else "async"
    print(f"workflow overhead, {kind} no-op steps, median of {options.runs} runs")
    print(f"{'workflow':<20} {'mode':<9} {'run ms':>9} {'us/step':>9} {'steps/s':>9}")
    try:
        for label, workflow, steps in workflows:
            for mode, (app, persist) in apps.items():
                app.migrate()
                times = asyncio.run(measure(app, workflow, options.runs, persist))
                median = statistics.median(times)
                print(
                    f"{label:<20} {mode:<9} {median * 1000:>9.1f} "
                    f"{median / steps * 1e6:>9.1f} {steps / median:>9.0f}"
                )
    finally:
        for app, _ in apps.values():
            app.close()
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
        admin.close()


if __name__ == "__main__":
    main()
