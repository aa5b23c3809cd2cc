"""Run one attempt of a job and turn what happened into an :class:`~jobsaga.engines.Ack`.

Plain ``def perform`` runs in the node's bounded thread pool and ``async def perform`` on the
event loop, so sync user code never blocks other jobs. Each attempt reaches that pool through
its own :class:`AttemptThreads`, which counts the threads the attempt's user code still holds
(its sync perform, a saga's sync steps: ``_context.job_threads`` points the saga at it). A
perform that overruns its timeout is recorded as failed at once, but Python cannot stop a
thread: it runs on until it returns, and whatever it returns is ignored. The node is told how
many threads the attempt left behind, gives new work a fresh pool so their slots are not
lost, and stops fetching from a queue that has left too many behind (see ``Node``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import logging
import math
import threading
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import _context
from ..engines import Ack
from ..errors import InvalidResult, JobTimeout, PerformError
from ..job import MAX_DELAY_SECONDS, Job, JobSpec, JobState
from ..results import Cancel, Complete, Discard, Error, Park, Snooze
from ..worker import Worker

if TYPE_CHECKING:
    from ..core import AppCore

log = logging.getLogger("jobsaga.runtime.executor")


NOT_RETURNED: Any = object()
"""What ``Outcome.returned`` holds when the perform raised or timed out."""


@dataclass(slots=True)
class Outcome:
    """What one attempt came to, before it is written."""

    state: JobState
    result: Any = None
    error: BaseException | None = None
    snooze: float | None = None
    reason: str | None = None
    enqueue: tuple[JobSpec, ...] = ()
    parked: dict[str, Any] | None = None
    """A ``Park`` result's meta: the job waits, scheduled at the far end of time."""
    returned: Any = NOT_RETURNED
    """What the perform returned, before it was classified: the testing toolkit hands it to
    the test as is (``perform_job``), and it tells a raise from an ``Error`` result."""


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
        return Outcome(JobState.SCHEDULED, snooze=result.delay)
    if isinstance(result, Park):
        return Outcome(JobState.SCHEDULED, snooze=math.inf, parked=dict(result.meta))
    if isinstance(result, Discard):
        return Outcome(JobState.DISCARDED, reason=result.reason)
    if isinstance(result, Cancel):
        return Outcome(JobState.CANCELLED, reason=result.reason)
    if isinstance(result, Error):
        return Outcome(JobState.RETRYABLE, error=PerformError(result.reason))
    if isinstance(result, type) and result in (Snooze, Discard, Cancel, Complete, Park, Error):
        return Outcome(
            JobState.RETRYABLE,
            error=InvalidResult(
                f"perform returned the class {result.__name__}; return an instance"
            ),
        )
    return Outcome(JobState.COMPLETED, result=result)


class AttemptThreads(concurrent.futures.Executor):
    """The node's thread pool as one attempt sees it: submissions go to the node's current
    pool (renewed when threads are abandoned), and the attempt knows how many of its threads
    still run. An attempt cut short (timeout, shutdown) whose count is not zero left user code
    running that Python cannot stop: the node must not hand its job to anyone else while it
    runs (shutdown), and counts it against the queue's cap (timeout).

    One small object per attempt; only sync user code pays for the counting."""

    def __init__(self, owner: Executor) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self.live = 0
        """Threads of this attempt that have not finished (queued ones included)."""
        self._watcher: Callable[[AttemptThreads], None] | None = None

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        try:
            future = self._owner.threads.submit(fn, *args, **kwargs)
        except RuntimeError:  # the pool was renewed between the read and the submit
            future = self._owner.threads.submit(fn, *args, **kwargs)
        with self._lock:
            self.live += 1
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self.live -= 1
            watcher = self._watcher
        if watcher is not None:
            watcher(self)

    def watch(self, watcher: Callable[[AttemptThreads], None]) -> int:
        """Call ``watcher`` (from the finishing thread) each time one of the attempt's
        threads ends; returns how many run now, so none is missed in between."""
        with self._lock:
            self._watcher = watcher
            return self.live

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """The node's pool outlives attempts: a saga that shuts "its" pool down changes nothing."""


