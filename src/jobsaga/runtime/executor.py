"""Run one attempt of a job and turn what happened into an :class:`~jobsaga.engines.Ack`.

Plain ``def perform`` runs in the node's bounded thread pool and ``async def perform`` on the
event loop, so sync user code never blocks other jobs. A sync perform that overruns its
timeout is recorded as failed at once, but Python cannot stop the thread: it runs on until it
returns, whatever it returns is ignored, and the node gives new work a fresh pool so the
stuck thread's slot is not lost.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import math
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import _context
from ..engines import Ack
from ..errors import JobsagaError, JobTimeout
from ..job import Job, JobSpec, JobState
from ..results import Cancel, Complete, Discard, Error, Snooze
from ..worker import Worker

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("jobsaga.runtime.executor")


class PerformError(JobsagaError):
    """A perform returned ``Error(reason)``; handed to ``on_final_failure`` like an exception."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidResult(JobsagaError, TypeError):
    """A perform returned something that is not a result (a class instead of an instance...)."""


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, before it is written."""

    state: JobState
    result: Any = None
    error: BaseException | None = None
    snooze: float | None = None
    reason: str | None = None
    enqueue: tuple[JobSpec, ...] = ()


def error_record(
    job: Job[Any], at: Any, error: BaseException | str, *, kind: str
) -> dict[str, Any]:
    if isinstance(error, BaseException):
        text = f"{type(error).__name__}: {error}"
        tb = "".join(traceback.format_exception(error)) if error.__traceback__ else ""
    else:
        text, tb = error, ""
    return {
        "attempt": job.attempt,
        "at": at.isoformat(),
        "kind": kind,
        "error": text,
        "traceback": tb,
    }


def classify(result: Any) -> Outcome:
    """Map a perform's return value to an outcome; anything else completes the job."""
    if isinstance(result, Complete):
        return Outcome(JobState.COMPLETED, result=result.value, enqueue=result.enqueue)
    if isinstance(result, Snooze):
        return Outcome(JobState.SCHEDULED, snooze=float(result.seconds))
    if isinstance(result, Discard):
        return Outcome(JobState.DISCARDED, reason=result.reason)
    if isinstance(result, Cancel):
        return Outcome(JobState.CANCELLED, reason=result.reason)
    if isinstance(result, Error):
        return Outcome(JobState.RETRYABLE, error=PerformError(result.reason))
    if isinstance(result, type) and result in (Snooze, Discard, Cancel, Complete, Error):
        return Outcome(
            JobState.RETRYABLE,
            error=InvalidResult(
                f"perform returned the class {result.__name__}; return an instance"
            ),
        )
    return Outcome(JobState.COMPLETED, result=result)


