"""Workflow cost: per-step overhead of the engine, and saga jobs per second through a node.

    .venv/bin/python bench/bench_workflow.py [--runs 5] [--kind async|sync|both]
                                             [--sagas 2000] [--concurrency 10] [--only ...]
                                             [--engine sqlite|postgres] [--shape ...]

Two measurements, for ``async def`` no-op steps and for plain ``def`` ones (run in threads):

* **Per-step overhead.** A 100-step chain and a 1,000-step wide DAG (plus a join) run
  several times through the executor a ``WorkflowWorker`` uses, without a job around it; the
  median wall time per run and per step, in three modes: ``memory`` (``persist=False``, no
  run log: the executor's own cost), ``sqlite`` and ``postgres`` (the run log written, as in
  production).
* **Saga jobs through a node.** N jobs of a ``WorkflowWorker`` whose saga is four no-op steps
  are inserted, then one node (one queue, ``--concurrency`` jobs in flight) runs them, timed
  from the node's start until every job is completed; run log on, on each engine. Two
  shapes: a chain (``a -> b -> c -> d``: four levels, so four commits each run waits for)
  and the diamond of bench_peers.py's saga phase (``a``, then ``b`` and ``c``, then ``d``).

Each measurement gets a fresh database: a new SQLite file, or a new schema on
``$JOBSAGA_BENCH_PG_URL`` (default: the test database), dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from common import CONCURRENCY, fresh_database

from jobsaga import App, Workflow, WorkflowWorker, step
from jobsaga.workflow.running import execute

SAGA_QUEUE = "sagas"
POLL_INTERVAL = 0.02
"""Seconds between looks at the queue while the node runs the saga jobs."""


def chain(n: int, sync: bool, prefix: str = "s") -> type[Workflow]:
    namespace: dict[str, Any] = {}
    for i in range(n):
        name = f"{prefix}{i}"
        if i == 0:
            namespace[name] = step(_noop_first(sync), name=name)
        else:
            namespace[name] = step(_noop(sync), name=name, args={"prev": f"{prefix}{i - 1}"})
    kind = "sync" if sync else "async"
    return build(f"Chain{n}", namespace, name=f"bench.chain{n}.{kind}")


def wide(n: int, sync: bool, concurrency: int) -> type[Workflow]:
    namespace: dict[str, Any] = {f"w{i}": step(_noop_first(sync), name=f"w{i}") for i in range(n)}
    namespace["join"] = step(_noop_first(sync), name="join", wait_for=[f"w{i}" for i in range(n)])
    kind = "sync" if sync else "async"
    return build(f"Wide{n}", namespace, name=f"bench.wide{n}.{kind}", max_concurrency=concurrency)


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


def diamond(sync: bool) -> type[Workflow]:
    """Four no-op steps: ``a``, then ``b`` and ``c`` side by side, then ``d`` (the saga of
    bench_peers.py's saga phase)."""
    namespace: dict[str, Any] = {
        "a": step(_noop_first(sync), name="a"),
        "b": step(_noop(sync), name="b", args={"prev": "a"}),
        "c": step(_noop(sync), name="c", args={"prev": "a"}),
        "d": step(_noop(sync), name="d", args={"prev": "b"}, wait_for=["c"]),
    }
    kind = "sync" if sync else "async"
    return build("Diamond", namespace, name=f"bench.diamond.{kind}")


SHAPES = {
    "chain": "a -> b -> c -> d",
    "diamond": "a -> (b, c) -> d",
}


def saga_worker(shape: str, sync: bool) -> type[WorkflowWorker]:
    """A worker whose saga is four no-op steps: a chain (four levels, the most commits a run
    of four steps waits for), or the diamond of bench_peers.py (three levels)."""
    saga = chain(4, sync, prefix="step") if shape == "chain" else diamond(sync)
    kind = "sync" if sync else "async"
    meta: Any = type(WorkflowWorker)
    worker: type[WorkflowWorker] = meta(
        f"Saga4{shape.title()}{kind.title()}",
        (WorkflowWorker,),
        {},
        workflow=saga,
        queue=SAGA_QUEUE,
        name=f"bench.saga4.{shape}.{kind}",
    )
    return worker


# --- per-step overhead --------------------------------------------------------------------


async def once(app: App, workflow: type[Workflow], persist: bool) -> Any:
    # What WorkflowWorker.perform runs, minus the job: no read-back of the log afterwards.
    return await execute(app, workflow, job=None, persist=persist, test_run=True)


async def measure(app: App, workflow: type[Workflow], runs: int, persist: bool) -> list[float]:
    times = []
    await once(app, workflow, persist)  # warm up
    for _ in range(runs):
        start = time.perf_counter()
        result = await once(app, workflow, persist)
        times.append(time.perf_counter() - start)
        assert result.ok, result.error
    return times


def overhead(sync: bool, runs: int, concurrency: int, modes: list[str]) -> None:
    workflows = [
        ("chain of 100", chain(100, sync), 100),
        ("wide DAG of 1,000", wide(1000, sync, concurrency), 1001),
    ]
    kind = "sync (threads)" if sync else "async"
    print(f"\nper-step overhead, {kind} no-op steps, median of {runs} runs")
    print(f"{'workflow':<20} {'mode':<9} {'run ms':>9} {'us/step':>9} {'steps/s':>9}")
    for label, workflow, steps in workflows:
        for mode in modes:
            engine = "sqlite" if mode == "memory" else mode
            with fresh_database(engine) as url, App(url) as app:
                app.migrate()
                times = asyncio.run(measure(app, workflow, runs, persist=mode != "memory"))
            median = statistics.median(times)
            print(
                f"{label:<20} {mode:<9} {median * 1000:>9.1f} "
                f"{median / steps * 1e6:>9.1f} {steps / median:>9.0f}"
            )
            sys.stdout.flush()


# --- saga jobs through a node -------------------------------------------------------------


def finished(app: App, job_id: int) -> bool:
    job = app.get_job(job_id)
    return job is not None and job.state.is_final


def unfinished(app: App) -> int:
    counts = app.engine.queue_counts().get(SAGA_QUEUE, {})
    return sum(n for state, n in counts.items() if state != "completed")


def saga_jobs(
    engine: str, shape: str, sync: bool, sagas: int, concurrency: int
) -> tuple[float, float]:
    """Seconds one node takes to run ``sagas`` four-step saga jobs, from its start until the
    last job is written completed, and the CPU seconds this process spent meanwhile (the
    node's threads and the poll; not the database server's)."""
    worker = saga_worker(shape, sync)
    with fresh_database(engine) as url, App(url, workers=[worker]) as app:
        app.migrate()
        jobs = app.insert_all([worker.new({}) for _ in range(sagas)])
        last = max(job.id for job in jobs)
        node = app.node({SAGA_QUEUE: concurrency}, poll_interval=0.05)
        started, cpu = time.perf_counter(), time.process_time()
        with node.start_in_thread():
            # Polled from this thread, which shares the node's interpreter lock (and, on
            # SQLite, its connection): the last job inserted, by its key, until it is done
            # (jobs run about in order), then the whole queue's count.
            while not finished(app, last) or unfinished(app):
                time.sleep(POLL_INTERVAL)
            took, cpu = time.perf_counter() - started, time.process_time() - cpu
        runs = app.engine.execute_one(
            "SELECT count(*) AS n FROM jobsaga_workflow_runs WHERE status = 'succeeded'"
        )
        assert int(runs[0]["n"]) == sagas, runs
    return took, cpu


def saga_throughput(
    sync: bool, sagas: int, concurrency: int, engines: list[str], repeat: int, shapes: list[str]
) -> None:
    kind = "sync (threads)" if sync else "async"
    print(
        f"\nsaga jobs through one node: 4 {kind} no-op steps, run log on, {sagas} jobs, "
        f"concurrency {concurrency}, median of {repeat}"
    )
    print(
        f"{'saga':<26} {'engine':<9} {'seconds':>8} {'sagas/s':>8}  {'range':<13} "
        f"{'cpu us/saga':>11}"
    )
    for shape in shapes:
        label = f"{shape} ({SHAPES[shape]})"
        for engine in engines:
            runs = [saga_jobs(engine, shape, sync, sagas, concurrency) for _ in range(repeat)]
            median = statistics.median(took for took, _ in runs)
            cpu = statistics.median(cpu for _, cpu in runs)
            rates = sorted(sagas / took for took, _ in runs)
            print(
                f"{label:<26} {engine:<9} {median:>8.2f} {sagas / median:>8.0f}  "
                f"{rates[0]:>5.0f}-{rates[-1]:<6.0f} {cpu / sagas * 1e6:>11.0f}"
            )
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per overhead figure (5)")
    parser.add_argument("--kind", choices=["async", "sync", "both"], default="both")
    parser.add_argument("--sagas", type=int, default=2000, help="saga jobs per run (2000)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=CONCURRENCY,
        help=f"saga jobs in flight on the node (default {CONCURRENCY})",
    )
    parser.add_argument(
        "--dag-concurrency", type=int, default=8, help="max_concurrency of the wide DAG (8)"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per sagas/s figure (3)")
    parser.add_argument(
        "--only",
        choices=["overhead", "sagas"],
        help="one measurement (default: both)",
    )
    parser.add_argument(
        "--engine", choices=["sqlite", "postgres"], help="one engine (default: both)"
    )
    parser.add_argument("--shape", choices=list(SHAPES), help="one saga shape (default: both)")
    options = parser.parse_args(argv)
    kinds = [False, True] if options.kind == "both" else [options.kind == "sync"]
    engines = [options.engine] if options.engine else ["sqlite", "postgres"]
    for sync in kinds:
        if options.only in (None, "overhead"):
            overhead(sync, options.runs, options.dag_concurrency, ["memory", *engines])
        if options.only in (None, "sagas"):
            shapes = [options.shape] if options.shape else list(SHAPES)
            saga_throughput(
                sync, options.sagas, options.concurrency, engines, options.repeat, shapes
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
