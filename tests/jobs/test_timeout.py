"""A perform that overruns its timeout is a recorded failure, async or sync.

Python cannot stop a thread, so a sync perform that hangs leaves its thread behind: each
queue counts those, and past a cap stops fetching (the node reports itself unhealthy) until
they return (issue 9, fault 6: a hung perform at timeout 0.2 s and concurrency 2 had left 60
threads after 6 s).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from click.testing import CliRunner

from jobsaga import App, Job, JobState, Worker, _context
from jobsaga.cli.main import cli
from jobsaga.cli.queues import node_health
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, wait_final, wait_state

FAST = {"backoff": lambda attempt: 0.0}


class SlowAsync(Worker, timeout=0.2, max_attempts=2, **FAST):
    async def perform(self, job: Job[Any]) -> None:
        await asyncio.sleep(30)


class SlowSync(Worker, timeout=0.2, max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        SEEN.gate.wait(30)  # blocks its thread; released when the test ends


class PerJobTimeout(Worker, timeout=30, max_attempts=1):
    """``timeout(job)`` overrides the class option, here from the job's args."""

    def timeout(self, job: Job[Any]) -> float | None:
        return float(job.args["limit"])

    async def perform(self, job: Job[Any]) -> str:
        await asyncio.sleep(job.args["takes"])
        return "in time"


class NoLimit(Worker, timeout=None):
    async def perform(self, job: Job[Any]) -> None:
        await asyncio.sleep(0.3)


def node(app: App) -> Any:
    return app.node({"default": 5}, poll_interval=0.05, stage_interval=0.05).start_in_thread()


def test_async_overrun_is_a_failure(make_app: Callable[..., App]) -> None:
    app = make_app(SlowAsync)
    stored = app.insert(SlowAsync.new())
    started = time.monotonic()
    with node(app):
        done = wait_final(app, stored.id)
    assert time.monotonic() - started < 5
    assert done.state is JobState.DISCARDED
    assert [e["attempt"] for e in done.errors] == [1, 2]
    assert all(e["error"].startswith("JobTimeout:") for e in done.errors)
    assert "0.2s" in done.errors[0]["error"]


def test_sync_overrun_is_a_failure_while_the_thread_still_runs(
    make_app: Callable[..., App],
) -> None:
    app = make_app(SlowSync)
    stored = app.insert(SlowSync.new())
    with node(app):
        done = wait_final(app, stored.id, timeout=5)
        assert not SEEN.gate.is_set()  # recorded before the blocked perform returned
    assert done.state is JobState.DISCARDED
    assert done.errors[0]["error"].startswith("JobTimeout:")


def test_timeout_override_per_job(make_app: Callable[..., App]) -> None:
    app = make_app(PerJobTimeout)
    quick, slow = app.insert_all(
        [
            PerJobTimeout.new({"limit": 5, "takes": 0.05}),
            PerJobTimeout.new({"limit": 0.1, "takes": 10}),
        ]
    )
    with node(app):
        assert wait_final(app, quick.id).state is JobState.COMPLETED
        failed = wait_final(app, slow.id)
    assert failed.state is JobState.DISCARDED
    assert "0.1s" in failed.errors[0]["error"]


def test_no_timeout(make_app: Callable[..., App]) -> None:
    app = make_app(NoLimit)
    stored = app.insert(NoLimit.new())
    with node(app):
        assert wait_final(app, stored.id).state is JobState.COMPLETED


def test_timed_out_attempt_is_retried(make_app: Callable[..., App]) -> None:
    app = make_app(SlowAsync)
    stored = app.insert(SlowAsync.new(max_attempts=3))
    with node(app):
        wait_state(app, stored.id, JobState.DISCARDED)
    assert len(wait_final(app, stored.id).errors) == 3


class Quick(Worker, max_attempts=1):
    def perform(self, job: Job[Any]) -> str:
        return "done"


class OwnTimeout(Worker, max_attempts=1):
    """A perform whose own network call timed out: that error, not the worker's timeout."""

    def perform(self, job: Job[Any]) -> None:
        raise TimeoutError("socket read timed out")


def test_stuck_sync_threads_do_not_starve_the_queue(make_app: Callable[..., App]) -> None:
    """Under the cap on abandoned threads, stuck threads do not hold the pool's slots."""
    app = make_app(SlowSync, Quick)
    stuck = app.insert_all([SlowSync.new() for _ in range(6)])
    options = {"poll_interval": 0.05, "max_abandoned_threads": 10}
    with app.node({"default": 2}, **options).start_in_thread() as thread:
        assert thread.node.max_threads == 4  # fewer threads than there are stuck performs
        for job in stuck:
            assert wait_final(app, job.id).state is JobState.DISCARDED
        quick = app.insert_all([Quick.new() for _ in range(3)])
        assert [wait_final(app, job.id).state for job in quick] == [JobState.COMPLETED] * 3


