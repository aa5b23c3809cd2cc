"""A workflow's job is cancelled mid-run: roll the run back, or leave it for the next attempt.

The perform of a job is cancelled (its asyncio task is) in three cases, and they need
opposite things from the saga:

- an operator cancelled the job (``app.cancel_job``, ``jobsaga jobs cancel``, from any
  process): the saga is abandoned, nobody will run it again, so its completed steps are
  undone now and the run ends ``rolled_back`` (or ``rollback_failed``), with the cancel as
  its cause;
- the node shut down past its grace period, or the attempt overran the worker's timeout: the
  job is written back or retried, and its next attempt resumes the run from the log (see
  "A node dies mid-workflow" in docs/workflows.md), so nothing is undone.

How the two are told apart: the cancellation itself says nothing reliable (a shutdown, a
timeout and an operator's cancel all call ``Task.cancel()``; a cancel message can be lost
on the way to the awaiting code, and Python 3.11 deprecates passing one), so the run asks
the job's row, which is what decides the job's future anyway. The cancel operation marks the
row ``cancelled`` *before* it tells the node (NOTIFY, the node's own poll, or directly in
this process), whereas after a shutdown or a timeout the row is still ``executing`` and the
job comes back. The row also settles a cancel that races a shutdown or a timeout: once it
says ``cancelled``, no attempt will resume the run, whoever cancelled the task.

To be able to ask first and decide after, the run is its own task and the perform waits for
it through :func:`asyncio.shield`: a cancellation reaches the perform, not the run. Once the
rollback has started it is shielded from further cancellation (the node's shutdown, the
job's timeout, a second cancel) but bounded by the worker's ``rollback_timeout``: past it,
the run is interrupted, left ``rolling_back``, and ``jobsaga runs rollback`` finishes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import JobCancelled
from ..job import JobState
from .executor import Execution
from .restoring import INTERRUPT_FLUSH_TIMEOUT
from .state import RunResult

if TYPE_CHECKING:
    from ..core import AppCore
    from ..job import Job

log = logging.getLogger("jobsaga.workflow")

CHECK_TIMEOUT = 2.0
"""Seconds a cancelled run may spend reading its job's row; past it (the database is away),
the run is left resumable, as after a shutdown."""
DEFAULT_ROLLBACK_TIMEOUT = 60.0
"""How long the rollback of a run whose job was cancelled may take, unless the worker says."""


async def run_in_job(
    app: AppCore, execution: Execution, job: Job[Any], *, rollback_timeout: float
) -> RunResult:
    """Run ``execution`` for ``job``; when the perform is cancelled, roll the run back if the
    job was cancelled (then re-raise), else interrupt it so the next attempt resumes it."""
    run = asyncio.create_task(execution.run(), name=f"jobsaga-workflow-job-{job.id}")
    try:
        return await asyncio.shield(run)
    except asyncio.CancelledError:
        cause = None if run.done() else await cancel_cause(app, job)
        if cause is None or run.done():
            await interrupt(run)  # shutdown or timeout: the next attempt resumes the run
            raise
        execution.stop(cause)
        if not await wait_shielded(run, rollback_timeout):
            log.warning(
                "job %d was cancelled and the rollback of run %s did not end within %.1fs; "
                "it is left rolling back: finish it with `jobsaga runs rollback %s`",
                job.id,
                execution.log.run_id,
                rollback_timeout,
                execution.log.run_id,
            )
            await interrupt(run)
        elif not run.cancelled() and (error := run.exception()) is not None:
            log.error(
                "job %d was cancelled and rolling its run back failed", job.id, exc_info=error
            )
        raise


async def cancel_cause(app: AppCore, job: Job[Any]) -> JobCancelled | None:
    """A :class:`JobCancelled` carrying the cancel's reason when the job's row says it was
    cancelled; None otherwise (a shutdown or a timeout), or when the row cannot be read."""
    read = asyncio.create_task(asyncio.to_thread(app.get_job, job.id))
    if not await wait_shielded(read, CHECK_TIMEOUT):
        read.add_done_callback(settled)
        log.warning(
            "job %d: reading its state took over %.1fs after a cancel", job.id, CHECK_TIMEOUT
        )
        return None
    try:
        row = read.result()
    except Exception:
        log.exception("job %d: reading its state after a cancel failed", job.id)
        return None
    if row is None or row.state is not JobState.CANCELLED:
        return None
    reason = "cancelled by an operator"
    for record in reversed(row.errors):
        if record.get("kind") == "cancelled":
            reason = str(record.get("error", reason)).removeprefix("cancelled: ")
            break
    return JobCancelled(job.id, reason)


async def wait_shielded(task: asyncio.Future[Any], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``task``, through any cancellation of the waiter (it is not
    passed on to ``task``); True when ``task`` is done."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait({task}, timeout=remaining)
    return True


async def interrupt(run: asyncio.Task[RunResult]) -> None:
    """Cancel the run (it records ``run.interrupted`` and flushes its log) and give it the
    time that flush may take."""
    if not run.done():
        run.cancel()
        await asyncio.wait({run}, timeout=INTERRUPT_FLUSH_TIMEOUT + 1.0)
    if run.done():
        settled(run)
    else:
        run.add_done_callback(settled)


def settled(task: asyncio.Future[Any]) -> None:
    """Retrieve a finished task's outcome nobody will use (no "never retrieved" warning)."""
    if not task.cancelled():
        with contextlib.suppress(BaseException):
            task.exception()
