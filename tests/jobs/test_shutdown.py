"""No job runs on two nodes at once across a shutdown (issue 9, fault 7).

Past the grace period a sync job used to be written back ``available`` (attempt refunded)
while its thread still ran: another node could start it at once, and a job that always
outlived the grace period never used up its attempts. Now a job whose user code still runs
in a thread stays ``executing`` under its node, which keeps heartbeating for it after it
stopped; when the thread returns, the job is rescued with that attempt counted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Job, JobState, Worker, _context
from jobsaga.plugins.lifeline import rescue_orphans
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, job, wait_final

RESCUE_AFTER = 1.0
FAST = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.1,
    "rescue_after": RESCUE_AFTER,
    "leader_lease": 0.5,
    "grace_period": 0.2,
}


class Blocks(Worker, timeout=None, max_attempts=3):
    """Its first attempt blocks its thread until the test opens the gate."""

    def perform(self, job: Job[Any]) -> None:
        SEEN.add(("start", job.attempted_by, job.attempt, time.monotonic()))
        if job.attempt == 1:
            SEEN.gate.wait(30)
        SEEN.add(("end", job.attempted_by, job.attempt, time.monotonic()))


class StepInAThread(Worker, timeout=None, max_attempts=3):
    """An async perform whose sync work (a saga's sync step, say) runs in the node's pool."""

    async def perform(self, job: Job[Any]) -> None:
        SEEN.add(("start", job.attempted_by, job.attempt, time.monotonic()))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_context.job_threads.get(), SEEN.gate.wait, 30)
        SEEN.add(("end", job.attempted_by, job.attempt, time.monotonic()))


def runs() -> list[tuple[str, int, float, float]]:
    """Each run as (node, attempt, started, ended); a run that never ended ends at inf."""
    started = {(n, a): t for kind, n, a, t in SEEN.items() if kind == "start"}
    ended = {(n, a): t for kind, n, a, t in SEEN.items() if kind == "end"}
    return sorted((n, a, t, ended.get((n, a), float("inf"))) for (n, a), t in started.items())


def test_a_sync_job_running_past_the_grace_period_never_runs_on_two_nodes_at_once(
    make_app: Callable[..., App],
) -> None:
    first, second = make_app(Blocks), make_app(Blocks)
    stored = first.insert(Blocks.new())
    one = first.node({"default": 2}, name="one", **FAST).start_in_thread()
    wait_until(lambda: SEEN.items())
    with second.node({"default": 2}, name="two", **FAST).start_in_thread() as two:
        one.stop()  # the grace period passes while the perform's thread still runs
        held = job(first, stored.id)
        assert held.state is JobState.EXECUTING and held.attempted_by == "one"
        assert one.node.lingering
        # The other node leads, rescues, fetches: not this job. Past the deadline a node
        # that went silent at its stop would have had, its lifeline looks twice more.
        time.sleep(1.5 * RESCUE_AFTER)
        lifeline = two.node.plugins.lifeline
        looked = lifeline.runs
        wait_until(lambda: lifeline.runs >= looked + 2, 5)
        assert job(first, stored.id).state is JobState.EXECUTING
        assert [(n, a) for n, a, _, _ in runs()] == [("one", 1)]

        SEEN.gate.set()  # the thread returns: the job is rescued, then runs on the other node
        done = wait_final(first, stored.id, timeout=5 * RESCUE_AFTER)
        wait_until(lambda: not one.node.lingering)
    assert done.state is JobState.COMPLETED and done.attempt == 2  # the held attempt counted
    assert [(e["attempt"], e["kind"]) for e in done.errors] == [(1, "orphaned")]
    # What cut the attempt short, and what ended the wait for its thread.
    error = done.errors[0]["error"]
    assert error.startswith(
        "interrupted by shutdown: node one stopped while the job's code still ran in a thread "
        "(grace period 0.2 s); rescued by node two after the job's thread returned (node one "
        "released it at "
    ), error
    (n1, a1, _, end1), (n2, a2, start2, _) = runs()
    assert (n1, a1, n2, a2) == ("one", 1, "two", 2)
    assert end1 < start2  # never at the same time


def test_sync_work_of_an_async_perform_holds_its_job_too(make_app: Callable[..., App]) -> None:
    """A saga's sync step in the node's pool cannot be cancelled either: the async perform
    is, but its job is held until the step's thread returns."""
    app = make_app(StepInAThread)
    stored = app.insert(StepInAThread.new())
    thread = app.node({"default": 2}, **FAST).start_in_thread()
    wait_until(lambda: SEEN.items())
    thread.stop()
    node = thread.node
    assert job(app, stored.id).state is JobState.EXECUTING
    assert node.lingering and sorted(node.held) == [stored.id]
    with pytest.raises(RuntimeError, match="cannot start again yet"):
        node.start_in_thread()
    assert node.lingering  # the refused start changed nothing
    assert job(app, stored.id).state is JobState.EXECUTING
    assert rescue_orphans(app, RESCUE_AFTER, "rescuer").jobs == []  # its row vouches for it
    SEEN.gate.set()
    wait_until(lambda: not node.lingering)
    [back] = wait_until(lambda: rescue_orphans(app, RESCUE_AFTER, "rescuer").jobs)
    assert back.id == stored.id and back.state is JobState.AVAILABLE and back.attempt == 1
    with app.node({"default": 2}, **FAST).start_in_thread():  # a new node runs it again
        done = wait_final(app, stored.id)
    assert done.state is JobState.COMPLETED and done.attempt == 2
    # The first attempt's coroutine was cancelled (its thread ran on, held); the second ran.
    ran = sorted((a, end < float("inf")) for _, a, _, end in runs())
    assert ran == [(1, False), (2, True)]


def test_a_node_started_again_under_its_name_says_its_held_job_was_interrupted(
    make_app: Callable[..., App],
) -> None:
    """The held job's thread returned, and before any lifeline looked the node (same name,
    as a pod under a fixed name) started again: it rescues the job at start, and says that
    its last run's shutdown interrupted it (not that a process died)."""
    app = make_app(Blocks)
    stored = app.insert(Blocks.new())
    node = app.node({"default": 2}, name="fixed", **FAST)
    thread = node.start_in_thread()
    wait_until(lambda: SEEN.items())
    thread.stop()
    assert node.lingering
    SEEN.gate.set()
    wait_until(lambda: not node.lingering)
    with node.start_in_thread():
        done = wait_final(app, stored.id)
    assert done.state is JobState.COMPLETED and done.attempt == 2
    [error] = done.errors
    assert error["kind"] == "orphaned" and error["attempt"] == 1
    assert error["error"] == (
        "interrupted by shutdown: node fixed stopped while the job's code still ran in a "
        "thread (grace period 0.2 s); rescued by node fixed when it started again under the "
        "same name"
    )


def test_an_async_job_cancelled_at_the_grace_period_is_written_back_at_once(
    make_app: Callable[..., App],
) -> None:
    """Its user code really stopped: the job is free at once, the attempt not counted."""

    app = make_app(Sleeps)
    stored = app.insert(Sleeps.new())
    with app.node({"default": 2}, **FAST).start_in_thread() as thread:
        wait_until(lambda: SEEN.items())
    assert not thread.node.lingering and thread.node.held == {}
    back = job(app, stored.id)
    assert back.state in (JobState.AVAILABLE, JobState.RETRYABLE) and back.attempt == 0
    assert [e["kind"] for e in back.errors] == ["interrupted"]


class Sleeps(Worker, timeout=None):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add(("start", job.attempted_by, job.attempt, time.monotonic()))
        await asyncio.sleep(30)


class FailsForGood(Worker, timeout=None, max_attempts=1):
    """Fails on its only attempt; its final-failure hook outlives the grace period."""

    def perform(self, job: Job[Any]) -> None:
        SEEN.add(("perform", job.attempt))
        raise RuntimeError("the last attempt failed")

    async def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        SEEN.add(("hook", job.attempt))
        await asyncio.sleep(30)


def test_a_shutdown_during_the_final_failure_hook_still_discards_the_job(
    make_app: Callable[..., App],
) -> None:
    """The perform had returned: its attempt counts. Written back as not started, the job
    ran once more past its max_attempts, and its hook ran twice."""
    app = make_app(FailsForGood)
    stored = app.insert(FailsForGood.new())
    with app.node({"default": 2}, **FAST).start_in_thread():
        wait_until(lambda: ("hook", 1) in SEEN.items())

    final = job(app, stored.id)
    assert final.state is JobState.DISCARDED and final.attempt == 1
    [error] = final.errors
    assert error["kind"] == "error" and "the last attempt failed" in error["error"]
    assert "interrupted" in error["final_failure_hook_error"]
    with app.node({"default": 2}, **FAST).start_in_thread():
        time.sleep(0.3)  # a node that would fetch it again, if it were available
    assert sorted(SEEN.items()) == [("hook", 1), ("perform", 1)]


def test_an_interrupted_attempt_says_so_in_its_record_and_its_event(
    make_app: Callable[..., App],
) -> None:
    """Not ``CancelledError: ``: the error names the shutdown and its grace period."""
    app = make_app(Sleeps)
    events: list[tuple[str, dict[str, Any]]] = []
    app.telemetry.attach("test", "job.exception", lambda e, m, meta: events.append((e, dict(meta))))
    stored = app.insert(Sleeps.new())
    with app.node({"default": 2}, name="n1", **FAST).start_in_thread():
        wait_until(lambda: SEEN.items())
    [(_, meta)] = events
    reason = "interrupted by shutdown: node n1 stopped before the job finished (grace period 0.2 s)"
    assert meta["kind"] == "interrupted" and meta["error"] == reason
    assert meta["state"] == "retryable" and meta["interrupted"] is True
    [record] = job(app, stored.id).errors
    assert record["error"] == reason


def test_a_forced_stop_ends_the_grace_period_at_once(make_app: Callable[..., App]) -> None:
    """``request_stop(force=True)`` (a second signal): running jobs are interrupted now, not
    at the end of a grace period of a minute; the record says it was forced."""
    app = make_app(Sleeps)
    stored = app.insert(Sleeps.new())
    thread = app.node({"default": 2}, **{**FAST, "grace_period": 60}).start_in_thread()
    wait_until(lambda: SEEN.items())
    node = thread.node
    node.request_stop()
    wait_until(lambda: node.stopping)
    assert thread.alive
    node.request_stop(force=True)
    thread.stop(timeout=10)
    back = job(app, stored.id)
    assert back.state in (JobState.AVAILABLE, JobState.RETRYABLE) and back.attempt == 0
    [record] = back.errors
    assert record["kind"] == "interrupted"
    assert record["error"].startswith(f"interrupted by a forced shutdown: node {node.name} ")
    assert record["error"].endswith("into its 60 s grace period")
