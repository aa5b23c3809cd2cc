"""Workflow cost: per-step overhead of the engine, and saga jobs per second through a node.

    .venv/bin/python bench/bench_workflow.py [--runs 5] [--kind async|sync|both]
                                             [--sagas 2000] [--concurrency 10] [--only ...]
                                             [--engine sqlite|postgres] [--shape ...]
                                             [--workflows flat|composed|both]

Two measurements, for ``async def`` no-op steps and for plain ``def`` ones (run in threads):

* **Per-step overhead.** A 100-step chain and a 1,000-step wide DAG (plus a join) run
  several times through the executor a ``WorkflowWorker`` uses, without a job around it; the
  median wall time per run and per step, in three modes: ``memory`` (``persist=False``, no
  run log: the executor's own cost), ``sqlite`` and ``postgres`` (the run log written, as in
  production).
* **Composition, beside the flat figures.** The same measurement for composed workflows,
  each measured in the same minutes, mode and database settings as the flat workflow it is
  compared with (``x flat``: its cost per step over the flat one's): a ``Map`` over 1,000
  elements whose body is one no-op step, and one whose body is a chain of two (per element
  step, beside the wide DAG of 1,000 and beside 1,000 two-step chains side by side); 100 ``compose`` steps side by side, each running a
  child workflow of one no-op step (per child run, beside a wide DAG of 100), and a chain of
  100 ``compose`` steps, each child handed its predecessor's result (beside the chain of
  100). Every shape ends in a join step, as the wide DAG does.
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
from dataclasses import dataclass
from typing import Any

from common import CONCURRENCY, fresh_database

from jobsaga import App, Map, Workflow, WorkflowWorker, compose, step
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


def pairs(n: int, sync: bool, concurrency: int) -> type[Workflow]:
    """``n`` chains of two steps side by side (``a{i} -> b{i}``), then a join: the flat
    workflow a map of a two-step body unrolls to."""
    namespace: dict[str, Any] = {}
    for i in range(n):
        namespace[f"a{i}"] = step(_noop_first(sync), name=f"a{i}")
        namespace[f"b{i}"] = step(_noop(sync), name=f"b{i}", args={"prev": f"a{i}"})
    namespace["join"] = step(_noop_first(sync), name="join", wait_for=[f"b{i}" for i in range(n)])
    kind = "sync" if sync else "async"
    return build(f"Pairs{n}", namespace, name=f"bench.pairs{n}.{kind}", max_concurrency=concurrency)


def mapped(n: int, body: int, sync: bool, concurrency: int) -> type[Workflow]:
    """A map over the ``n`` numbers of its input ``items``, whose body is a chain of ``body``
    no-op steps, then a join of the map's result (the wide DAG's shape, the steps inside a
    map)."""
    inner: dict[str, Any] = {"e0": step(_noop(sync), name="e0", args={"prev": "item"})}
    for i in range(1, body):
        inner[f"e{i}"] = step(_noop(sync), name=f"e{i}", args={"prev": f"e{i - 1}"})
    each = type("each", (Map,), inner, over="items", element="item")
    namespace: dict[str, Any] = {
        "each": each,
        "join": step(_noop_first(sync), name="join", wait_for=["each"]),
    }
    kind = "sync" if sync else "async"
    return build(
        f"Map{n}x{body}",
        namespace,
        name=f"bench.map{n}x{body}.{kind}",
        inputs=["items"],
        max_concurrency=concurrency,
    )


def composed_wide(n: int, sync: bool, concurrency: int) -> type[Workflow]:
    """``n`` compose steps side by side, each a child run of a one-step workflow, then a join
    (the wide DAG's shape, each step a child run)."""
    kind = "sync" if sync else "async"
    child = build("Child", {"c": step(_noop_first(sync), name="c")}, name=f"bench.child.{kind}")
    namespace: dict[str, Any] = {f"w{i}": compose(child) for i in range(n)}
    namespace["join"] = step(_noop_first(sync), name="join", wait_for=[f"w{i}" for i in range(n)])
    return build(
        f"ComposeWide{n}",
        namespace,
        name=f"bench.compose_wide{n}.{kind}",
        max_concurrency=concurrency,
    )


def composed_chain(n: int, sync: bool) -> type[Workflow]:
    """A chain of ``n`` compose steps, each a child run of a one-step workflow handed its
    predecessor's result (the chain's shape, each step a child run)."""
    kind = "sync" if sync else "async"
    first = build("First", {"c": step(_noop_first(sync), name="c")}, name=f"bench.first.{kind}")
    child = build(
        "Next",
        {"c": step(_noop(sync), name="c")},
        name=f"bench.next.{kind}",
        inputs=["prev"],
    )
    namespace: dict[str, Any] = {"s0": compose(first)}
    for i in range(1, n):
        namespace[f"s{i}"] = compose(child, inputs={"prev": f"s{i - 1}"})
    return build(f"ComposeChain{n}", namespace, name=f"bench.compose_chain{n}.{kind}")


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


@dataclass(frozen=True)
class Shape:
    """One workflow of the overhead table: what it counts its cost per (``steps`` of them,
    each a ``unit``) and the flat workflow it is compared with (by label), if any."""

    label: str
    workflow: type[Workflow]
    steps: int
    unit: str = "step"
    inputs: dict[str, Any] | None = None
    flat: str | None = None


async def once(
    app: App, workflow: type[Workflow], persist: bool, inputs: dict[str, Any] | None
) -> Any:
    # What WorkflowWorker.perform runs, minus the job: no read-back of the log afterwards.
    return await execute(app, workflow, inputs, job=None, persist=persist, test_run=True)


async def measure(
    app: App,
    workflow: type[Workflow],
    runs: int,
    persist: bool,
    inputs: dict[str, Any] | None = None,
) -> list[float]:
    times = []
    await once(app, workflow, persist, inputs)  # warm up
    for _ in range(runs):
        start = time.perf_counter()
        result = await once(app, workflow, persist, inputs)
        times.append(time.perf_counter() - start)
        assert result.ok, result.error
    return times


def flat_groups(sync: bool, concurrency: int) -> list[list[Shape]]:
    return [
        [Shape("chain of 100", chain(100, sync), 100)],
        [Shape("wide DAG of 1,000", wide(1000, sync, concurrency), 1001)],
    ]


def composed_groups(sync: bool, concurrency: int) -> list[list[Shape]]:
    """Each composed workflow beside the flat one it is compared with, measured in a row."""
    items = {"items": list(range(1000))}
    wide1000 = "wide DAG of 1,000"
    pairs1000 = "1,000 pairs a->b"
    return [
        [
            Shape(wide1000, wide(1000, sync, concurrency), 1001),
            # 1,000 element steps, plus the join
            Shape(
                "map 1,000 x 1 step",
                mapped(1000, 1, sync, concurrency),
                1001,
                inputs=items,
                flat=wide1000,
            ),
        ],
        [
            Shape(pairs1000, pairs(1000, sync, concurrency), 2001),
            Shape(
                "map 1,000 x 2 steps",
                mapped(1000, 2, sync, concurrency),
                2001,
                inputs=items,
                flat=pairs1000,
            ),
        ],
        [
            Shape("wide DAG of 100", wide(100, sync, concurrency), 101),
            # per child run (each one step), the join counted as one more
            Shape(
                "compose 100 wide",
                composed_wide(100, sync, concurrency),
                101,
                "child",
                flat="wide DAG of 100",
            ),
        ],
        [
            Shape("chain of 100", chain(100, sync), 100),
            Shape(
                "compose chain 100", composed_chain(100, sync), 100, "child", flat="chain of 100"
            ),
        ],
    ]


def overhead(
    sync: bool, runs: int, concurrency: int, modes: list[str], workflows: str = "flat"
) -> None:
    groups = flat_groups(sync, concurrency) if workflows == "flat" else []
    if workflows in ("composed", "both"):
        groups += composed_groups(sync, concurrency)
    kind = "sync (threads)" if sync else "async"
    print(f"\nper-step overhead, {kind} no-op steps, median of {runs} runs")
    print(f"{'workflow':<20} {'mode':<9} {'run ms':>9} {'us/step':>9} {'steps/s':>9} {'x flat':>7}")
    for group in groups:
        for mode in modes:  # a composed shape right after its flat one, mode by mode
            engine = "sqlite" if mode == "memory" else mode
            per_step: dict[str, float] = {}
            for shape in group:
                with fresh_database(engine) as url, App(url) as app:
                    app.migrate()
                    persist = mode != "memory"
                    times = asyncio.run(measure(app, shape.workflow, runs, persist, shape.inputs))
                median = statistics.median(times)
                per_step[shape.label] = median / shape.steps
                ratio = ""
                if shape.flat in per_step:
                    ratio = f"{per_step[shape.label] / per_step[shape.flat]:.2f}"
                print(
                    f"{shape.label:<20} {mode:<9} {median * 1000:>9.1f} "
                    f"{median / shape.steps * 1e6:>9.1f} {shape.steps / median:>9.0f} "
                    f"{ratio:>7}" + (f"  (us per {shape.unit})" if shape.unit != "step" else "")
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
    parser.add_argument(
        "--workflows",
        choices=["flat", "composed", "both"],
        default="both",
        help="overhead of flat workflows, of composed ones beside their flat peers, or both",
    )
    options = parser.parse_args(argv)
    kinds = [False, True] if options.kind == "both" else [options.kind == "sync"]
    engines = [options.engine] if options.engine else ["sqlite", "postgres"]
    for sync in kinds:
        if options.only in (None, "overhead"):
            modes = ["memory", *engines]
            overhead(sync, options.runs, options.dag_concurrency, modes, options.workflows)
        if options.only in (None, "sagas"):
            shapes = [options.shape] if options.shape else list(SHAPES)
            saga_throughput(
                sync, options.sagas, options.concurrency, engines, options.repeat, shapes
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
