"""Helpers for job-layer tests: run a node around a block, read rows, wait for states.

Workers used by tests live at module level (a worker's stable name is its import path), so
what a perform observes goes into :data:`SEEN`, cleared before each test.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from jobsaga import App, Job, JobState
from tests.helpers import wait_until


class Seen:
    """A thread-safe notebook that performs write to and tests read."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[Any] = []
        self.gate = threading.Event()

    def add(self, item: Any) -> None:
        with self.lock:
            self.events.append(item)

    def items(self) -> list[Any]:
        with self.lock:
            return list(self.events)

    def reset(self) -> None:
        with self.lock:
            self.events.clear()
        self.gate = threading.Event()


SEEN = Seen()


@pytest.fixture(autouse=True)
def seen() -> Iterator[Seen]:
    SEEN.reset()
    yield SEEN
    SEEN.gate.set()  # release any sync perform still waiting, so its thread ends
    SEEN.reset()


def param(app: App, name: str) -> str:
    """A named SQL parameter in the app's dialect."""
    return f"%({name})s" if app.engine.dialect == "postgres" else f":{name}"


def rows(
    app: App, where: str = "true", params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    with app.engine.transaction() as tx:
        return tx.execute(f"SELECT * FROM jobsaga_jobs WHERE {where} ORDER BY id", params)


def count_jobs(app: App) -> int:
    with app.engine.transaction() as tx:
        return int(tx.execute("SELECT count(*) AS n FROM jobsaga_jobs")[0]["n"])


def job(app: App, job_id: int) -> Job[Any]:
    found = app.get_job(job_id)
    assert found is not None, f"job {job_id} is gone"
    return found


def wait_state(app: App, job_id: int, *states: JobState, timeout: float = 10.0) -> Job[Any]:
    """Wait until the job is in one of ``states`` and return it."""

    def reached() -> Job[Any] | None:
        current = job(app, job_id)
        return current if current.state in states else None

    result: Job[Any] = wait_until(reached, timeout)
    return result


def wait_final(app: App, job_id: int, timeout: float = 10.0) -> Job[Any]:
    return wait_state(
        app, job_id, JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED, timeout=timeout
    )


@contextmanager
def sqlite_write_locked(url: str) -> Iterator[None]:
    """Another connection holds the SQLite file's write lock (BEGIN IMMEDIATE) meanwhile."""
    other = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()
