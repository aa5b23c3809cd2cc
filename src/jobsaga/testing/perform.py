"""Run one worker's perform in a test, through the executor the runtime uses.

The job is built as an insert would build it (args and meta validated by ``Worker.new`` and
round-tripped through JSON), so a test cannot pass what production would refuse.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

from .. import _context
from ..app import App
from ..engines import IN_MEMORY_URL
from ..engines.base import inserted_job, utcnow
from ..errors import ConfigError, InvalidResult
from ..job import Job, JobSpec, JobState
from ..runtime.executor import NOT_RETURNED
from ..serialization import dumps
from ..worker import Worker
from .runner import NODE, Attempt, run_sync, runner

_ids = itertools.count(1)


def build_job(worker: type[Worker], args: Any = None, *, attempt: int = 1, **opts: Any) -> Job[Any]:
    """A job as ``insert`` would store it, with a distinct id and without a database."""
    return _job_from_spec(worker.new(args, **opts), attempt)


def _job_from_spec(spec: JobSpec, attempt: int) -> Job[Any]:
    """The job an insert of ``spec`` would store (the engines' own builder, its args and meta
    round-tripped through JSON as storing them does), then claimed as its ``attempt``-th try
    as ``Engine.claim`` marks it."""
    stored = dataclasses.replace(
        spec,
        args=json.loads(dumps(spec.args)),
        meta=json.loads(dumps(spec.meta)),
        max_attempts=max(spec.max_attempts, attempt),
    )
    now = utcnow()
    inserted = inserted_job(stored, next(_ids), now)
    return dataclasses.replace(
        inserted, state=JobState.EXECUTING, attempt=attempt, attempted_at=now, attempted_by=NODE
    )


def perform_job(
    worker: type[Worker], args: Any = None, *, app: App | None = None, attempt: int = 1, **opts: Any
) -> Any:
    """Run ``worker``'s perform once and return what it returned; exceptions are re-raised.

    The worker's timeout is enforced (``JobTimeout``), and a return value that a node would
    refuse as a result raises the ``InvalidResult`` the node records. ``opts`` are
    ``Worker.new``'s.

    Without ``app`` nothing touches a database: the job is built in memory, and a
    ``WorkflowWorker`` keeps its run log in memory. With ``app`` (migrated) the job is stored
    and its outcome written as a node writes it, so the test can look at the consequences:
    the follow-up jobs of ``Complete(enqueue=...)`` are inserted, a workflow's run log is in
    the database, and the job's row shows its state, errors and snooze counter.

    Call it from synchronous code; from a coroutine (an async test), ``await
    aperform_job(...)``, which runs an ``async def perform`` on the test's own event loop.
    """
    return run_sync(aperform_job(worker, args, app=app, attempt=attempt, **opts))


async def aperform_job(
    worker: type[Worker], args: Any = None, *, app: App | None = None, attempt: int = 1, **opts: Any
) -> Any:
    """The async form of :func:`perform_job`, for async tests."""
    if attempt < 1:
        raise ConfigError(f"attempt must be 1 or more, got {attempt}")
    spec = worker.new(args, **opts)
    done: Attempt | None
    if app is None:
        token = _context.run_log_in_memory.set(True)
        try:
            with runner(App(IN_MEMORY_URL, workers=[worker])) as run:
                done = await run.attempt(_job_from_spec(spec, attempt))
        finally:
            _context.run_log_in_memory.reset(token)
    else:
        if worker.name not in app.workers:
            app.register(worker)
        with runner(app) as run:
            done = await run.run_stored(_store(app, spec, attempt), attempt)
    assert done is not None, "the job was stored just now"
    return _returned(done)


def _store(app: App, spec: JobSpec, attempt: int) -> Job[Any]:
    """Store the job to perform, as a fresh row: a unique option must not hand back another
    job, and the attempt count is the test's."""
    fresh = dataclasses.replace(
        spec,
        max_attempts=max(spec.max_attempts, attempt),
        unique_key=None,
        unique_states=None,
        unique_period=None,
    )
    (stored,) = app.engine.insert([fresh])  # the engine's insert: stored as is in any mode
    return stored


def _returned(done: Attempt) -> Any:
    """What the test gets: what perform returned, or what the attempt failed with when the
    perform raised, timed out, or returned what the runtime refuses as a result. Which return
    values are refused is the runtime's own rule (``runtime.executor.classify``, which sets
    ``InvalidResult``), so a test is neither stricter nor looser than a node."""
    error, value = done.outcome.error, done.outcome.returned
    if error is not None and (isinstance(error, InvalidResult) or value is NOT_RETURNED):
        raise error
    return value
