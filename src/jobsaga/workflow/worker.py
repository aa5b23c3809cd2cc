"""``WorkflowWorker``: a job worker that runs one workflow (the guide's ``WorkflowWorker``).

::

    class AnalyticsAgentWorker(WorkflowWorker, workflow=AnalyticsWorkflow,
                               queue="analytics_agents", max_attempts=2):
        def on_final_failure(self, job, error): ...   # error: the WorkflowError

The job's args are the workflow's inputs plus its ``Context`` fields (e.g. the actor), and a
pydantic ``Args`` model is built from both, so a job with a missing input or an unknown role
is rejected at insert. Success completes the job and inserts the follow-up jobs the steps
registered, in the same transaction; failure (after the rollback) fails the attempt, so the
job layer retries with backoff, and the final attempt's ``on_final_failure`` gets the
``WorkflowError`` with its undo results. Cancelling the job mid-run rolls the run back at
once (within ``rollback_timeout`` seconds); a node shutdown or a timeout leaves it for the
next attempt to resume (see :mod:`.cancelling`).

A run that succeeded is final for its job: if the job's completion was lost (the process
died between the run log's commit and the job's acknowledgement), the next attempt completes
the job from the log without running a step, and on the last attempt (the lifeline discards
the job) the follow-ups are inserted instead of the final-failure hook being told the saga
failed. A run that ended in failure was rolled back, so the next attempt starts a new one.

A run that halted (a step returned ``Halt``) parks its job: ``scheduled`` at the far end of
time, no attempt used up, no follow-up inserted, no final-failure hook, until
``resume_run`` sets it going; its next attempt resumes the run (see :mod:`.resuming`).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, create_model

from .. import _context
from ..errors import ConfigError, WorkflowError, WorkflowOutsideJobError
from ..job import Job
from ..results import Complete, Discard, Park
from ..worker import Worker
from .cancelling import DEFAULT_ROLLBACK_TIMEOUT
from .dsl import Workflow
from .inputs import check_workflow
from .records import RunStatus, get_run, list_runs
from .resuming import halted_step, park, unanswered_halt
from .runlog import LOG_WRITE_TIMEOUT, append_event
from .running import aroll_back_run, execute, retried_after
from .state import follow_ups_of

if TYPE_CHECKING:
    from ..core import AppCore

log = logging.getLogger("jobsaga.workflow")


def args_model(workflow: type[Workflow], owner: str) -> type[BaseModel]:
    """Job args for ``workflow``: its inputs and its context fields, validated at insert."""
    fields: dict[str, Any] = {}
    if workflow.Inputs is not None:
        for name, info in workflow.Inputs.model_fields.items():
            fields[name] = (info.annotation, info)
    else:
        for name in workflow.input_names:
            fields[name] = (Any, ...)
    if workflow.Context is not None:
        for name, info in workflow.Context.model_fields.items():
            if name in fields:
                raise ConfigError(
                    f"{owner}: {name!r} is both an input and a context field of "
                    f"{workflow.__qualname__}; job args cannot tell them apart"
                )
            fields[name] = (info.annotation, info)
    # An unknown key is refused at insert (a misspelt optional input would otherwise be kept
    # as context, and the input left at its default); a Context model that allows extra
    # fields (extra="allow") is the opt-out: its extra keys are context.
    context_extra = workflow.Context.model_config.get("extra") if workflow.Context else None
    config = ConfigDict(extra="allow" if context_extra == "allow" else "forbid")
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{owner}Args", __config__=config, **fields
    )
    return model


MAX_ATTEMPTS = 3
"""A ``WorkflowWorker``'s default ``max_attempts`` (a plain worker's is 20). A run that
failed has been rolled back: its steps already had their own retries (``max_retries``), so
running the whole saga again rarely turns out otherwise, and each run repeats its side
effects and their undos. The spare attempts are for what interrupts a run rather than
failing it (its node died, or the attempt timed out), after which the next attempt resumes
the same run from the log, re-running no completed step. docs/workflows.md
("WorkflowWorker") says how to choose another value."""


class WorkflowWorker(Worker, max_attempts=MAX_ATTEMPTS):
    """A worker whose perform runs ``workflow`` inside the job. Class options: every worker
    option (``max_attempts`` defaults to 3 here: see :data:`MAX_ATTEMPTS`) plus ``workflow=`` (required), ``persist=`` (keep the run log, default True),
    ``rollback_timeout=`` (seconds the rollback of a run whose job is cancelled mid-run may
    take, default 60; past it the run is left ``rolling_back`` for ``jobsaga runs rollback``)
    and ``log_write_timeout=`` (seconds a failing run log write is retried, no step starting
    meanwhile, before the run stops and the attempt fails; default 30)."""

    workflow: ClassVar[type[Workflow] | None] = None
    persist: ClassVar[bool] = True
    rollback_timeout: ClassVar[float] = DEFAULT_ROLLBACK_TIMEOUT
    log_write_timeout: ClassVar[float] = LOG_WRITE_TIMEOUT

    def __init_subclass__(
        cls,
        *,
        workflow: type[Workflow] | None = None,
        persist: bool | None = None,
        rollback_timeout: float | None = None,
        log_write_timeout: float | None = None,
        **options: Any,
    ) -> None:
        own_args = "Args" in cls.__dict__
        super().__init_subclass__(**options)
        if workflow is not None:
            try:
                cls.workflow = check_workflow(workflow)
            except ConfigError as exc:
                raise ConfigError(f"worker {cls.__qualname__}: {exc}") from None
        if persist is not None:
            cls.persist = persist
        if rollback_timeout is not None:
            cls.rollback_timeout = _seconds(cls, "rollback_timeout", rollback_timeout)
        if log_write_timeout is not None:
            cls.log_write_timeout = _seconds(cls, "log_write_timeout", log_write_timeout)
        if cls.workflow is None:
            raise ConfigError(
                f"worker {cls.__qualname__}: a WorkflowWorker needs workflow=YourWorkflow"
            )
        if not own_args and (workflow is not None or cls.Args is None):
            cls.Args = args_model(cls.workflow, cls.__qualname__)
        hook = cls.__dict__.get("on_final_failure")
        if hook is not None and not getattr(hook, "_rolls_back_orphans", False):
            cls.on_final_failure = _rolling_back_orphans(hook)  # type: ignore[method-assign]

    def workflow_inputs(self, job: Job[Any]) -> Mapping[str, Any]:
        """The workflow inputs taken from the job's args (override to map them differently)."""
        assert self.workflow is not None
        raw = job.raw_args
        return {name: raw[name] for name in self.workflow.input_names if name in raw}

    def workflow_context(self, job: Job[Any]) -> Any:
        """The caller's context: the ``Context`` model's fields of the args; with a Context
        that allows extra fields, or no Context model, the args that are not inputs."""
        assert self.workflow is not None
        raw = job.raw_args
        context = self.workflow.Context
        if context is not None and context.model_config.get("extra") != "allow":
            return {name: raw[name] for name in context.model_fields if name in raw}
        # a Context that allows extra keys, or a job stored before unknown keys were
        # refused: every arg that is not an input
        rest = {k: v for k, v in raw.items() if k not in self.workflow.input_names}
        return rest or None

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        """Runs once when the job fails for good, with the ``WorkflowError`` (undo results
        included). Override it. When the last attempt ended with the run unfinished (its node
        died, or it timed out), the run is rolled back first and the hook gets that rollback's
        ``WorkflowError``, whose ``error`` is the ``JobOrphaned`` or ``JobTimeout``."""

    async def settle_orphan(self, job: Job[Any], error: BaseException) -> BaseException | None:
        """What the final-failure hook of a job that ended without its run ending gets: None
        when the run had succeeded (the hook is not called: see
        :meth:`finish_succeeded_orphan`), else the rollback's WorkflowError (see
        :meth:`roll_back_unfinished`)."""
        if await self.finish_succeeded_orphan(job):
            return None
        return await self.roll_back_unfinished(job, error)

    async def roll_back_unfinished(self, job: Job[Any], error: BaseException) -> BaseException:
        """Before the final-failure hook: roll back the run this job leaves unfinished (its
        node died, or its last attempt timed out) and return that rollback's WorkflowError;
        ``error`` itself when there is no such run. Nothing will resume the run once the job
        is discarded, so its completed steps are undone now."""
        app = _context.current_app.get()
        if app is None or not self.persist or self.workflow is None:
            return error
        try:
            runs = await asyncio.to_thread(
                list_runs,
                app,
                status=("running", "rolling_back", "halted"),
                job_id=job.id,
                top_level=True,  # the job's own run: its child runs carry its job_id too
                limit=1,
            )
            if not runs or runs[0].id is None:
                return error
            result = await aroll_back_run(
                app,
                runs[0].id,
                cause=error,
                workflow=self.workflow,
                reason=str(error),
                force=True,  # the job is being discarded: no attempt will resume the run
                log_write_timeout=self.log_write_timeout,
            )
        except Exception:  # the hook still runs, with the original error
            log.exception("rolling back the unfinished run of job %d failed", job.id)
            return error
        return result.error or error

    async def finish_succeeded_orphan(self, job: Job[Any]) -> bool:
        """Before the final-failure hook of a job discarded as orphaned: True when the job's
        run had in fact succeeded (its node died between the run log's commit and the job's
        completion, on the last attempt, so no attempt is left to complete it). The saga did
        not fail, so the hook is not called; the follow-up jobs the run registered are
        inserted now, with a ``run.already_succeeded`` event, in one transaction. Nothing
        will run this again (the job is discarded), so they are inserted at most once."""
        app = _context.current_app.get()
        if app is None or not self.persist or self.workflow is None:
            return False
        try:
            return await asyncio.to_thread(self._finish_succeeded_orphan, app, job)
        except Exception:
            log.exception("job %d: inserting the follow-ups of its succeeded run failed", job.id)
            return True  # the saga succeeded all the same: a failure hook would be wrong

    def _finish_succeeded_orphan(self, app: AppCore, job: Job[Any]) -> bool:
        assert self.workflow is not None
        runs = list_runs(
            app,
            status="succeeded",
            workflow=self.workflow.name,
            job_id=job.id,
            top_level=True,
            limit=1,
        )
        if not runs or runs[0].id is None:
            return False
        retried = retried_after(job)
        if retried is not None and runs[0].attempt <= retried:
            return False  # succeeded before a retry by hand: this attempt's run is the one
        run = get_run(app, runs[0].id)
        if run is None or run.id is None:
            return False
        follow_ups = follow_ups_of(run.steps)
        engine = app.engine
        with engine.transaction() as tx:
            if follow_ups:
                engine.insert_in(tx, follow_ups)
            detail = {
                "follow_ups": len(follow_ups),
                "note": "the run had succeeded; its job was discarded as orphaned on its last "
                "attempt: follow-ups inserted, on_final_failure not called",
            }
            append_event(
                engine,
                tx,
                run.id,
                "run.already_succeeded",
                attempt=job.attempt,
                at=app.clock(),
                detail=detail,
            )
        log.warning(
            "job %d was discarded as orphaned, but its run %d had succeeded: its %d follow-up "
            "job(s) were inserted and on_final_failure is not called",
            job.id,
            run.id,
            len(follow_ups),
        )
        return True

    async def perform(self, job: Job[Any]) -> Complete | Park | Discard:
        app = _context.current_app.get()
        if app is None:
            raise WorkflowOutsideJobError(
                f"{type(self).__qualname__}.perform runs a workflow and needs its App: it runs "
                "on a node (app.node(...)), which provides it. In tests use "
                "jobsaga.testing's perform_job, or its run_workflow for the workflow alone."
            )
        assert self.workflow is not None
        persist = self.persist and not _context.run_log_in_memory.get()
        if persist:
            halted = await asyncio.to_thread(unanswered_halt, app, job)
            if halted is not None:
                return self._park_again(job, halted.id, halted_step(halted))
        result = await execute(
            app,
            self.workflow,
            self.workflow_inputs(job),
            self.workflow_context(job),
            job=job,
            persist=persist,
            rollback_timeout=self.rollback_timeout,
            log_write_timeout=self.log_write_timeout,
        )
        if result.status == RunStatus.HALTED:
            return self._halted(job, result.run_id, result.halted_step)
        if result.error is not None:
            raise result.error
        return Complete(value=None, enqueue=result.follow_ups)

    def _halted(self, job: Job[Any], run_id: int | None, step: str | None) -> Park | Discard:
        """The run halted: the job waits, parked, for ``resume_run``. A run kept only in
        memory cannot be resumed on a node (``persist=False``): the job is discarded, saying
        why, rather than parked for ever; the testing toolkit's in-memory run parks."""
        if run_id is None and not _context.run_log_in_memory.get():
            return Discard(
                f"step {step!r} halted the saga, but {type(self).__qualname__} keeps no run log "
                "(persist=False), and a halted run is resumed from its log"
            )
        return park(run_id, step)

    def _park_again(self, job: Job[Any], run_id: int | None, step: str | None) -> Park:
        log.warning(
            "job %d: its saga run %s is halted (at step %r) and no resume asked for this "
            "attempt (its node died before the job was parked, or it was set going by other "
            "means than resume_run): parked again, no step run",
            job.id,
            run_id,
            step,
        )
        return park(run_id, step)


