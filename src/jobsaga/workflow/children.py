"""Steps that run whole workflows: ``compose`` (one child run) and ``recurse`` (a child run
per iteration, each one's result the next one's inputs).

A child run is a run of its own in the log, linked to its parent run and step
(:class:`~.runlog.ParentLink`), with the parent's job and attempt, sharing the parent's
concurrency slots. Opened again by the same link (a resumed parent re-running the step), it
is found and taken up: its recorded steps never run again, and a child that had succeeded
hands back its result at once. When the parent rolls back, each child run its completed
steps were recorded in is rolled back too, newest first, as the undo of the step that ran
it; a child that failed has rolled itself back, and its ``WorkflowError`` (with its own undo
trail) is the step's error.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..errors import (
    RetryCancelled,
    RunAbandoned,
    RunLogUnwritable,
    StepFailure,
    WorkflowInputError,
)
from .inputs import validate_context, validate_inputs
from .parts import ComposeStep, RecurseStep
from .records import RunStatus, StepStatus, get_run
from .runlog import ParentLink, RunLog, SqlRunLog
from .state import RunResult, StepState, brief

if TYPE_CHECKING:
    from .dsl import Workflow
    from .executor import Execution


class ChildRunner:
    """The compose and recurse steps of one execution."""

    def __init__(self, execution: Execution) -> None:
        self.ex = execution

    async def run(self, st: StepState) -> None:
        ex = self.ex
        spec = st.spec
        assert isinstance(spec, ComposeStep)
        needed = max((ex.states[p].recorded_seq for p in st.needs), default=0)
        if not await ex.log_allows(needed):
            return
        st.tries += 1
        st.status = StepStatus.RUNNING
        now = ex.now()
        st.started_at = st.started_at or now
        ex.record(st, "step.started", {"try": st.tries}, now)
        st.child = []
        try:
            inputs: Any = {b.param: ex.value_of(b) for b in st.args}
        except Exception as exc:
            ex.fail(st, exc)
            return
        # The child run's row names this run as its parent: this run's row must be durable
        # first, or a crash could leave a child no resumed parent finds.
        if not ex.log.row_written and not await ex.log_allows(ex.log.seq):
            return
        iteration = 0
        follow_ups: list[Any] = []
        while True:
            if iteration and not ex.can_start():  # between two iterations of a recurse
                if ex.log_failure is not None:
                    return
                if ex.failure is None:  # halting: the next iteration runs on resume
                    st.status = StepStatus.PENDING
                    ex.record(st, "step.interrupted", {"previous_status": "running"})
                    return
                ex.fail(st, RetryCancelled(st.name, None))  # done iterations: the rollback's
                return
            try:
                result = await self.child_run(st, spec.workflow, inputs, iteration)
            except RunLogUnwritable as exc:
                ex.log_broken(exc)
                return
            except Exception as exc:  # its inputs or context did not validate
                ex.fail(st, exc)
                return
            if result.status is RunStatus.HALTED:
                st.status = StepStatus.PENDING  # runs again (and finds its child) on resume
                ex.record(st, "step.halted", {"child_run": result.run_id})
                reason = f"its step {st.name!r} composed child run {result.run_id}, which halted"
                ex.halt_now(None, result.value, reason=reason)
                return
            if result.error is not None:
                ex.fail(st, result.error)
                return
            follow_ups.extend(result.follow_ups)
            iteration += 1
            if not isinstance(spec, RecurseStep):
                break
            try:
                done = spec.until is not None and await _ask(spec.until, result.value)
                if done or iteration >= spec.max_iterations:
                    break
                if not isinstance(result.value, Mapping):
                    raise WorkflowInputError(
                        f"recurse {st.name!r}: iteration {iteration} of "
                        f"{spec.workflow.__qualname__} returned a {type(result.value).__name__}"
                        ", not a mapping of its inputs for the next iteration"
                    )
                inputs = dict(result.value)
            except Exception as exc:
                ex.fail(st, exc)
                return
        try:
            stored = ex.log.encode_result(result.value, f"the result of step {st.name!r}")
        except Exception as exc:
            ex.fail(st, exc)
            return
        ex.succeed_step(st, result.value, stored, follow_ups, StepStatus.SUCCEEDED)

    async def child_run(
        self, st: StepState, workflow: type[Workflow], inputs: Any, iteration: int
    ) -> RunResult:
        ex = self.ex
        checked = validate_inputs(workflow, inputs)
        context = ex.context.model_dump() if isinstance(ex.context, BaseModel) else ex.context
        child = self.execution(
            st, workflow, checked, validate_context(workflow, context), iteration
        )
        st.child.append(child)
        return await child.run()

    def execution(
        self,
        st: StepState,
        workflow: type[Workflow],
        inputs: Mapping[str, Any],
        context: Any,
        iteration: int,
        abandon: BaseException | None = None,
    ) -> Execution:
        ex = self.ex
        link = ParentLink(ex.log.run_id, st.name, iteration)
        log: RunLog
        if isinstance(ex.log, SqlRunLog):
            log = SqlRunLog(
                workflow.name,
                engine=ex.log.engine,
                write_timeout=ex.log.write_timeout,
                parent=link,
            )
        else:
            log = RunLog(workflow.name, parent=link)
        child = type(ex)(  # an Execution: this module sits below the executor
            ex.app,
            workflow,
            inputs,
            context,
            log=log,
            job=ex.job,
            attempt=ex.attempt,
            threads=ex.threads(),  # the parent's: a child rolled back later still has it
            slots=ex.slots,
            abandon=abandon,
        )
        child.parent = ex
        child.meta["job_id"] = ex.meta["job_id"]  # the parent's, also when it runs jobless
        return child

    # --- undo: the parent rolls back --------------------------------------------------------

    def rollback_cause(self) -> RunAbandoned:
        ex = self.ex
        assert ex.failure is not None
        parent = f"run {ex.log.run_id}" if ex.log.run_id is not None else "run"
        step, error = ex.failure
        why = str(error) if step.startswith("(") else f"step {step!r} failed"  # (cancelled)...
        return RunAbandoned(f"its parent {parent} is rolling back ({why})")

    async def undo(self, st: StepState) -> StepFailure | None:
        """Roll back the child runs of a completed compose or recurse step, newest first."""
        ex = self.ex
        st.undo_tries += 1
        _, errors = await self.roll_back_children(st)
        if not errors:
            st.status = StepStatus.UNDONE
            ex.record(st, "step.undone", {"undo_tries": st.undo_tries})
            return None
        error = errors[0]
        st.status = StepStatus.UNDO_FAILED
        st.error = {**brief(error), "during": "undo"}
        detail = {"undo_tries": st.undo_tries, "error": brief(error)}
        ex.record(st, "step.undo_failed", detail, error=error)
        return StepFailure(st.name, error)

    async def undo_unfinished(self, st: StepState) -> tuple[int, list[StepFailure]]:
        """A compose or recurse step that did not complete can still leave child runs whose
        steps completed: a recurse that failed at a later iteration, a child that halted, an
        attempt cut short while a child ran. The step is not undone (it did not complete),
        but those children are rolled back with the parent."""
        if st.tries == 0:
            return 0, []  # never started: no child run
        count, errors = await self.roll_back_children(st)
        return count, [StepFailure(st.name, error) for error in errors]

    async def roll_back_children(self, st: StepState) -> tuple[int, list[BaseException]]:
        """Roll back, newest first, each of the step's child runs whose completed steps
        stand (succeeded, halted, or left running); one that failed rolled itself back."""
        cause = self.rollback_cause()
        children: list[Execution] = [
            child for child in st.child or [] if child.outcome in UNDO_CHILD_OUTCOMES
        ]
        if st.child is None:  # ran by an earlier attempt: found in the log
            children = await self.recorded_children(st, cause)
        errors: list[BaseException] = []
        undid = 0  # children whose rollback undid something (one with nothing ends failed)
        for child in reversed(children):
            result = await child.roll_back_as_child(cause)
            if result.status in (RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED):
                undid += 1
            if result.status is RunStatus.ROLLBACK_FAILED and result.error is not None:
                errors.append(result.error)
        return undid, errors

    async def recorded_children(self, st: StepState, cause: BaseException) -> list[Execution]:
        """The child runs of a step an earlier attempt ran (this one resumed the parent)
        whose completed steps stand, taken up from the log to be rolled back."""
        ex = self.ex
        spec = st.spec
        assert isinstance(spec, ComposeStep)
        if ex.log.run_id is None:
            return []
        parent = await asyncio.to_thread(get_run, ex.app, ex.log.run_id)
        if parent is None:
            return []
        found = sorted(
            (
                c
                for c in parent.children
                if c.parent_step == st.name and c.status in UNDO_CHILD_STATUSES
            ),
            key=lambda c: c.iteration,
        )
        children: list[Execution] = []
        for record in found:
            run = await asyncio.to_thread(get_run, ex.app, record.id)
            if run is None:
                continue
            children.append(
                self.execution(
                    st,
                    spec.workflow,
                    validate_inputs(spec.workflow, run.inputs),
                    validate_context(spec.workflow, run.context, stored=True),
                    record.iteration,
                    abandon=cause,
                )
            )
        return children


UNDO_CHILD_STATUSES = frozenset({"succeeded", "halted", "running", "rolling_back"})
"""A child run in one of these has completed steps that stand (one that failed rolled itself
back)."""
UNDO_CHILD_OUTCOMES = frozenset({RunStatus.SUCCEEDED, RunStatus.HALTED, None})
"""The same for a child run of this attempt: None, cut short before it ended."""


async def _ask(fn: Any, value: Any) -> Any:
    outcome = fn(value)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    return outcome
