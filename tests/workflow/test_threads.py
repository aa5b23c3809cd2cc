"""A saga's sync steps run within the node's thread limit (issue 9, fault 6, saga half).

Each run used to make a thread pool of its own (``max_concurrency`` threads), outside the
node's bound: N sagas at once could hold N x 8 threads. On a node, sync steps now go to the
node's bounded pool (``_context.job_threads``, set by the runtime for each attempt); the
test entry point, outside any node, keeps a pool per run. A pool the run does not own is
never shut down by it, and a sync final-failure hook (itself in a pool thread) rolls its run
back on a pool of its own, so it never waits on the pool it occupies.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from jobsaga import (
    App,
    Complete,
    Job,
    JobState,
    StepContext,
    Workflow,
    WorkflowError,
    WorkflowWorker,
    _context,
    step,
)
from jobsaga.testing import perform_job, run_workflow
from jobsaga.workflow import list_runs
from tests.helpers import wait_until


class Gauge:
    """How many step threads run at once, at most, and which threads ran them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.threads: set[str] = set()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)
            self.threads.add(threading.current_thread().name)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


GAUGE = Gauge()


@pytest.fixture(autouse=True)
def gauge() -> Iterator[Gauge]:
    GAUGE.__init__()  # type: ignore[misc]
    yield GAUGE


def busy(ctx: StepContext[Any]) -> str:
    GAUGE.enter()
    try:
        time.sleep(0.15)
    finally:
        GAUGE.leave()
    return ctx.step


class Fan(Workflow, name="threads.fan", inputs=["n"], max_concurrency=4):
    @step
    def w1(self, n: int, ctx: StepContext[Any]) -> str:
        return busy(ctx)

    @step
    def w2(self, n: int, ctx: StepContext[Any]) -> str:
        return busy(ctx)

    @step
    def w3(self, n: int, ctx: StepContext[Any]) -> str:
        return busy(ctx)

    @step
    def w4(self, n: int, ctx: StepContext[Any]) -> str:
        return busy(ctx)

    @step
    def join(self, w1: str, w2: str, w3: str, w4: str) -> list[str]:
        return [w1, w2, w3, w4]


class FanWorker(WorkflowWorker, workflow=Fan, queue="fan", name="threads.fan.worker"):
    pass


def test_sync_steps_share_the_nodes_bounded_pool(make_app: Callable[..., App]) -> None:
    """Two sagas at once, four sync steps wide each, on a node of two threads: never more
    than two step threads at once (each run's own pool allowed eight), all of the node's."""
    app = make_app(FanWorker)
    jobs = [app.insert(FanWorker.new({"n": n})) for n in range(2)]
    with app.node({"fan": 2}, max_threads=2, poll_interval=0.05).start_in_thread():
        wait_until(
            lambda: all(app.get_job(j.id).state is JobState.COMPLETED for j in jobs),  # type: ignore[union-attr]
            timeout=20,
        )
    assert GAUGE.peak == 2
    assert GAUGE.threads and all(name.startswith("jobsaga-job") for name in GAUGE.threads)
    assert not any(t.name.startswith("jobsaga-step") for t in threading.enumerate())


def test_the_pool_given_through_the_context_is_used_and_never_shut_down(app: App) -> None:
    """The contract with the runtime: whatever executor ``_context.job_threads`` holds runs
    the sync steps, and the run leaves it working for the node's next jobs."""
    app.register(FanWorker)
    pool = ThreadPoolExecutor(3, thread_name_prefix="given-pool")
    token = _context.job_threads.set(pool)
    try:
        returned = perform_job(FanWorker, {"n": 1}, app=app)
    finally:
        _context.job_threads.reset(token)
    assert isinstance(returned, Complete)
    assert [r.status for r in list_runs(app)] == ["succeeded"]
    assert GAUGE.threads and all(name.startswith("given-pool") for name in GAUGE.threads)
    assert GAUGE.peak <= 3
    assert pool.submit(lambda: "still open").result(timeout=5) == "still open"
    pool.shutdown()


def test_the_test_entry_point_uses_a_pool_of_its_own(app: App) -> None:
    result = run_workflow(Fan, {"n": 1}, app=app)
    assert result.ok and result.value == ["w1", "w2", "w3", "w4"]
    assert GAUGE.peak == 4  # max_concurrency threads of the run's own
    assert all(name.startswith("jobsaga-step") for name in GAUGE.threads)


# --- a sync final-failure hook rolls back on a pool of its own --------------------------

UNDONE: list[str] = []
HOOK_ERRORS: list[BaseException] = []


class Stuck(Workflow, name="threads.stuck", inputs=["order"]):
    @step
    def hold(self, order: str) -> str:
        return f"h-{order}"

    @hold.undo
    def unhold(self, result: str) -> None:  # sync: it needs a thread
        UNDONE.append(result)

    @step
    async def forever(self, hold: str) -> None:
        await asyncio.sleep(60)


class StuckWorker(
    WorkflowWorker, workflow=Stuck, queue="stuck", name="threads.stuck", max_attempts=1, timeout=0.3
):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:  # sync: a thread
        HOOK_ERRORS.append(error)


def test_a_sync_final_hook_on_a_one_thread_node_does_not_wait_on_its_own_pool(
    make_app: Callable[..., App],
) -> None:
    """The hook runs in the node's only thread and rolls the timed-out run back first; were
    the undo queued on that same pool, it would wait for ever on the hook's own thread."""
    UNDONE.clear()
    HOOK_ERRORS.clear()
    app = make_app(StuckWorker)
    job = app.insert(StuckWorker.new({"order": "o-1"}))
    with app.node({"stuck": 1}, max_threads=1, poll_interval=0.05).start_in_thread():
        wait_until(lambda: HOOK_ERRORS, timeout=10)
        wait_until(lambda: app.get_job(job.id).state is JobState.DISCARDED)  # type: ignore[union-attr]
    [error] = HOOK_ERRORS
    assert isinstance(error, WorkflowError) and error.undone == ("hold",)
    assert UNDONE == ["h-o-1"]
