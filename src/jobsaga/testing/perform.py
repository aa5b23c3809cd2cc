"""Run one worker's perform in a test, through the executor the runtime uses.

The job is built as an insert would build it (args and meta validated by ``Worker.new`` and
round-tripped through JSON), so a test cannot pass what production would refuse.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..app import App
from ..engines.base import utcnow
from ..job import Job, JobState
from ..runtime.executor import Executor, InvalidResult, classify
from ..worker import Worker

_ids = itertools.count(1)
_VALID = (type(None), bool, int, float, str, list, dict, tuple)


def _run(coro: Any) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from async code: run on a private loop
        return pool.submit(asyncio.run, coro).result()


def placeholder(app: App) -> Callable[[str], str]:
    """The named-parameter syntax of the app's dialect (our SQL is written per dialect)."""
    if app.dialect == "postgres":
        return lambda name: f"%({name})s"
    return lambda name: f":{name}"


def build_job(worker: type[Worker], args: Any = None, *, attempt: int = 1, **opts: Any) -> Job[Any]:
    """A job as ``insert`` would store it, with a distinct id and without a database."""
    spec = worker.new(args, **opts)
    raw = json.loads(json.dumps(spec.args))
    meta = json.loads(json.dumps(spec.meta))
    now = utcnow()
    return Job(
        id=next(_ids),
        state=JobState.EXECUTING,
        queue=spec.queue,
        worker=spec.worker,
        args=raw,
        meta=meta,
        tags=spec.tags,
        errors=(),
        attempt=attempt,
        max_attempts=max(spec.max_attempts, attempt),
        priority=spec.priority,
        inserted_at=now,
        scheduled_at=now,
        attempted_at=now,
        attempted_by="jobsaga.testing",
    )


def perform_job(
    worker: type[Worker], args: Any = None, *, app: App | None = None, attempt: int = 1, **opts: Any
) -> Any:
    """Run ``worker``'s perform once and return what it returned; exceptions are re-raised.

    The worker's timeout is enforced (``JobTimeout``), and a return value that the runtime
    would not accept as a result raises ``InvalidResult``.
    """
    job = build_job(worker, args, attempt=attempt, **opts)
    app = app if app is not None else App("sqlite:///:memory:", workers=[worker])
    if worker.name not in app.workers:
        app.register(worker)
    with ThreadPoolExecutor(2) as threads:
        executor = Executor(app, "jobsaga.testing", threads)
        returned: list[Any] = []
        original = executor.call

        async def capture(fn: Any, *a: Any) -> Any:
            value = await original(fn, *a)
            returned.append(value)
            return value

        executor.call = capture  # type: ignore[method-assign]
        outcome, _typed, _worker = _run(executor.attempt(job))
    if outcome.error is not None:
        if isinstance(outcome.error, InvalidResult):
            raise outcome.error
        if not returned:  # raised by perform (or timed out): the test sees the exception
            raise outcome.error
    value = returned[0] if returned else None
    check_result(worker, value)
    classify(value)
    return value


def check_result(worker: type[Worker], value: Any) -> None:
    """Refuse results the runtime could not store or would misread."""
    from ..results import Cancel, Complete, Discard, Error, Snooze  # noqa: PLC0415

    if isinstance(value, (Cancel, Complete, Discard, Error, Snooze)):
        return
    if isinstance(value, type):
        raise InvalidResult(
            f"{worker.name}.perform returned the class {value.__name__}; return an instance"
        )
    if not isinstance(value, _VALID):
        raise InvalidResult(
            f"{worker.name}.perform returned {value!r} ({type(value).__name__}); expected None, "
            "a JSON value, or a result (Complete, Snooze, Discard, Cancel, Error)"
        )