class Executor:
    def __init__(self, app: AppCore, node_name: str, threads: ThreadPoolExecutor) -> None:
        self.app = app
        self.node_name = node_name
        self.threads = threads
        self._instances: dict[type[Worker], Worker] = {}
        self.on_threads_abandoned: Callable[[Job[Any], AttemptThreads], None] | None = None
        """Called when an attempt timed out while some of its user code still runs in threads."""

    def instance(self, worker_cls: type[Worker]) -> Worker:
        found = self._instances.get(worker_cls)
        if found is None:
            found = self._instances[worker_cls] = worker_cls()
        return found

    def attempt_threads(self) -> AttemptThreads:
        return AttemptThreads(self)

    async def call(self, fn: Any, *args: Any) -> Any:
        """Call user code: coroutine functions on the loop, plain functions in the pool (the
        attempt's view of it when called within an attempt)."""
        _context.current_app.set(self.app)  # user code may need its app (WorkflowWorker does)
        if inspect.iscoroutinefunction(fn):
            return await fn(*args)
        ctx = contextvars.copy_context()
        pool = _context.job_threads.get() or self.threads
        result = await asyncio.get_running_loop().run_in_executor(pool, ctx.run, fn, *args)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def attempt(
        self, job: Job[Any], threads: AttemptThreads | None = None
    ) -> tuple[Outcome, Job[Any], Worker | None]:
        """Run the perform; never raises except for cancellation.

        With ``threads`` (a node's attempt), sync user code runs through it, and it is
        ``_context.job_threads`` for the perform, so a saga's sync steps share the node's
        bounded pool; without (the testing toolkit), the executor's own pool."""
        if threads is not None:
            _context.job_threads.set(threads)  # the job's task context: reset with the task
        try:
            worker_cls = self.app.worker_for(job.worker)
            worker = self.instance(worker_cls)
            parsed = worker_cls.parse_args(job.args)
            typed = job if parsed is job.args else job.with_args(parsed)
        except Exception as exc:  # unknown worker, args no longer valid: a failed attempt
            return Outcome(JobState.RETRYABLE, error=exc), job, None
        scope: asyncio.Timeout | None = None
        try:
            timeout = worker.timeout(typed)
            if timeout is None:  # no timer to arm and cancel for each job
                result = await self.call(worker.perform, typed)
            else:
                async with asyncio.timeout(timeout) as scope:
                    result = await self.call(worker.perform, typed)
        except TimeoutError as exc:
            if scope is None or not scope.expired():  # the perform's own TimeoutError
                return Outcome(JobState.RETRYABLE, error=exc), typed, worker
            err = JobTimeout(f"perform exceeded the worker's timeout of {timeout}s")
            err.__cause__ = exc
            if threads is not None and threads.live:
                self._abandon_threads(typed, threads)
            return Outcome(JobState.RETRYABLE, error=err), typed, worker
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return Outcome(JobState.RETRYABLE, error=exc), typed, worker
        outcome = classify(result)
        outcome.returned = result
        return outcome, typed, worker

    def _abandon_threads(self, job: Job[Any], threads: AttemptThreads) -> None:
        """The attempt overran its timeout with user code still in threads (a sync perform,
        a saga's sync step): Python cannot stop them, and each keeps a pool slot until it
        returns. Tell the node, which hands new work to a fresh pool (a perform that hangs
        cannot starve the queues or the final-failure hooks) and counts them against the
        queue's cap."""
        log.warning(
            "job %d (%s) attempt %d overran its timeout; %d thread(s) of it keep running until "
            "they return",
            job.id,
            job.worker,
            job.attempt,
            threads.live,
        )
        if self.on_threads_abandoned is not None:
            self.on_threads_abandoned(job, threads)

    async def finish(self, job: Job[Any], outcome: Outcome, worker: Worker | None) -> Ack:
        """Turn an outcome into the row update; runs the final-failure hook when due."""
        now = self.app.clock()
        if outcome.state is JobState.COMPLETED:
            return Ack(job.id, job.attempt, JobState.COMPLETED, now, inserts=outcome.enqueue)
        if outcome.state is JobState.SCHEDULED and outcome.parked is not None:
            return Ack(
                job.id,
                job.attempt,
                JobState.SCHEDULED,
                now,
                scheduled_at=later(now, math.inf),
                attempt_delta=-1,
                meta=outcome.parked,
            )
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
            except asyncio.CancelledError:
                # The node is shutting down while the hook runs. The job's attempts are used
                # up all the same: it is discarded, never written back to run once more
                # (which would also run the hook a second time). Said on the job.
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                log.warning("job %d: on_final_failure interrupted by shutdown", job.id)
                record["final_failure_hook_error"] = (
                    "interrupted: the node shut down while on_final_failure ran"
                )
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


def later(now: datetime, seconds: float) -> datetime:
    """``seconds`` after ``now``, clamped to :data:`~jobsaga.job.MAX_DELAY_SECONDS`: a longer
    snooze or retry delay (``Snooze(math.inf)``, a runaway backoff curve) would reach past
    year 9999 and overflow, leaving the job ``executing`` instead of written back."""
    return now + timedelta(seconds=min(MAX_DELAY_SECONDS, max(0.0, seconds)))


def queue_wait(job: Job[Any]) -> float:
    if job.attempted_at is None:
        return 0.0
    return max(0.0, (job.attempted_at - job.scheduled_at).total_seconds())