class Executor:
    def __init__(self, app: App, node_name: str, threads: ThreadPoolExecutor) -> None:
        self.app = app
        self.node_name = node_name
        self.threads = threads
        self._instances: dict[type[Worker], Worker] = {}
        self.on_thread_abandoned: Callable[[], None] | None = None
        """Called when a sync perform times out and its thread cannot be taken back."""

    def instance(self, worker_cls: type[Worker]) -> Worker:
        found = self._instances.get(worker_cls)
        if found is None:
            found = self._instances[worker_cls] = worker_cls()
        return found

    async def call(self, fn: Any, *args: Any) -> Any:
        """Call user code: coroutine functions on the loop, plain functions in the pool."""
        _context.current_app.set(self.app)  # user code may need its app (WorkflowWorker does)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        ctx = contextvars.copy_context()
        result = await asyncio.get_running_loop().run_in_executor(self.threads, ctx.run, fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def attempt(self, job: Job[Any]) -> tuple[Outcome, Job[Any], Worker | None]:
        """Run the perform; never raises except for cancellation."""
        try:
            worker_cls = self.app.worker_for(job.worker)
            worker = self.instance(worker_cls)
            typed = job.with_args(worker_cls.parse_args(job.args))
        except Exception as exc:  # unknown worker, args no longer valid: a failed attempt
            return Outcome(JobState.RETRYABLE, error=exc), job, None
        scope: asyncio.Timeout | None = None
        try:
            timeout = worker.timeout(typed)
            async with asyncio.timeout(timeout) as scope:
                result = await self.call(worker.perform, typed)
        except TimeoutError as exc:
            if scope is None or not scope.expired():  # the perform's own TimeoutError
                return Outcome(JobState.RETRYABLE, error=exc), typed, worker
            err = JobTimeout(f"perform exceeded the worker's timeout of {timeout}s")
            err.__cause__ = exc
            if not inspect.iscoroutinefunction(worker.perform):
                self._abandon_thread(typed)
            return Outcome(JobState.RETRYABLE, error=err), typed, worker
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Outcome(JobState.RETRYABLE, error=exc), typed, worker
        return classify(result), typed, worker

    def _abandon_thread(self, job: Job[Any]) -> None:
        """A sync perform overran its timeout: Python cannot stop its thread, which keeps a
        pool slot until perform returns. Tell the node, which hands new work to a fresh pool,
        so a perform that hangs cannot starve the queues or the final-failure hooks."""
        log.warning(
            "job %d (%s) overran its timeout; its thread keeps running until perform returns",
            job.id,
            job.worker,
        )
        if self.on_thread_abandoned is not None:
            self.on_thread_abandoned()

    async def finish(self, job: Job[Any], outcome: Outcome, worker: Worker | None) -> Ack:
        """Turn an outcome into the row update; runs the final-failure hook when due."""
        now = self.app.clock()
        if outcome.state is JobState.COMPLETED:
            return Ack(job.id, job.attempt, JobState.COMPLETED, now, inserts=outcome.enqueue)
        if outcome.state is JobState.SCHEDULED:
            snoozed = int(job.meta.get("snoozed", 0)) + 1
            return Ack(
                job.id,
                job.attempt,
                JobState.SCHEDULED,
                now,
                scheduled_at=later(now, outcome.snooze or 0.0),
                attempt_delta=-1,
                meta={"snoozed": snoozed},
            )
        if outcome.state in (JobState.DISCARDED, JobState.CANCELLED):
            kind = outcome.state.value
            record = error_record(job, now, f"{kind}: {outcome.reason}", kind=kind)
            return Ack(job.id, job.attempt, outcome.state, now, error=record)
        error = outcome.error or PerformError("unknown failure")
        record = error_record(job, now, error, kind="error")
        if job.attempt < job.max_attempts:
            delay = self._backoff(worker, job)
            return Ack(
                job.id,
                job.attempt,
                JobState.RETRYABLE,
                now,
                scheduled_at=later(now, delay),
                error=record,
            )
        if worker is not None:
            try:
                await self.call(worker.on_final_failure, job, error)
            except Exception as hook_error:  # recorded, never lost, never fatal
                log.exception("on_final_failure of %s raised", job.worker)
                record["final_failure_hook_error"] = f"{type(hook_error).__name__}: {hook_error}"
        return Ack(job.id, job.attempt, JobState.DISCARDED, now, error=record)

    def _backoff(self, worker: Worker | None, job: Job[Any]) -> float:
        from ..backoff import default_backoff

        if worker is None:
            return default_backoff(job.attempt)
        try:
            delay = float(worker.backoff(job))
            if math.isnan(delay):
                raise ValueError("backoff returned NaN")
            return delay
        except Exception:
            log.exception("backoff of %s raised; using the default", job.worker)
            return default_backoff(job.attempt)


MAX_DELAY = 100 * 365 * 86400.0
"""The longest snooze or retry delay written. Longer ones (``Snooze(math.inf)``, a runaway
backoff curve) are clamped: a date past year 9999 would overflow, and the job would stay
``executing`` instead of being written back."""


def later(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=min(MAX_DELAY, max(0.0, seconds)))


def queue_wait(job: Job[Any]) -> float:
    if job.attempted_at is None:
        return 0.0
    return max(0.0, (job.attempted_at - job.scheduled_at).total_seconds())


def monotonic() -> float:
    return time.monotonic()