def _seconds(cls: type, option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise ConfigError(
            f"worker {cls.__qualname__}: {option} must be a number of seconds > 0, got {value!r}"
        )
    return float(value)


def _rolling_back_orphans(hook: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a final-failure hook so that, when the job ends with its run unfinished (any error
    but a WorkflowError: the node died, the attempt timed out), the run is rolled back first
    and the hook gets that rollback's WorkflowError."""
    if inspect.iscoroutinefunction(hook):

        @functools.wraps(hook)
        async def async_wrapped(self: WorkflowWorker, job: Job[Any], error: BaseException) -> Any:
            if not isinstance(error, WorkflowError):
                settled = await self.settle_orphan(job, error)
                if settled is None:
                    return None
                error = settled
            return await hook(self, job, error)

        async_wrapped._rolls_back_orphans = True  # type: ignore[attr-defined]
        return async_wrapped

    @functools.wraps(hook)
    def wrapped(self: WorkflowWorker, job: Job[Any], error: BaseException) -> Any:
        if not isinstance(error, WorkflowError):
            # A sync hook runs in a worker thread, which has no event loop of its own. That
            # thread may be one of the node's pool: the rollback's sync undos must not queue
            # behind it in the same pool (a full pool would wait on itself), so they get a
            # pool of their own.
            token = _context.job_threads.set(None)
            try:
                settled = asyncio.run(self.settle_orphan(job, error))
            finally:
                _context.job_threads.reset(token)
            if settled is None:
                return None
            error = settled
        return hook(self, job, error)

    wrapped._rolls_back_orphans = True  # type: ignore[attr-defined]
    return wrapped


WorkflowWorker.on_final_failure = _rolling_back_orphans(  # type: ignore[method-assign]
    WorkflowWorker.on_final_failure
)