def test_the_performs_own_timeout_error_is_not_the_workers_timeout(
    make_app: Callable[..., App],
) -> None:
    app = make_app(OwnTimeout)
    stored = app.insert(OwnTimeout.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.errors[0]["error"] == "TimeoutError: socket read timed out"


class Hangs(Worker, timeout=0.2, max_attempts=1):
    """Hangs until the test opens the gate (then returns at once)."""

    def perform(self, job: Job[Any]) -> None:
        SEEN.add(job.id)
        SEEN.gate.wait(30)


def job_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("jobsaga-job") and t.is_alive()]


def test_threads_of_hung_performs_are_capped_and_the_queue_resumes_when_they_return(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(Hangs)
    events: list[tuple[str, Mapping[str, Any], Mapping[str, Any]]] = []
    app.telemetry.attach(
        "health", ["queue.stalled", "queue.recovered"], lambda e, m, d: events.append((e, m, d))
    )
    stored = app.insert_all([Hangs.new() for _ in range(12)])
    options = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "rescue_after": 1.0}
    with app.node({"default": 2}, **options).start_in_thread() as thread:
        node = thread.node
        wait_until(lambda: not node.health()["healthy"], 5)
        time.sleep(1.0)  # five timeouts' worth: a leaking node would have started ten threads
        # The queue stalls when its second thread is abandoned (the cap is its limit, 2); a
        # job fetched into the slot the first one freed may still be running then, and
        # be abandoned too: at most cap + limit - 1 threads, never more.
        hung = len(SEEN.items())
        assert hung in (2, 3)
        assert node.health() == {
            "healthy": False,
            "stalled": {"default": {"abandoned_threads": hung, "cap": 2}},
        }
        # The hung threads, and at most the idle threads of the node's current pool.
        assert len(job_threads()) <= hung + node.max_threads
        assert [(e, m) for e, m, _ in events] == [
            ("queue.stalled", {"abandoned_threads": 2, "cap": 2})
        ]
        # The node's record says so, and so does `jobsaga queues`.
        wait_until(lambda: node_health(app)[node.name].get("healthy") is False)
        published = node_health(app)[node.name]["queues"]["default"]
        assert published["stalled"] and published["abandoned_threads"] == hung
        listed = CliRunner().invoke(cli, ["queues", "--url", db_url], catch_exceptions=False)
        assert listed.exit_code == 0, listed.output
        assert f"STALLED: {hung} thread(s) of timed-out performs still run (cap 2)" in (
            listed.output
        )
        assert f"UNHEALTHY node {node.name}: queue(s) default stopped fetching" in listed.output
        [row] = [line for line in listed.output.splitlines() if line.startswith(node.name)]
        assert "no (stalled)" in row and " yes " not in row  # FETCHING agrees with HEALTH
        as_json = CliRunner().invoke(cli, ["queues", "--json", "--url", db_url])
        [entry] = [n for q in json.loads(as_json.output) for n in q["nodes"]]
        assert entry["stalled"] is True and entry["abandoned_threads"] == hung

        SEEN.gate.set()  # the hung threads return: the queue fetches again
        done = [wait_final(app, j.id) for j in stored]
        assert node.health() == {"healthy": True, "stalled": {}}
    assert [e for e, _, _ in events] == ["queue.stalled", "queue.recovered"]
    states = sorted(j.state.value for j in done)
    assert states == ["completed"] * (12 - hung) + ["discarded"] * hung  # those timed out
    assert len(SEEN.items()) == 12


class UsesTheNodesThreads(Worker, timeout=0.2, max_attempts=1):
    """An async perform handing sync work to ``_context.job_threads``, as a saga's sync
    steps do: the node's bounded pool, counted for the attempt."""

    async def perform(self, job: Job[Any]) -> str:
        pool = _context.job_threads.get()
        assert pool is not None
        loop = asyncio.get_running_loop()
        name = await loop.run_in_executor(pool, lambda: threading.current_thread().name)
        SEEN.add(name)
        if job.args.get("hang"):
            await loop.run_in_executor(pool, SEEN.gate.wait, 30)
        return name


def test_sync_work_of_an_async_perform_runs_in_the_nodes_pool_and_counts(
    make_app: Callable[..., App],
) -> None:
    app = make_app(UsesTheNodesThreads)
    quick = app.insert(UsesTheNodesThreads.new())
    options = {"poll_interval": 0.05, "max_abandoned_threads": 1}
    with app.node({"default": 3}, **options).start_in_thread() as thread:
        assert wait_final(app, quick.id).state is JobState.COMPLETED
        hung = app.insert(UsesTheNodesThreads.new({"hang": True}))
        assert wait_final(app, hung.id).state is JobState.DISCARDED  # timed out
        wait_until(lambda: thread.node.producers["default"].stalled, 5)
        assert thread.node.producers["default"].abandoned_threads == 1
        SEEN.gate.set()
        wait_until(lambda: not thread.node.producers["default"].stalled, 5)
    assert [name.startswith("jobsaga-job") for name in SEEN.items()] == [True, True]
