"""The two ways into a workflow run: inside a job (``WorkflowWorker``), or a test's run.

A saga started from a request handler or a script has nobody to retry it, rescue it from a
dead node or hold its follow-up jobs until it succeeds, so starting one outside a job is
refused. Tests are the exception, through ``jobsaga.testing.run_workflow``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .. import _context
from ..errors import (
    RunAbandoned,
    RunStateError,
)
from ..job import JobState
from ..operations.filters import JobFilter
from ..operations.jobs import JobOperations
from .cancelling import DEFAULT_ROLLBACK_TIMEOUT, run_in_job
from .dsl import Workflow, outside_job_error
from .executor import Execution
from .inputs import (
    check_workflow,
    known_workflows,
    validate_context,
    validate_inputs,
)
from .records import RunStatus, get_run
from .runlog import LOG_WRITE_TIMEOUT, RunLog, SqlRunLog
from .state import RunResult

if TYPE_CHECKING:
    from ..core import AppCore
    from ..job import Job


async def execute(
    app: AppCore,
    workflow: type[Workflow],
    inputs: Any = None,
    context: Any = None,
    *,
    job: Job[Any] | None,
    attempt: int | None = None,
    persist: bool = True,
    rollback_timeout: float = DEFAULT_ROLLBACK_TIMEOUT,
    log_write_timeout: float = LOG_WRITE_TIMEOUT,
    test_run: bool = False,
) -> RunResult:
    """Run ``workflow`` for ``job`` (what ``WorkflowWorker.perform`` does). Cancelled while it
    runs, it rolls the run back if the job was cancelled, within ``rollback_timeout`` seconds,
    and leaves it for the next attempt otherwise (see :mod:`.cancelling`). A run log write
    that still fails after ``log_write_timeout`` seconds of retries stops the run
    (``RunLogUnwritable``), leaving it for the next attempt too.

    ``test_run`` is the testing toolkit's run (``jobsaga.testing.run_workflow``): the only
    run allowed without a job."""
    workflow = check_workflow(workflow)
    if job is None and not test_run:
        raise outside_job_error(workflow)
    checked_inputs = validate_inputs(workflow, inputs)
    checked_context = validate_context(workflow, context)
    log: RunLog = (
        SqlRunLog(
            workflow.name,
            engine=app.engine,
            write_timeout=log_write_timeout,
            retried_after=retried_after(job),
        )
        if persist
        else RunLog(workflow.name)
    )
    run_attempt = attempt if attempt is not None else (job.attempt if job is not None else 1)
    execution = Execution(
        app,
        workflow,
        checked_inputs,
        checked_context,
        log=log,
        job=job,
        attempt=run_attempt,
        # On a node, sync steps share its bounded pool; the test entry point runs outside
        # any node (even when called from a job's code) and uses a pool of its own.
        threads=None if test_run else _context.job_threads.get(),
    )
    if job is None:
        return await execution.run()
    return await run_in_job(app, execution, job, rollback_timeout=rollback_timeout)


def retried_after(job: Job[Any] | None) -> int | None:
    """The attempt after which an operator retried ``job`` once it had finished
    (``retry_job`` stamps it in the job's meta): its runs up to that attempt are not final,
    the saga runs again. Attempt numbers, not times, so clocks of different hosts cannot
    disagree about it."""
    stamp = job.meta.get("retried_after_attempt") if job is not None else None
    return stamp if isinstance(stamp, int) and not isinstance(stamp, bool) else None


async def aroll_back_run(
    app: AppCore,
    run_id: int,
    *,
    reason: str = "rolled back by an operator",
    force: bool = False,
    cause: BaseException | None = None,
    workflow: type[Workflow] | None = None,
    log_write_timeout: float = LOG_WRITE_TIMEOUT,
) -> RunResult:
    """Roll back an unfinished run that nobody will resume, and end it.

    A run stays ``running`` when its job ended without finishing it: the lifeline discarded
    the job after a crash on its last attempt, or the last attempt timed out; a ``halted``
    run waits for a resume that may never come (its parked job was cancelled, say). This undoes,
    once and newest first, every step the log shows as completed (steps whose outcome is
    unknown because they were running are not undone), records ``run.abandoned``, and ends
    the run ``rolled_back`` or ``rollback_failed``; the result's error is a ``WorkflowError``
    whose ``error`` is ``cause``, or else a ``RunAbandoned`` carrying ``reason``. A rollback
    already under way is carried on. The app must know the workflow (register it, or its
    WorkflowWorker), unless it is given.

    Refused (``RunStateError``) when the run has ended, or when its job still exists and is
    not finished, since its next attempt would resume the run: ``force=True`` overrides that.
    """
    run = await asyncio.to_thread(get_run, app, run_id)
    if run is None:
        raise RunStateError(f"no run {run_id}")
    if run.parent_run_id is not None:
        raise RunStateError(
            f"run {run_id} is a child run of run {run.parent_run_id} (step "
            f"{run.parent_step!r}): roll back run {run.parent_run_id}, which undoes it"
        )
    if run.status not in (RunStatus.RUNNING, RunStatus.ROLLING_BACK, RunStatus.HALTED):
        raise RunStateError(f"run {run_id} has ended already ({run.status}); nothing to roll back")
    workflow = workflow or known_workflows(app).get(run.workflow)
    if workflow is None or workflow.name != run.workflow:
        raise RunStateError(
            f"run {run_id} is a {run.workflow!r} run, a workflow this app does not know; "
            "load the app that registers it (or its WorkflowWorker)"
        )
    if run.job_id is not None and not force:
        job = await asyncio.to_thread(app.get_job, run.job_id)
        if job is not None and job.state not in (JobState.DISCARDED, JobState.CANCELLED):
            parked = job.meta.get("halted_run") == run_id
            state = "parked waiting for a resume" if parked else job.state.value
            raise RunStateError(
                f"run {run_id} belongs to job {job.id}, which is {state}: its next attempt "
                "resumes the run. Cancel the job first, or force the rollback (--force)."
            )
    log = SqlRunLog(
        workflow.name, engine=app.engine, resume_id=run_id, write_timeout=log_write_timeout
    )
    execution = Execution(
        app,
        workflow,
        validate_inputs(workflow, run.inputs),
        validate_context(workflow, run.context, stored=True),
        log=log,
        job=None,
        attempt=run.attempt,
        abandon=cause or RunAbandoned(reason),
        threads=_context.job_threads.get(),  # set on a node (an async final-failure hook)
    )
    execution.meta["job_id"] = run.job_id
    result = await execution.run()
    result.run = await log.record(app)
    if run.status == RunStatus.HALTED and run.job_id is not None:
        await asyncio.to_thread(_cancel_parked_job, app, run.job_id, run_id, reason)
    return result


def _cancel_parked_job(app: AppCore, job_id: int, run_id: int, reason: str) -> None:
    """A halted run rolled back by force leaves its job parked for a resume that can no
    longer come (the run has ended): the job is cancelled, with the rollback's reason."""
    job = app.get_job(job_id)
    if job is None or job.state is not JobState.SCHEDULED or job.meta.get("halted_run") != run_id:
        return
    JobOperations(app).cancel(
        JobFilter.build(None, {"ids": [job_id]}),
        reason=f"its saga run {run_id} was rolled back: {reason}",
    )


def roll_back_run(
    app: AppCore, run_id: int, *, reason: str = "rolled back by an operator", force: bool = False
) -> RunResult:
    """The synchronous form of :func:`aroll_back_run` (what ``jobsaga runs rollback`` calls)."""
    return asyncio.run(aroll_back_run(app, run_id, reason=reason, force=force))
