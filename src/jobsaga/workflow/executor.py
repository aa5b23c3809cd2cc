"""Run one workflow: steps as soon as their arguments are ready, then success or rollback.

The run is an asyncio task. ``async def`` steps run on the event loop; plain ``def`` steps
run in the node's bounded thread pool (``_context.job_threads``, the attempt's view of it),
or, outside a node (tests), in a pool of ``max_concurrency`` threads of the run's own. Step
code never waits on other work of that pool, so sharing it cannot deadlock; a full pool only
delays a step. Ready steps start in declaration order while fewer than ``max_concurrency``
run. The first step that fails for good (after its retries and its compensation) stops the
run: nothing new starts, the steps still running are awaited (and count as completed if they
succeed), then every completed step that has an undo is undone once, newest completion
first. Undo failures are recorded and the rollback goes on. While any of this user code
runs, ``jobsaga._context.current_step`` names the step, which is how ``App.insert`` refuses
to enqueue from inside a step.

:meth:`Execution.stop` ends a run the same way when its job is cancelled mid-run (see
:mod:`.cancelling`, which decides when): nothing new starts, async steps still running are
cancelled (they have not completed, so they are not undone), steps in a thread are awaited,
since Python cannot stop a thread, then the completed steps are undone.

User code starts only when the run log allows (:meth:`Execution.log_allows`): a step once
its predecessors' outcomes are written, an undo once everything before it is; meanwhile a
failing write is being retried. When the log gives up, :meth:`Execution.log_broken` stops
the run as a shutdown would, and it raises :class:`RunLogUnwritable` for the next attempt
to resume it. A run the log shows ``succeeded`` is not run again
(:meth:`Execution.already_succeeded`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import heapq
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import _context
from ..backoff import STEP_BACKOFF, Backoff, retry_delay
from ..errors import (
    RecordedError,
    RetriesExhausted,
    RetryCancelled,
    RunLogUnwritable,
    StepFailure,
    StepResultError,
    WorkflowError,
)
from ..job import Job, JobSpec
from ..telemetry import NO_SPAN, Span
from .context import StepContext
from .dsl import Argument, Workflow
from .encoding import error_json
from .paths import follow_path
from .records import RunStatus, StepStatus
from .results import Continue, Retry
from .runlog import Resumed, RunLog
from .state import (
    COMPLETED,
    DONE,
    RunResult,
    StepState,
    brief,
    follow_ups_of,
    spec_from_json,
)

if TYPE_CHECKING:
    from ..core import AppCore

logger = logging.getLogger("jobsaga.workflow")

ABANDONED = "(abandoned)"
"""The step name a rollback started by an operator is recorded under."""
CANCELLED = "(cancelled)"
"""The step name the rollback of a run whose job was cancelled is recorded under."""
ENQUEUED_BY_RUN = "enqueued_by_run"
"""The meta key of a follow-up job naming the run that enqueued it."""
INTERRUPT_FLUSH_TIMEOUT = 5.0
"""Seconds an interrupted run may spend writing its log before giving up."""


class Execution:
    """One run of one workflow; create it, then ``await run()``."""

    def __init__(
        self,
        app: AppCore,
        workflow: type[Workflow],
        inputs: Mapping[str, Any],
        context: Any,
        *,
        log: RunLog,
        job: Job[Any] | None,
        attempt: int,
        abandon: BaseException | None = None,
        threads: concurrent.futures.Executor | None = None,
    ) -> None:
        self.app = app
        self.abandon = abandon
        self.workflow = workflow
        self.instance = workflow()
        self.graph = workflow.graph
        self.inputs = dict(inputs)
        self.context = context
        self.log = log
        self.job = job
        self.attempt = attempt
        self.telemetry = app.telemetry
        self.states = {
            name: StepState(spec, index)
            for index, (name, spec) in enumerate(workflow.steps.items())
        }
        self.completion: list[str] = []
        self.completed_count = 0
        self.failure: tuple[str, BaseException] | None = None
        self.others: list[StepFailure] = []
        self.previous_undo_errors: list[StepFailure] = []
        self.limit = workflow.options.max_concurrency
        self.shared_threads = threads
        """The node's pool (not ours to shut down); None: sync steps get a pool of the run's."""
        self._threads: ThreadPoolExecutor | None = None
        self.stopping = asyncio.Event()
        """Set when the run starts failing: steps waiting to retry give up at once."""
        self.running: dict[asyncio.Task[None], str] = {}
        """The step tasks under way (while :meth:`forward` runs)."""
        self.in_threads: set[str] = set()
        """Steps whose user code runs in a thread right now (it cannot be cancelled)."""
        self.opened = False
        self.cancelled: BaseException | None = None
        """Set by :meth:`stop`: why the run was stopped."""
        self.log_failure: RunLogUnwritable | None = None
        """Set when the run log gave up writing (:meth:`log_broken`): the run stops."""
        log.on_broken = self.log_broken
        self.meta: dict[str, Any] = {
            "workflow": workflow.name,
            "run_id": None,
            "job_id": job.id if job is not None else None,
            "attempt": attempt,
        }

    # --- small helpers --------------------------------------------------------------------

    def now(self) -> datetime:
        return self.app.clock()

    def emit(self, event: str, measurements: dict[str, Any], **metadata: Any) -> None:
        if self.telemetry.active:
            self.telemetry.emit(event, measurements, {**self.meta, **metadata})

    def step_span(self, st: StepState, *, start: bool = True) -> Span:
        """A try of a step: ``workflow.step.start``, then ``.stop`` (settled with a value),
        ``.retry`` (to be tried again) or ``.exception`` (failed for good). A step settled
        outside a try (skipped by its guard, its guard or arguments raised, its retry cancelled
        while waiting) gets a span without a start."""
        if not self.telemetry.active:
            return NO_SPAN  # what span() returns then, without building its metadata
        metadata = {**self.meta, "step": st.spec.name}
        if start:
            metadata["tries"] = st.tries
        return self.telemetry.span("workflow.step", metadata, start=start)

    def record(
        self, st: StepState, kind: str, detail: Any = None, at: datetime | None = None
    ) -> None:
        self.log.step(st.row(), kind, at or self.now(), detail)

    def ctx(self, st: StepState, tries: int | None = None) -> StepContext[Any]:
        """The ``ctx`` of a step's code; ``tries``: the count of the code called (an undo's
        or a compensation's own), the step's when None."""
        step_tries = max(1, st.tries)
        return StepContext(
            workflow=self.workflow.name,
            step=st.spec.name,
            run_id=self.log.run_id,
            job=self.job,
            attempt=self.attempt,
            tries=step_tries if tries is None else tries,
            context=self.context,
            inputs=self.inputs,
            step_tries=step_tries,
        )

    def value_of(self, arg: Argument) -> Any:
        if arg.source in self.states:
            source = self.states[arg.source]
            if source.status is StepStatus.SKIPPED:
                return None  # a skipped step's result is None, and so is any field of it
            value = source.value
        else:
            value = self.inputs[arg.source]
        return follow_path(value, arg) if arg.path else value

    def kwargs(
        self, arguments: tuple[Argument, ...], context_param: str | None, ctx: StepContext[Any]
    ) -> dict[str, Any]:
        values = {a.param: self.value_of(a) for a in arguments}
        if context_param is not None:
            values[context_param] = ctx
        return values

    def hook_kwargs(self, st: StepState, kind: str, ctx: StepContext[Any]) -> dict[str, Any]:
        context_param, shared = st.spec.hook_wiring.get(kind, (None, ()))
        own = {a.param: a for a in st.spec.arguments}
        values = {name: self.value_of(own[name]) for name in shared}
        if context_param is not None:
            values[context_param] = ctx
        return values

    def threads(self) -> concurrent.futures.Executor:
        """Where sync step code runs: the node's pool when the run has one, so a node's sync
        user code stays within its thread limit however many sagas run; else (tests, the
        CLI's rollback) a pool of ``max_concurrency`` threads made for this run."""
        if self.shared_threads is not None:
            return self.shared_threads
        if self._threads is None:
            self._threads = ThreadPoolExecutor(self.limit, thread_name_prefix="jobsaga-step")
        return self._threads

    async def log_allows(self, seq: int = 0) -> bool:
        """Before user code starts: True once the run log holds every transition up to event
        ``seq`` (what the code depends on) and no write is failing; it waits while the log
        writes or retries; False once the log gave up (the run stops). A saga never runs a
        step it cannot record, nor on a result that is not recorded."""
        if self.log.ready(seq):
            return True
        return await self.log.wait_ready(seq)

    async def call(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], step: str
    ) -> Any:
        """Call user code with the enqueue guard set: coroutines on the loop, the rest in threads."""
        token = _context.current_step.set(step)
        try:
            if is_coroutine_function(fn):
                return await fn(*args, **kwargs)
            ctx = contextvars.copy_context()
            loop = asyncio.get_running_loop()
            self.in_threads.add(step)
            try:
                result = await loop.run_in_executor(
                    self.threads(), functools.partial(ctx.run, fn, *args, **kwargs)
                )
            finally:
                self.in_threads.discard(step)
            if inspect.isawaitable(result):
                result = await result
            return result
        finally:
            _context.current_step.reset(token)

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        resumed = await self.log.open(
            self.inputs,
            self.context,
            self.states,
            job_id=self.meta["job_id"],
            attempt=self.attempt,
            now=self.now(),
            dag=self.graph.dag,
        )
        self.meta["run_id"] = self.log.run_id
        if resumed is not None and resumed.status == RunStatus.SUCCEEDED.value:
            return await self.already_succeeded(resumed)
        self.opened = True
        span = self.telemetry.span("workflow", {**self.meta, "resumed": resumed is not None})
        try:
            rolling_back = self.restore(resumed) if resumed is not None else False
            if self.cancelled is not None:  # stopped while the log was being opened
                self.record_stop()
            if self.abandon is not None and not rolling_back:
                # An operator gave up on this run: undo what completed, run nothing more.
                detail = {"reason": str(self.abandon), "type": type(self.abandon).__name__}
                self.log.event("run.abandoned", self.now(), detail=detail)
                self.failure = (ABANDONED, self.abandon)
                rolling_back = True
            if not rolling_back:
                await self.forward()
            if self.log_failure is not None:
                raise self.log_failure
            if self.failure is None:
                result = await self.succeed()
            else:
                result = await self.roll_back()
        except asyncio.CancelledError:
            # Cut short (job timeout, node shutdown): leave the run resumable, with what is
            # known written down before the next attempt reads it.
            self.log.event("run.interrupted", self.now(), detail={"attempt": self.attempt})
            with contextlib.suppress(Exception):
                async with asyncio.timeout(INTERRUPT_FLUSH_TIMEOUT):
                    await self.log.flush()
            self.log.close()
            raise
        finally:
            if self._threads is not None:
                self._threads.shutdown(wait=False)
        span.add(status=result.status.value)
        if result.error is None:
            span.stop()
        else:  # the kind of the step's error: the WorkflowError only carries it
            span.fail(result.error, kind=type(result.error.error).__name__)
        return result

    def restore(self, resumed: Resumed) -> bool:
        """Take over what an earlier attempt recorded; True when a rollback was under way."""
        now = self.now()
        self.log.event("run.resumed", now, detail={"attempt": self.attempt})
        failed: tuple[str, BaseException] | None = None
        done: list[tuple[int, str]] = []
        for name, record in resumed.steps.items():
            st = self.states.get(name)
            if st is None:  # the class lost a step since: nothing to restore into
                continue
            st.tries, st.undo_tries = record.tries, record.undo_tries
            st.compensations = resumed.compensations.get(name, 0)
            st.started_at, st.finished_at = record.started_at, record.finished_at
            st.error = record.error
            status = StepStatus(record.status)
            if status in DONE or status in (StepStatus.UNDONE, StepStatus.UNDO_FAILED):
                st.status = status
                st.stored = record.result
                st.value = None if status is StepStatus.SKIPPED else st.spec.restore(record.result)
                st.follow_ups = [spec_from_json(s) for s in record.enqueue or ()]
                st.completed_seq = record.completed_seq
                if record.completed_seq is not None:
                    done.append((record.completed_seq, name))
                if status is StepStatus.UNDO_FAILED and record.error is not None:
                    self.previous_undo_errors.append(StepFailure(name, RecordedError(record.error)))
            elif status is StepStatus.FAILED:
                st.status = status
                st.exc = RecordedError(record.error or {})
                if failed is None:
                    failed = (name, st.exc)
            elif status in (StepStatus.RUNNING, StepStatus.RETRIED):
                # Its outcome died with the previous node: run it again, tries continue.
                st.status = StepStatus.PENDING
                self.record(st, "step.interrupted", {"previous_status": status.value})
        done.sort()
        self.completion = [name for _, name in done]
        self.completed_count = max((seq for seq, _ in done), default=0)
        if resumed.status == RunStatus.ROLLING_BACK.value or failed is not None:
            if failed is None:
                error = resumed.error or {}
                failed = (str(error.get("step", "?")), RecordedError(error))
            self.failure = failed
            return True
        return False

    async def already_succeeded(self, resumed: Resumed) -> RunResult:
        """The job's run succeeded in an earlier attempt whose completion was never written
        (its node died, or lost the database, between the run log's commit and the job's
        acknowledgement). A succeeded run is final for its job: nothing runs again; the
        attempt hands back the run's value and the follow-up jobs its steps registered (in
        completion order, as the run returned them), which the job's completion inserts."""
        follow_ups = follow_ups_of(resumed.steps.values())
        value = resumed.result
        record = resumed.steps.get(self.workflow.result_step())
        if record is not None and record.status != StepStatus.SKIPPED.value:
            with contextlib.suppress(Exception):  # a changed annotation: the JSON form then
                value = self.states[record.step].spec.restore(record.result)
        detail = {
            "follow_ups": len(follow_ups),
            "note": "the run had succeeded; the job's completion was lost (its node died or "
            "lost the database) or the job was retried: completed without running a step",
        }
        self.log.event("run.already_succeeded", self.now(), detail=detail)
        try:
            # The event only explains; the completion must not hang on it, nor fail the
            # attempt of a saga that succeeded. Written within the bound of an interrupt.
            async with asyncio.timeout(INTERRUPT_FLUSH_TIMEOUT):
                await self.log.flush()
        except (Exception, asyncio.CancelledError) as exc:
            self.log.close()  # nothing more from this attempt lands later
            if isinstance(exc, asyncio.CancelledError):
                raise
            logger.warning(
                "run %s: its run.already_succeeded event was not written (%s)",
                self.log.run_id,
                exc,
            )
        return RunResult(
            self.workflow.name,
            self.log.run_id,
            RunStatus.SUCCEEDED,
            value=value,
            follow_ups=follow_ups,
            log=self.log,
        )

    async def forward(self) -> None:
        ready: list[tuple[int, str]] = []
        for name, st in self.states.items():
            if st.status is not StepStatus.PENDING:
                continue
            st.waiting = sum(1 for p in self.graph.needs[name] if self.states[p].status not in DONE)
            if st.waiting == 0:
                heapq.heappush(ready, (st.position, name))
        running = self.running
        # Finished tasks queue themselves: one wake-up per completion, whatever the fan-out
        # (asyncio.wait would re-register a callback on every running task each time).
        finished: collections.deque[asyncio.Task[None]] = collections.deque()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None

        def on_done(task: asyncio.Task[None]) -> None:
            finished.append(task)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        try:
            while True:
                while (
                    ready
                    and len(running) < self.limit
                    and self.failure is None
                    and self.log_failure is None
                ):
                    _, name = heapq.heappop(ready)
                    task = loop.create_task(self.run_step(self.states[name]))
                    task.add_done_callback(on_done)
                    running[task] = name
                if not running:
                    return
                if not finished:
                    waiter = loop.create_future()
                    await waiter
                    waiter = None
                done = list(finished)
                finished.clear()
                for task in done:
                    name = running.pop(task)
                    st = self.states[name]
                    if task.cancelled():  # by stop(): the step did not complete
                        self.interrupt(st)
                        continue
                    task.result()  # run_step handles user errors; anything else is a bug
                    if st.status in DONE:
                        for successor in self.graph.feeds[name]:
                            nxt = self.states[successor]
                            nxt.waiting -= 1
                            if nxt.waiting == 0 and nxt.status is StepStatus.PENDING:
                                heapq.heappush(ready, (nxt.position, successor))
                    elif st.status is StepStatus.FAILED:
                        assert st.exc is not None
                        if self.failure is None:
                            self.failure = (name, st.exc)
                            self.stopping.set()
                        else:
                            self.others.append(StepFailure(name, st.exc))
        finally:
            for task in running:
                task.cancel()
            running.clear()

    def stop(self, cause: BaseException) -> None:
        """End the run early, as a step failing for good would, with ``cause`` (the job was
        cancelled) as the failure when none came first: nothing new starts, steps waiting to
        retry give up, async steps under way are cancelled (they are recorded interrupted and
        not undone: whether they took effect is unknown), steps in a thread are awaited (a
        thread cannot be stopped, and undoing what it depends on while it runs would be
        worse); then the completed steps are undone. A rollback already under way goes on
        undisturbed. Call it on the run's event loop."""
        if self.cancelled is not None:
            return
        self.cancelled = cause
        if self.failure is None:
            self.failure = (CANCELLED, cause)
        self.stopping.set()
        if self.opened:
            self.record_stop()
        for task, name in self.running.items():
            if name not in self.in_threads and self.states[name].status is not StepStatus.RETRIED:
                task.cancel()  # a step waiting to retry wakes up (stopping) and gives up

    def log_broken(self, failure: RunLogUnwritable) -> None:
        """The run log gave up writing: stop the run as a node shutdown would. Nothing new
        starts (no step, retry, compensation or undo: none could be recorded), async steps
        under way are cancelled, steps in a thread are awaited (they cannot be stopped);
        nothing is rolled back. The run then raises ``failure``: the attempt fails and the
        job's next attempt resumes the run from what the log holds."""
        if self.log_failure is not None:
            return
        self.log_failure = failure
        self.stopping.set()
        for task, name in self.running.items():
            if name not in self.in_threads:
                task.cancel()

    def record_stop(self) -> None:
        assert self.cancelled is not None
        detail = {"reason": str(self.cancelled), "type": type(self.cancelled).__name__}
        self.log.event("run.cancelled", self.now(), detail=detail)

    def interrupt(self, st: StepState) -> None:
        """A step cut short by :meth:`stop`: pending again, as a rollback of an abandoned run
        shows a step that was running when its attempt ended."""
        previous = st.status
        st.status = StepStatus.PENDING
        self.record(st, "step.interrupted", {"previous_status": previous.value, "stopped": True})

    # --- one step -------------------------------------------------------------------------

    async def run_step(self, st: StepState) -> None:
        spec = st.spec
        name = spec.name
        needed = max((self.states[p].recorded_seq for p in self.graph.needs[name]), default=0)
        if not await self.log_allows(needed):
            return
        span = self.step_span(st, start=False)  # the guard and arguments are not a try
        try:
            if spec.where_fn is not None:
                ctx = self.ctx(st)
                args = (self.instance,) if spec.where_is_method else ()
                guard_kw = self.kwargs(spec.where_arguments, spec.where_context, ctx)
                if not await self.call(spec.where_fn, args, guard_kw, name):
                    st.status, st.value, st.finished_at = StepStatus.SKIPPED, None, self.now()
                    self.record(st, "step.skipped", at=st.finished_at)
                    st.recorded_seq = self.log.seq
                    span.stop(status="skipped")
                    return
            arguments = {a.param: self.value_of(a) for a in spec.arguments}
        except Exception as exc:
            st.tries = max(st.tries, 1)
            self.fail(st, exc, span)
            return
        while True:
            if not self.log.ready(0) and not await self.log_allows():
                return  # the run stops; this try never started
            st.tries += 1
            st.status = StepStatus.RUNNING
            now = self.now()
            st.started_at = st.started_at or now
            self.record(st, "step.started", {"try": st.tries}, now)
            span = self.step_span(st)
            kwargs = dict(arguments)
            step_ctx = None  # made only for a step that takes it (follow-ups come through it)
            if spec.context_param is not None:
                kwargs[spec.context_param] = step_ctx = self.ctx(st)
            error: BaseException | None = None
            retry: Retry | None = None
            try:
                value = await self.call(spec.fn, (self.instance,), kwargs, name)
            except Exception as exc:
                error = exc
            else:
                if isinstance(value, Retry):
                    retry = value
                else:
                    try:
                        stored = self.log.encode_result(value, f"the result of step {name!r}")
                    except StepResultError as exc:
                        error = exc
                    else:
                        follow_ups = step_ctx.follow_ups if step_ctx is not None else []
                        self.succeed_step(st, value, stored, follow_ups, StepStatus.SUCCEEDED, span)
                        return
            if retry is not None or isinstance(error, spec.retry_on):
                if st.tries <= spec.max_retries:
                    if await self.retry_later(st, error, retry, span):
                        continue
                    if self.log_failure is None:
                        self.fail(st, RetryCancelled(name, error), span)
                    return
                error = RetriesExhausted(name, spec.max_retries, error)
            assert error is not None
            if spec.compensate_fn is None:
                self.fail(st, error, span)
                return
            outcome = await self.compensate(st, error, span)
            if outcome == "retry":
                continue
            if outcome is None:
                return

    async def compensate(self, st: StepState, error: BaseException, span: Span) -> str | None:
        """Ask the step's compensation (part of the try, ``span``); returns "retry" to run the
        step again, else None once the step has been settled (succeeded with a value, or
        failed)."""
        spec, name = st.spec, st.spec.name
        if not await self.log_allows():
            return None  # the run stops: the step is left as the log last recorded it
        st.compensations += 1
        ctx = self.ctx(st, st.compensations)
        assert spec.compensate_fn is not None
        try:
            kwargs = self.hook_kwargs(st, "compensate", ctx)
            decision = await self.call(spec.compensate_fn, (self.instance, error), kwargs, name)
        except Exception as exc:
            self.compensated(st, "raised", error=exc, original=error)
            self.fail(st, exc, span)
            return None
        if isinstance(decision, Retry):
            if st.tries <= spec.max_retries:
                self.compensated(st, "retry", original=error)
                if await self.retry_later(st, error, decision, span):
                    return "retry"
                if self.log_failure is None:
                    self.fail(st, RetryCancelled(name, error), span)
                return None
            exhausted = RetriesExhausted(name, spec.max_retries, error)
            self.compensated(st, "retry_refused", original=error)
            self.fail(st, exhausted, span)
            return None
        if isinstance(decision, Continue):
            try:
                stored = self.log.encode_result(
                    decision.value, f"the value compensation of step {name!r} continued with"
                )
            except StepResultError as exc:
                self.fail(st, exc, span)
                return None
            self.compensated(st, "continue", original=error)
            self.succeed_step(
                st, decision.value, stored, ctx.follow_ups, StepStatus.COMPENSATED, span
            )
            return None
        self.compensated(st, "fail", original=error)
        self.fail(st, error, span)
        return None

    def compensated(
        self,
        st: StepState,
        outcome: str,
        *,
        original: BaseException,
        error: BaseException | None = None,
    ) -> None:
        detail: dict[str, Any] = {"outcome": outcome, "error": brief(original)}
        if error is not None:
            detail["raised"] = brief(error)
        self.log.event("step.compensate", self.now(), step=st.spec.name, detail=detail)
        self.emit(
            "workflow.step.compensate", {}, step=st.spec.name, outcome=outcome, error=original
        )

    async def retry_later(
        self, st: StepState, error: BaseException | None, retry: Retry | None, span: Span
    ) -> bool:
        """End the try (``span``) with ``workflow.step.retry`` and wait out the backoff; False
        when the workflow started failing meanwhile (a step waiting to retry has not
        completed: it is not retried, and there is nothing to undo), or the run log gave up
        (the run stops)."""
        if self.failure is not None or self.log_failure is not None:
            return False
        delay = (
            retry.delay
            if retry is not None and retry.delay is not None
            else step_delay(st.spec.backoff, st.tries)
        )
        st.status = StepStatus.RETRIED
        detail: dict[str, Any] = {"try": st.tries, "delay": delay}
        if error is not None:
            detail["error"] = brief(error)
        if retry is not None and retry.reason:
            detail["reason"] = retry.reason
        self.record(st, "step.retried", detail)
        span.end("retry", {"delay": delay}, error=error)
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.stopping.wait()
        return self.failure is None and self.log_failure is None

    def succeed_step(
        self,
        st: StepState,
        value: Any,
        stored: Any,
        follow_ups: list[JobSpec],
        status: StepStatus,
        span: Span,
    ) -> None:
        self.completed_count += 1
        st.status, st.value, st.stored = status, value, stored
        st.follow_ups = [self.linked(spec) for spec in follow_ups]
        st.completed_seq = self.completed_count
        st.finished_at = now = self.now()
        st.error = None
        self.completion.append(st.spec.name)
        self.record(st, f"step.{status.value}", {"try": st.tries}, now)
        st.recorded_seq = self.log.seq
        span.stop(status=status.value, tries=st.tries)

    def linked(self, spec: JobSpec) -> JobSpec:
        """A follow-up job that names the run which enqueued it (``meta.enqueued_by_run``),
        so ``jobsaga runs show`` lists the jobs a succeeded run enqueued. Set when the step
        completes, so the log keeps it with the step and a later attempt that finds the run
        succeeded inserts the same jobs."""
        if self.log.run_id is None:  # an in-memory log has no run to point to
            return spec
        return dataclasses.replace(spec, meta={**spec.meta, ENQUEUED_BY_RUN: self.log.run_id})

    def fail(self, st: StepState, error: BaseException, span: Span) -> None:
        """Fail the step for good, ending its try (``span``) with ``workflow.step.exception``;
        a try that already ended (a retry cancelled while waiting) leaves the step failing
        outside a try."""
        st.status, st.exc, st.error = StepStatus.FAILED, error, error_json(error)
        st.finished_at = now = self.now()
        self.record(st, "step.failed", {"try": st.tries, "error": brief(error)}, now)
        if span.ended:
            span = self.step_span(st, start=False)
        span.fail(error, tries=st.tries)

    # --- endings --------------------------------------------------------------------------

    async def succeed(self) -> RunResult:
        final = self.states[self.workflow.result_step()]
        self.log.set_run(RunStatus.SUCCEEDED.value, self.now(), result=final.stored, finished=True)
        await self.log.flush()
        follow_ups = tuple(
            spec for name in self.completion for spec in self.states[name].follow_ups
        )
        return RunResult(
            self.workflow.name,
            self.log.run_id,
            RunStatus.SUCCEEDED,
            value=final.value,
            follow_ups=follow_ups,
            log=self.log,
        )

    async def roll_back(self) -> RunResult:
        assert self.failure is not None
        failed_step, error = self.failure
        self.log.set_run(
            RunStatus.ROLLING_BACK.value, self.now(), error=self.run_error(failed_step, error, [])
        )
        # Durable before any undo runs: an attempt that dies mid-rollback is resumed as one.
        await self.log.flush()
        undo_errors = list(self.previous_undo_errors)
        undone = [n for n, st in self.states.items() if st.status is StepStatus.UNDONE]
        for name in reversed(self.completion):
            st = self.states[name]
            if st.spec.undo_fn is None or st.status not in COMPLETED:
                continue
            failure = await self.undo(st)
            if failure is None:
                undone.append(name)
            else:
                undo_errors.append(failure)
        if undo_errors:
            status = RunStatus.ROLLBACK_FAILED
        elif undone:
            status = RunStatus.ROLLED_BACK
        else:
            status = RunStatus.FAILED
        self.log.set_run(
            status.value,
            self.now(),
            error=self.run_error(failed_step, error, undo_errors),
            finished=True,
        )
        await self.log.flush()
        workflow_error = WorkflowError(
            self.workflow.name,
            failed_step,
            error,
            undo_errors=tuple(undo_errors),
            other_errors=tuple(self.others),
            undone=tuple(undone),
            run_id=self.log.run_id,
        )
        return RunResult(
            self.workflow.name, self.log.run_id, status, error=workflow_error, log=self.log
        )

    async def undo(self, st: StepState) -> StepFailure | None:
        spec, name = st.spec, st.spec.name
        assert spec.undo_fn is not None
        while True:
            # Each undo starts once what came before is written (the previous undo's
            # outcome included): after a crash, only the undo that was running runs again.
            if not await self.log_allows(self.log.seq):
                if self.log_failure is None:  # the log was closed: the attempt is over
                    raise asyncio.CancelledError
                raise self.log_failure  # the rollback stops; the next attempt carries it on
            st.undo_tries += 1
            ctx = self.ctx(st, st.undo_tries)
            error: BaseException | None = None
            try:
                kwargs = self.hook_kwargs(st, "undo", ctx)
                outcome = await self.call(spec.undo_fn, (self.instance, st.value), kwargs, name)
            except Exception as exc:
                error = exc
            else:
                if not isinstance(outcome, Retry):
                    st.status = StepStatus.UNDONE
                    self.record(st, "step.undone", {"undo_tries": st.undo_tries})
                    self.emit(
                        "workflow.step.undo", {}, step=name, outcome="undone", tries=st.undo_tries
                    )
                    return None
                if st.undo_tries <= spec.undo_retries:
                    delay = (
                        outcome.delay
                        if outcome.delay is not None
                        else step_delay(spec.backoff, st.undo_tries)
                    )
                    detail: dict[str, Any] = {"undo_tries": st.undo_tries, "delay": delay}
                    if outcome.reason:
                        detail["reason"] = outcome.reason
                    self.log.event("step.undo_retried", self.now(), step=name, detail=detail)
                    self.emit(
                        "workflow.step.undo",
                        {"delay": delay},
                        step=name,
                        outcome="retry",
                        tries=st.undo_tries,
                    )
                    if delay > 0:
                        await asyncio.sleep(delay)
                    continue
                error = RetriesExhausted(name, spec.undo_retries, None, what="undo of step")
            st.status = StepStatus.UNDO_FAILED
            st.error = {**error_json(error), "during": "undo"}
            self.record(
                st, "step.undo_failed", {"undo_tries": st.undo_tries, "error": brief(error)}
            )
            self.emit(
                "workflow.step.undo",
                {},
                step=name,
                outcome="failed",
                error=error,
                tries=st.undo_tries,
            )
            return StepFailure(name, error)

    def run_error(
        self, step: str, error: BaseException, undo_errors: list[StepFailure]
    ) -> dict[str, Any]:
        record = (
            {"type": error.type_name, "message": error.message, "traceback": error.traceback_text}
            if isinstance(error, RecordedError)
            else error_json(error)
        )
        return {
            "step": step,
            **record,
            "undo_errors": [{"step": f.step, **brief(f.error)} for f in undo_errors],
            "other_errors": [{"step": f.step, **brief(f.error)} for f in self.others],
        }


@functools.lru_cache(maxsize=4096)
def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, asked once per function (steps, guards and hooks are
    called again and again, and the question walks the function's code flags each time)."""
    return inspect.iscoroutinefunction(fn)


def step_delay(backoff: Backoff | None, tries: int) -> float:
    """Seconds before a step's (or an undo's) next try. A curve that returns NaN retries at
    once, as it always has for steps: NaN cannot be written to the run log, and a run that
    cannot be recorded stops."""
    seconds = retry_delay(backoff, tries, default=STEP_BACKOFF)
    return 0.0 if math.isnan(seconds) else seconds
