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
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

from .. import _context
from ..errors import (
    RunLogUnwritable,
    RunTimeout,
    StepFailure,
)
from ..job import Job, JobSpec
from .children import ChildRunner
from .context import StepContext
from .dsl import StepDef, Workflow
from .encoding import error_json
from .endings import roll_back, succeed
from .middleware import MiddlewareChain, RunInfo, StepCode, StepEvent, StepEventKind
from .part_runs import PartRunner, Placement
from .parts import ComposeStep, PartStep
from .paths import follow_path
from .plan import INPUT, STEP, Binding, Instance
from .records import RunStatus, StepStatus
from .restoring import INTERRUPT_FLUSH_TIMEOUT, already_succeeded, restore
from .results import Halt
from .runlog import RunLog
from .scheduling import Claim, Slots, top_frame, top_level
from .state import (
    DONE,
    RunResult,
    StepState,
    brief,
)
from .stepping import run_step
from .telemetry_middleware import TelemetryMiddleware

if TYPE_CHECKING:
    from ..core import AppCore

logger = logging.getLogger("jobsaga.workflow")

ABANDONED = "(abandoned)"
"""The step name a rollback started by an operator is recorded under."""
CANCELLED = "(cancelled)"
"""The step name the rollback of a run whose job was cancelled is recorded under."""
TIMED_OUT = "(timeout)"
"""The step name the rollback of a run that overran its ``timeout`` is recorded under."""
ENQUEUED_BY_RUN = "enqueued_by_run"
"""The meta key of a follow-up job naming the run that enqueued it."""
NO_MIDDLEWARE = MiddlewareChain()


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
        slots: Slots | None = None,
    ) -> None:
        self.app = app
        self.abandon = abandon
        self.workflow = workflow
        self.instance = workflow()
        self.inputs = dict(inputs)
        self.context = context
        self.log = log
        self.job = job
        self.attempt = attempt
        self.telemetry = app.telemetry
        self.states: dict[str, StepState] = {}
        for index, (name, spec, args, guard_args, needs) in enumerate(top_level(workflow)):
            self.states[name] = StepState(spec, index, name, args, guard_args, needs)
        for name, st in self.states.items():
            for need in st.needs:
                self.states[need].feeds.append(name)
        self.ready: list[tuple[int, str]] = []
        """Steps ready to start (position, name): a heap, declaration order first."""
        self.slots = slots or Slots(workflow.options.max_concurrency)
        """The run's ``max_concurrency``, shared with its composed child runs."""
        self.halt: tuple[str | None, Any] | None = None
        """Set when a step returned ``Halt`` (or the run's timeout halts it): the step and
        the value."""
        self.parent: Any = None
        """For a child run (compose, recurse): the parent's execution."""
        self.halt_stored: Any = None
        self.halt_reason: str | None = None
        self.halt_deadline: float | None = None
        self.wake: Callable[[], None] | None = None
        """Wakes the scheduler (set while :meth:`forward` runs)."""
        self.parts = PartRunner(self, top_frame(workflow))
        self.children = ChildRunner(self)
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
        self.outcome: RunStatus | None = None
        """How the run ended (None until it did, and when it was cut short)."""
        self.cancelled: BaseException | None = None
        """Set by :meth:`stop`: why the run was stopped."""
        self.log_failure: RunLogUnwritable | None = None
        """Set when the run log gave up writing (:meth:`log_broken`): the run stops."""
        log.on_broken = self.log_broken
        self.mw = NO_MIDDLEWARE
        """The run's middleware (:meth:`middleware`), set when the run starts."""
        self.run_info: RunInfo | None = None
        """What the middleware is told about this run, set when it starts."""
        self.meta: dict[str, Any] = {
            "workflow": workflow.name,
            "run_id": None,
            "job_id": job.id if job is not None else None,
            "attempt": attempt,
        }

    # --- small helpers --------------------------------------------------------------------

    def now(self) -> datetime:
        return self.app.clock()

    def middleware(self) -> MiddlewareChain:
        """A child run's: its parent's middleware; else jobsaga's telemetry events (while a
        handler is attached, as a job's span) and the app's. Then the workflow class's."""
        if self.parent is not None:
            inherited: tuple[Any, ...] = self.parent.mw.middleware
        else:
            inherited = self.app.workflow_middleware
            if self.telemetry.active:
                inherited = (TelemetryMiddleware(self.telemetry), *inherited)
        own = self.workflow.options.middleware
        return MiddlewareChain((*inherited, *own)) if inherited or own else NO_MIDDLEWARE

    def record(
        self,
        st: StepState,
        kind: str,
        detail: Any = None,
        at: datetime | None = None,
        *,
        error: BaseException | None = None,
        outcome: str | None = None,
    ) -> None:
        """Log a step transition ``kind`` (``step.<kind>``), and tell the middleware."""
        self.log.step(st.row(), kind, at or self.now(), detail)
        if self.mw.step_events:
            self.step_event(st.name, kind, detail, error, outcome)

    def step_event(
        self,
        step: str,
        kind: str,
        detail: Mapping[str, Any] | None,
        error: BaseException | None = None,
        outcome: str | None = None,
    ) -> None:
        """The middleware's view of a transition the log recorded: the exception itself
        rather than its recorded text."""
        assert self.run_info is not None
        detail = detail or {}
        event = StepEvent(
            cast(StepEventKind, kind.removeprefix("step.")),
            step,
            tries=detail.get("try", detail.get("undo_tries")),
            error=error,
            delay=detail.get("delay"),
            reason=detail.get("reason"),
            outcome=outcome or detail.get("outcome"),
        )
        self.mw.step_event(self.run_info, event)

    def ctx(self, st: StepState, tries: int | None = None) -> StepContext[Any]:
        """The ``ctx`` of a step's code; ``tries``: the count of the code called (an undo's
        or a compensation's own), the step's when None."""
        step_tries = max(1, st.tries)
        return StepContext(
            workflow=self.workflow.name,
            step=st.name,
            run_id=self.log.run_id,
            job=self.job,
            attempt=self.attempt,
            tries=step_tries if tries is None else tries,
            context=self.context,
            inputs=self.inputs,
            step_tries=step_tries,
        )

    def value_of(self, binding: Binding) -> Any:
        kind = binding.kind
        if kind == STEP:
            source = self.states[binding.source]
            if source.status is StepStatus.SKIPPED:
                return None  # a skipped step's result is None, and so is any field of it
            value = source.value
        elif kind == INPUT:
            value = self.inputs[binding.source]
        else:
            value = binding.const
        return follow_path(value, binding.argument) if binding.argument.path else value

    def kwargs(
        self, bindings: tuple[Binding, ...], context_param: str | None, ctx: StepContext[Any]
    ) -> dict[str, Any]:
        values = {b.param: self.value_of(b) for b in bindings}
        if context_param is not None:
            values[context_param] = ctx
        return values

    def hook_kwargs(self, st: StepState, kind: str, ctx: StepContext[Any]) -> dict[str, Any]:
        context_param, shared = st.spec.hook_wiring.get(kind, (None, ()))
        own = {b.param: b for b in st.args}
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
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        step: str,
        placement: Placement | None = None,
        code: StepCode = "step",
    ) -> Any:
        """Call user code with the enqueue guard set: coroutines on the loop, the rest in
        threads; a step of an ``around`` group where the group was entered. The
        middleware's ``around_step`` is entered first, in the context the code runs in
        (which a thread gets a copy of)."""
        if not self.mw.wraps(code):
            return await self.call_code(fn, args, kwargs, step, placement)
        assert self.run_info is not None
        around = self.mw.around_step(self.run_info, step, code)
        enter = placement.context.run if placement is not None else _call
        enter(around.__enter__)
        try:
            result = await self.call_code(fn, args, kwargs, step, placement)
        except BaseException as exc:
            enter(around.__exit__, type(exc), exc, exc.__traceback__)
            raise
        enter(around.__exit__, None, None, None)
        return result

    async def call_code(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        step: str,
        placement: Placement | None,
    ) -> Any:
        if placement is not None:
            return await self.call_in_place(fn, args, kwargs, step, placement)
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

    async def call_in_place(
        self,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        step: str,
        placement: Placement,
    ) -> Any:
        def guarded() -> Any:
            token = _context.current_step.set(step)
            try:
                return fn(*args, **kwargs)
            finally:
                _context.current_step.reset(token)

        if is_coroutine_function(fn):

            async def guarded_async() -> Any:
                token = _context.current_step.set(step)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    _context.current_step.reset(token)

            loop = asyncio.get_running_loop()
            return await loop.create_task(guarded_async(), context=placement.context)
        self.in_threads.add(step)
        try:
            result = await asyncio.get_running_loop().run_in_executor(
                placement.threads, functools.partial(placement.context.run, guarded)
            )
        finally:
            self.in_threads.discard(step)
        if inspect.isawaitable(result):
            result = await result
        return result

    # --- the steps of parts -----------------------------------------------------------------

    def add_node(
        self,
        spec: StepDef,
        name: str,
        args: tuple[Binding, ...],
        guard_args: tuple[Binding, ...],
        needs: tuple[str, ...],
        instance: Instance,
    ) -> StepState:
        """A step of a part's body joins the run (when the part starts)."""
        st = StepState(spec, len(self.states), name, args, guard_args, needs, instance=instance)
        self.states[name] = st
        for need in needs:
            self.states[need].feeds.append(name)
        self.log.steps.setdefault(name, st.row())  # written as pending if it never moves
        return st

    async def run_node(self, st: StepState) -> None:
        spec = st.spec
        if not spec.composite:
            await run_step(self, st)
        elif isinstance(spec, PartStep):
            await self.parts.run(st)
        else:
            await self.children.run(st)

    def fail_parts(self, st: StepState) -> None:
        """A step of a part failed for good: every part around it fails with it."""
        instance = st.instance
        while instance is not None:
            part = self.states[instance.part]
            if part.status is StepStatus.FAILED:
                return
            part.status, part.exc, part.error = StepStatus.FAILED, st.exc, st.error
            part.finished_at = now = self.now()
            assert st.exc is not None
            detail = {"by": st.name, "error": brief(st.exc)}
            self.record(part, "step.failed", detail, now, error=st.exc)
            instance = part.instance

    def fail_step_of_part(self, part: StepState, failed: StepState) -> None:
        """A step of an ``around`` group failed (run by the group, not the scheduler)."""
        assert failed.exc is not None
        if self.failure is None:
            self.failure = (failed.name, failed.exc)
            self.stopping.set()
        elif failed.exc is not self.failure[1]:
            self.others.append(StepFailure(failed.name, failed.exc))
        self.fail_parts(failed)

    def is_part_failure(self, st: StepState) -> bool:
        """A part failed because a step in it did: that step's error is already counted."""
        if not isinstance(st.spec, PartStep) or self.failure is None:
            return False
        return st.exc is self.failure[1] or any(st.exc is o.error for o in self.others)

    # --- the run --------------------------------------------------------------------------

    async def run(self) -> RunResult:
        resumed = await self.log.open(
            self.inputs,
            self.context,
            self.states,
            job_id=self.meta["job_id"],
            attempt=self.attempt,
            now=self.now(),
            dag=self.workflow.graph.dag,
        )
        self.meta["run_id"] = self.log.run_id
        if (
            resumed is not None
            and resumed.status == RunStatus.SUCCEEDED.value
            and self.abandon is None
        ):
            self.outcome = RunStatus.SUCCEEDED
            return await already_succeeded(self, resumed)
        self.opened = True
        self.mw = self.middleware()
        self.run_info = self.info(resumed is not None)  # a child run's names it as its parent
        if self.mw:
            self.mw.run_started(self.run_info)
        try:
            rolling_back = restore(self, resumed) if resumed is not None else False
            if self.cancelled is not None:  # stopped while the log was being opened
                self.record_stop()
            if self.abandon is not None and not rolling_back:
                # An operator gave up on this run: undo what completed, run nothing more.
                detail = {"reason": str(self.abandon), "type": type(self.abandon).__name__}
                self.log.event("run.abandoned", self.now(), detail=detail)
                self.failure = (ABANDONED, self.abandon)
                rolling_back = True
            if not rolling_back:
                timer = None
                if self.workflow.options.timeout is not None:
                    timer = asyncio.get_running_loop().call_later(
                        self.workflow.options.timeout, self.run_timed_out
                    )
                try:
                    await self.forward()
                finally:
                    if timer is not None:
                        timer.cancel()
            if self.log_failure is not None:
                raise self.log_failure
            if self.failure is not None:
                result = await roll_back(self)
            elif self.halt is not None:
                result = await self.halted()
            else:
                self.check_all_done()
                result = await succeed(self)
        except asyncio.CancelledError as cancelled:
            # Cut short (job timeout, node shutdown): leave the run resumable, with what is
            # known written down before the next attempt reads it.
            self.log.event("run.interrupted", self.now(), detail={"attempt": self.attempt})
            with contextlib.suppress(Exception):
                async with asyncio.timeout(INTERRUPT_FLUSH_TIMEOUT):
                    await self.log.flush()
            self.log.close()
            self.ended(None, interrupted=cancelled)
            raise
        except BaseException as exc:  # the log gave up (or a bug): the next attempt resumes
            self.ended(None, interrupted=exc)
            raise
        finally:
            if self._threads is not None:
                self._threads.shutdown(wait=False)
        self.outcome = result.status
        self.ended(result)
        return result

    def info(self, resumed: bool) -> RunInfo:
        link = self.log.parent
        return RunInfo(
            workflow=self.workflow.name,
            run_id=self.log.run_id,
            job_id=self.meta["job_id"],
            attempt=self.attempt,
            resumed=resumed,
            job=self.job,
            context=self.context,
            inputs=MappingProxyType(self.inputs),
            parent=self.parent.run_info if self.parent is not None else None,
            parent_step=link.step if link is not None else None,
        )

    def ended(self, result: RunResult | None, interrupted: BaseException | None = None) -> None:
        """Tell the middleware how the run ended: ``result``, or ``interrupted``."""
        if not self.mw:
            return
        assert self.run_info is not None
        if result is None:
            assert interrupted is not None
            self.mw.run_interrupted(self.run_info, interrupted)
        elif result.status is RunStatus.HALTED:
            self.mw.run_halted(self.run_info, result.value)
        elif result.error is not None:
            self.mw.run_failed(self.run_info, result.error, result.status)
        else:
            self.mw.run_completed(self.run_info, result.value)

    def check_all_done(self) -> None:
        """A run that neither failed nor halted has every step done; one left behind is a
        scheduler bug, which must fail loudly rather than pass as a success."""
        left = [name for name, st in self.states.items() if st.status not in DONE]
        if left:
            raise AssertionError(f"run {self.log.run_id}: steps never ran: {left[:5]}")

    def halted_by(self, st: StepState, halt: Halt, stored: Any) -> None:
        """A step returned ``Halt``: it completed with the halt value; the run halts."""
        detail: dict[str, Any] = {"value": stored}
        if halt.reason:
            detail["reason"] = halt.reason
        self.record(st, "step.halted", detail)
        self.halt_now(st.name, halt.value, stored)

    def halt_now(
        self, step: str | None, value: Any, stored: Any = None, reason: str | None = None
    ) -> None:
        """Stop starting steps; those under way are awaited up to ``halt_timeout``. The
        marker in the run's row tells a resumed attempt that the run was halting."""
        if self.halt is not None or self.failure is not None:
            return
        self.halt = (step, value)
        self.halt_stored = stored
        self.halt_reason = reason
        marker = {"halted_step": step, "value": stored, **({"reason": reason} if reason else {})}
        self.log.set_run(RunStatus.RUNNING.value, self.now(), result=marker)
        self.stopping.set()
        if self.wake is not None:
            self.wake()

    async def halt_wait(self, waiter: asyncio.Future[None]) -> bool:
        """Wait for a step under way while halting; False once ``halt_timeout`` is over."""
        loop = asyncio.get_running_loop()
        if self.halt_deadline is None:
            self.halt_deadline = loop.time() + self.workflow.options.halt_timeout
        try:
            async with asyncio.timeout_at(self.halt_deadline):
                await waiter
        except TimeoutError:
            return False
        return True

    async def halted(self) -> RunResult:
        assert self.halt is not None
        step, value = self.halt
        now = self.now()
        marker = {"halted_step": step, "value": self.halt_stored}
        detail: dict[str, Any] = {"value": self.halt_stored}
        if self.halt_reason:
            detail["reason"] = marker["reason"] = self.halt_reason
        self.log.event("run.halted", now, step=step, detail=detail)
        self.log.set_run(RunStatus.HALTED.value, now, result=marker)
        await self.log.flush()
        return RunResult(
            self.workflow.name,
            self.log.run_id,
            RunStatus.HALTED,
            value=value,
            halted_step=step,
            log=self.log,
        )

    async def roll_back_as_child(self, cause: BaseException) -> RunResult:
        """Undo this child run's completed steps: its parent is rolling back. A child run of
        this attempt is rolled back in place; one an earlier attempt ran is opened from the
        log first (``abandon``)."""
        if not self.opened:
            return await self.run()
        if self.failure is None:
            self.failure = (ABANDONED, cause)
        detail = {"reason": str(cause), "type": type(cause).__name__}
        self.log.event("run.abandoned", self.now(), detail=detail)
        return await roll_back(self)

    def can_start(self) -> bool:
        return self.failure is None and self.log_failure is None and self.halt is None

    def push_ready(self, st: StepState) -> None:
        heapq.heappush(self.ready, (st.position, st.name))

    async def forward(self) -> None:
        states = self.states
        reopened = []
        for st in list(states.values()):
            if st.status is StepStatus.PENDING:
                if st.instance is not None and not st.instance.admitted:
                    continue
                st.waiting = sum(1 for p in st.needs if states[p].status not in DONE)
                if st.waiting == 0:
                    self.push_ready(st)
            elif st.status is StepStatus.RUNNING and st.instances is not None:
                reopened.append(st)
        for st in reopened:
            if st.instance is None or st.instance.admitted:
                self.parts.progress(st)  # a part a resumed run rebuilt: admits its steps
            # (a part inside an instance not admitted yet moves on when that one is)
        ready = self.ready
        running = self.running
        slots = self.slots
        slotted: set[asyncio.Task[None]] = set()
        # Finished tasks queue themselves: one wake-up per completion, whatever the fan-out
        # (asyncio.wait would re-register a callback on every running task each time).
        finished: collections.deque[asyncio.Task[None]] = collections.deque()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] | None = None

        def wake() -> None:
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def on_done(task: asyncio.Task[None]) -> None:
            finished.append(task)
            wake()

        claim = Claim(wake)
        self.wake = wake
        try:
            while True:
                while ready and self.can_start():
                    _, name = ready[0]
                    st = states[name]
                    takes_slot = st.spec.holds_slot  # a compose step's child takes them
                    if takes_slot and not slots.take(claim):
                        break  # a slot frees when a step of this run (or its family) ends
                    heapq.heappop(ready)
                    task = loop.create_task(self.run_node(st))
                    task.add_done_callback(on_done)
                    running[task] = name
                    if takes_slot:
                        slotted.add(task)
                if claim.granted and not (ready and self.can_start()):
                    slots.hand_back(claim)
                if not running and not (ready and self.can_start()):
                    return
                if not finished:
                    waiter = loop.create_future()
                    if self.halt is None or self.failure is not None:
                        await waiter
                    elif not await self.halt_wait(waiter):
                        for task in running:
                            task.cancel()  # still running past halt_timeout: runs on resume
                    waiter = None
                done = list(finished)
                finished.clear()
                for task in done:
                    name = running.pop(task)
                    if task in slotted:
                        slotted.discard(task)
                        slots.give()
                    st = states[name]
                    if task.cancelled():  # by stop(): the step did not complete
                        self.interrupt(st)
                        continue
                    task.result()  # run_step handles user errors; anything else is a bug
                    if st.status in DONE:
                        self.node_done(st)
                    elif st.status is StepStatus.RETRIED and self.halt is not None:
                        self.interrupt(st)  # waiting to retry when the run halted: runs on resume
                    elif st.status is StepStatus.FAILED:
                        assert st.exc is not None
                        if self.failure is None:
                            self.failure = (name, st.exc)
                            self.stopping.set()
                        elif not self.is_part_failure(st):
                            self.others.append(StepFailure(name, st.exc))
                        self.fail_parts(st)
        finally:
            self.wake = None
            slots.leave(claim)
            for task in running:
                task.cancel()
                if task in slotted:
                    slots.give()
            running.clear()

    def node_done(self, st: StepState) -> None:
        """A step (or part) is done: its dependents may start, and its instance counts it."""
        states = self.states
        for successor in st.feeds:
            nxt = states[successor]
            nxt.waiting -= 1
            if (
                nxt.waiting == 0
                and nxt.status is StepStatus.PENDING
                and (nxt.instance is None or nxt.instance.admitted)
            ):
                self.push_ready(nxt)
        instance = st.instance
        if instance is not None:
            instance.left -= 1
            if instance.left == 0:
                self.parts.done(instance)

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
        self.stop_steps(cause)

    def stop_steps(self, cause: BaseException) -> None:
        """Stop the steps under way for a rollback: async ones are cancelled (not completed,
        so not undone), threads are awaited, and a child run is stopped the same way, so it
        rolls its own completed steps back before the parent does."""
        for task, name in self.running.items():
            st = self.states[name]
            if isinstance(st.spec, ComposeStep) and st.child:
                st.child[-1].stop(cause)  # its compose step then fails with its rollback
            elif st.placement is not None and any(
                n.startswith(st.name + ".") for n in self.in_threads
            ):
                pass  # an around group whose step runs in its thread: it stops after it
            elif name not in self.in_threads and st.status is not StepStatus.RETRIED:
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

    # --- one step (its tries: stepping.py) ------------------------------------------------

    def succeed_step(
        self,
        st: StepState,
        value: Any,
        stored: Any,
        follow_ups: list[JobSpec],
        status: StepStatus,
    ) -> None:
        self.completed_count += 1
        st.status, st.value, st.stored = status, value, stored
        st.follow_ups = [self.linked(spec) for spec in follow_ups]
        st.completed_seq = self.completed_count
        st.finished_at = now = self.now()
        st.error = None
        self.completion.append(st.name)
        self.record(st, f"step.{status.value}", {"try": st.tries}, now)
        st.recorded_seq = self.log.seq

    def linked(self, spec: JobSpec) -> JobSpec:
        """A follow-up job that names the run which enqueued it (``meta.enqueued_by_run``),
        so ``jobsaga runs show`` lists the jobs a succeeded run enqueued. Set when the step
        completes, so the log keeps it with the step and a later attempt that finds the run
        succeeded inserts the same jobs."""
        if self.log.run_id is None:  # an in-memory log has no run to point to
            return spec
        return dataclasses.replace(spec, meta={**spec.meta, ENQUEUED_BY_RUN: self.log.run_id})

    def fail(self, st: StepState, error: BaseException) -> None:
        """Fail the step for good, ending its try, if one is under way (not when its guard
        or arguments raised, nor when its retry was cancelled while waiting)."""
        st.status, st.exc, st.error = StepStatus.FAILED, error, error_json(error)
        st.finished_at = now = self.now()
        self.record(st, "step.failed", {"try": st.tries, "error": brief(error)}, now, error=error)

    def run_timed_out(self) -> None:
        """The run's ``timeout`` is over: it halts, or fails (and rolls back) with
        ``RunTimeout``, as ``on_timeout`` says."""
        if self.failure is not None or self.halt is not None:
            return
        options = self.workflow.options
        detail = {"timeout": options.timeout, "then": options.on_timeout}
        self.log.event("run.timed_out", self.now(), detail=detail)
        if options.on_timeout == "halt":
            self.halt_now(
                None, None, reason=f"the run ran past its timeout of {options.timeout:g}s"
            )
            return
        cause = RunTimeout(f"the run took longer than its timeout of {options.timeout:g}s")
        self.failure = (TIMED_OUT, cause)
        self.stopping.set()
        self.stop_steps(cause)
        if self.wake is not None:
            self.wake()


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``: what ``Context.run`` does, in the current context."""
    return fn(*args)


@functools.lru_cache(maxsize=4096)
def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """``inspect.iscoroutinefunction``, asked once per function (steps, guards and hooks are
    called again and again, and the question walks the function's code flags each time)."""
    return inspect.iscoroutinefunction(fn)
