"""A slot is freed when its perform returns: the next job runs while the outcome is written.

The job whose outcome is not yet written stays ``executing`` (a crash then runs it again,
never loses it), and the number of outcomes waiting for their write is bounded.

PostgreSQL only: a row lock held by another session keeps an outcome from being written
without blocking the fetch (SKIP LOCKED). SQLite has one write lock for the whole file, so a
held write blocks the fetch too and the overlap cannot be shown there.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from jobsaga import App, Job, JobState, Worker
from tests.helpers import wait_until
from tests.jobs.conftest import wait_final

pytestmark = pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)

LOCKER: list[psycopg.Connection[Any]] = []
"""The test's connection, while jobs are to lock their rows in its transaction."""
STARTED: set[int] = set()
GUARD = threading.Lock()
"""Taken by a job while it locks its row, and by the release: no lock is taken after it."""


class LockOwnRow(Worker, queue="held"):
    """Locks its own row in the test's open transaction (when asked to), so its outcome
    cannot be written until the test lets go."""

    async def perform(self, job: Job[Any]) -> None:
        with GUARD:
            if LOCKER and job.args.get("lock", True):
                sql = "SELECT id FROM jobsaga_jobs WHERE id = %s FOR UPDATE"
                LOCKER[0].execute(sql, [job.id])
        STARTED.add(job.id)


@pytest.fixture
def locker(db_url: str) -> Iterator[Callable[[], None]]:
    """Yields the release: later jobs lock nothing, and the locks held go."""
    with psycopg.connect(db_url) as conn:
        LOCKER[:] = [conn]
        STARTED.clear()

        def release() -> None:
            with GUARD:
                LOCKER.clear()
                conn.rollback()

        try:
            yield release
        finally:
            release()  # never leave a node unable to write (and stop)


def executing(app: App) -> int:
    return app.count_jobs(state=["executing"]).get("executing", 0)


def test_the_next_job_runs_while_an_outcome_waits_for_its_write(
    make_app: Callable[..., App], locker: Callable[[], None]
) -> None:
    app = make_app(LockOwnRow)
    first = app.insert(LockOwnRow.new({"lock": True}))
    with app.node({"held": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: first.id in STARTED)
        second = app.insert(LockOwnRow.new({"lock": False}))
        wait_until(lambda: second.id in STARTED)  # the slot did not wait for the first write
        assert app.get_job(first.id).state is JobState.EXECUTING
        locker()
        assert wait_final(app, first.id).state is JobState.COMPLETED
        assert wait_final(app, second.id).state is JobState.COMPLETED


def test_outcomes_waiting_for_their_write_are_bounded(
    make_app: Callable[..., App], locker: Callable[[], None]
) -> None:
    """While outcomes cannot be written, the queue stops fetching once ``settle_cap`` of
    them wait, and goes on when they are written."""
    app = make_app(LockOwnRow)
    jobs = app.insert_all([LockOwnRow.new({"n": i}) for i in range(40)])
    node = app.node({"held": 2}, poll_interval=0.05, ack_batch=5)
    with node.start_in_thread():
        producer = node.producers["held"]
        assert producer.settle_cap == 5  # max(2 * limit, ack_batch)
        wait_until(lambda: producer.settling == 5)
        threading.Event().wait(0.5)  # would the queue fetch more meanwhile?
        assert executing(app) == len(STARTED) == 5
        locker()
        for job in jobs:
            assert wait_final(app, job.id).state is JobState.COMPLETED
