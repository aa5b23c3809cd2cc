"""A plain ``def perform`` that overruns its timeout is given up at the timeout by the toolkit,
as a node gives it up: ``perform_job`` raises ``JobTimeout`` while the perform still runs in
its thread, and a drain goes on past performs that never return."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from jobsaga import App, Job, JobState, Worker
from jobsaga.errors import JobTimeout
from jobsaga.testing import drain_queue, perform_job
from tests.helpers import wait_until

WATCHDOG = 20.0
"""Seconds after which a blocked perform is let go in any case, so a toolkit that waits for
the perform (the bug) makes the test fail instead of hanging the suite."""


class Gate:
    """Where blocked performs wait until the test's teardown opens it."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.entered: list[int] = []
        self.left: list[int] = []

    def pass_through(self, n: int) -> None:
        with self.lock:
            self.entered.append(n)
        self.opened.wait(WATCHDOG)
        with self.lock:
            self.left.append(n)

    def running(self) -> list[int]:
        with self.lock:
            return [n for n in self.entered if n not in self.left]


GATE = Gate()


class Blocked(Worker, queue="blocked", timeout=0.05):
    def perform(self, job: Job[Any]) -> None:
        GATE.pass_through(job.args["n"])


class Quick(Worker, queue="blocked"):
    """No timeout: it can only run if the blocked performs left it a thread."""

    def perform(self, job: Job[Any]) -> str:
        return "done"


@pytest.fixture
def gate() -> Iterator[Gate]:
    global GATE
    GATE = Gate()
    yield GATE
    GATE.opened.set()  # the abandoned threads return, and end, before the next test
    wait_until(lambda: not GATE.running())


def test_perform_job_raises_at_the_timeout_while_the_perform_runs_on(gate: Gate) -> None:
    with pytest.raises(JobTimeout, match="timeout of 0.05s"):
        perform_job(Blocked, {"n": 1})
    assert gate.entered == [1]
    assert gate.running() == [1]  # given up, not waited for: it is still in its thread


def test_with_an_app_the_timed_out_attempt_is_written_at_once(app: App, gate: Gate) -> None:
    with pytest.raises(JobTimeout):
        perform_job(Blocked, {"n": 1}, app=app)
    (job,) = app.list_jobs()
    assert job.state is JobState.RETRYABLE
    assert job.errors[-1]["error"].startswith("JobTimeout: perform exceeded")
    assert gate.running() == [1]


def test_a_drain_goes_on_past_performs_that_never_return(app: App, gate: Gate) -> None:
    app.register(Blocked, Quick)
    for n in (1, 2, 3):  # more than the toolkit's pool has threads
        app.insert(Blocked.new({"n": n}))
    app.insert(Quick.new())
    counts = drain_queue(app, "blocked")
    assert (counts["retryable"], counts["completed"]) == (3, 1)
    assert gate.running() == [1, 2, 3]  # each started, none waited for
    assert [job.state for job in app.list_jobs(worker=Quick)] == [JobState.COMPLETED]
