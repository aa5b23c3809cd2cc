"""Shared by the examples: an app on a fresh SQLite file, and waiting for jobs to settle.

Not an example itself. Each example runs as ``python examples/<name>.py`` from the repository
root; Python puts ``examples/`` on the import path, which is how they find this module.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jobsaga import App, Job, JobState, Worker

_print_lock = threading.Lock()


def say(line: str) -> None:
    """Print one line from any thread without interleaving (sync performs run in a pool)."""
    with _print_lock:
        print(line, flush=True)


@contextmanager
def temporary_app(*workers: type[Worker], workflows: Iterable[Any] = ()) -> Iterator[App]:
    """An App on an embedded SQLite file in a temporary directory, migrated, closed after."""
    with tempfile.TemporaryDirectory(prefix="jobsaga-example-") as tmp:
        app = App(f"sqlite:///{Path(tmp) / 'jobs.db'}", workers=workers, workflows=workflows)
        app.migrate()
        try:
            yield app
        finally:
            app.close()


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until it holds; a timeout is an error (the example is broken)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not done within {timeout}s")
        time.sleep(0.02)


def settled(app: App, *jobs: Job[Any]) -> bool:
    """Whether ``jobs`` (default: every stored job) reached a final state."""
    if jobs:
        found = [app.get_job(job.id) for job in jobs]
        return all(job is not None and job.state.is_final for job in found)
    return all(JobState(state).is_final for state, n in app.count_jobs().items() if n)


def describe(job: Job[Any]) -> str:
    """One line: id, worker name, state, attempts, and the last error recorded on the job
    (every failed, discarded or cancelled attempt records one)."""
    line = f"job {job.id} {job.worker}: {job.state.value} after {job.attempt}/{job.max_attempts}"
    if job.errors:
        last = job.errors[-1]
        error = last["error"] if len(last["error"]) <= 90 else last["error"][:87] + "..."
        line += f" | attempt {last['attempt']}: {error}"
    return line
