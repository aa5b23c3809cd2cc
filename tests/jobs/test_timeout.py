"""A perform that overruns its timeout is a recorded failure, async or sync."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from jobsaga import App, Job, JobState, Worker
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
