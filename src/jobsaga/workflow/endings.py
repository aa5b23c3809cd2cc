"""How a run ends: its success (the result step's value and the follow-up jobs, in completion
order), or its rollback: every completed step that can be undone, undone once, newest
completion first (a compose step's child runs rolled back as its undo, and those of one that
did not complete rolled back too), each undo starting once what came before is written."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..errors import RecordedError, RetriesExhausted, StepFailure, WorkflowError
from .encoding import error_json
from .parts import ComposeStep
from .records import RunStatus, StepStatus
from .results import Retry
from .state import COMPLETED, RunResult, StepState, brief
from .steps import step_delay

if TYPE_CHECKING:
    from .executor import Execution

UNDO_SETTLED = (*COMPLETED, StepStatus.UNDONE, StepStatus.UNDO_FAILED)
"""A compose step in one of these has its children undone by its own undo (or had them)."""


async def succeed(ex: Execution) -> RunResult:
    final = ex.states[ex.workflow.result_step()]
    ex.log.set_run(RunStatus.SUCCEEDED.value, ex.now(), result=final.stored, finished=True)
    await ex.log.flush()
    follow_ups = tuple(spec for name in ex.completion for spec in ex.states[name].follow_ups)
    return RunResult(
        ex.workflow.name,
        ex.log.run_id,
        RunStatus.SUCCEEDED,
        value=final.value,
        follow_ups=follow_ups,
        log=ex.log,
    )


async def roll_back(ex: Execution) -> RunResult:
    assert ex.failure is not None
    failed_step, error = ex.failure
    ex.log.set_run(
        RunStatus.ROLLING_BACK.value, ex.now(), error=run_error(ex, failed_step, error, [])
    )
    # Durable before any undo runs: an attempt that dies mid-rollback is resumed as one.
    await ex.log.flush()
    undo_errors = list(ex.previous_undo_errors)
    undone = [n for n, st in ex.states.items() if st.status is StepStatus.UNDONE]
    children_rolled_back = 0
    for st in list(ex.states.values()):
        if isinstance(st.spec, ComposeStep) and st.status not in UNDO_SETTLED:
            await undo_may_start(ex)
            count, failures = await ex.children.undo_unfinished(st)
            children_rolled_back += count
            undo_errors += failures
    for name in reversed(ex.completion):
        st = ex.states[name]
        undoable = st.spec.undo_fn is not None or isinstance(st.spec, ComposeStep)
        if not undoable or st.status not in COMPLETED:
            continue
        failure = await undo(ex, st)
        if failure is None:
            undone.append(name)
        else:
            undo_errors.append(failure)
    if undo_errors:
        status = RunStatus.ROLLBACK_FAILED
    elif undone or children_rolled_back:
        status = RunStatus.ROLLED_BACK
    else:
        status = RunStatus.FAILED
    ex.log.set_run(
        status.value,
        ex.now(),
        error=run_error(ex, failed_step, error, undo_errors),
        finished=True,
    )
    await ex.log.flush()
    workflow_error = WorkflowError(
        ex.workflow.name,
        failed_step,
        error,
        undo_errors=tuple(undo_errors),
        other_errors=tuple(ex.others),
        undone=tuple(undone),
        run_id=ex.log.run_id,
    )
    return RunResult(ex.workflow.name, ex.log.run_id, status, error=workflow_error, log=ex.log)


async def undo_may_start(ex: Execution) -> None:
    """Each undo starts once what came before is written (the previous undo's outcome
    included): after a crash, only the undo that was running runs again."""
    if not await ex.log_allows(ex.log.seq):
        if ex.log_failure is None:  # the log was closed: the attempt is over
            raise asyncio.CancelledError
        raise ex.log_failure  # the rollback stops; the next attempt carries it on


async def undo(ex: Execution, st: StepState) -> StepFailure | None:
    spec, name = st.spec, st.name
    if isinstance(spec, ComposeStep):  # compose, recurse: its child runs are rolled back
        await undo_may_start(ex)
        return await ex.children.undo(st)
    assert spec.undo_fn is not None
    while True:
        await undo_may_start(ex)
        st.undo_tries += 1
        ctx = ex.ctx(st, st.undo_tries)
        error: BaseException | None = None
        try:
            kwargs = ex.hook_kwargs(st, "undo", ctx)
            outcome = await ex.call(
                spec.undo_fn, (ex.instance, st.value), kwargs, name, None, "undo"
            )
        except Exception as exc:
            error = exc
        else:
            if not isinstance(outcome, Retry):
                st.status = StepStatus.UNDONE
                ex.record(st, "step.undone", {"undo_tries": st.undo_tries})
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
                ex.log.event("step.undo_retried", ex.now(), step=name, detail=detail)
                if ex.mw.step_events:
                    ex.step_event(name, "step.undo_retried", detail)
                if delay > 0:
                    await asyncio.sleep(delay)
                continue
            error = RetriesExhausted(name, spec.undo_retries, None, what="undo of step")
        st.status = StepStatus.UNDO_FAILED
        st.error = {**error_json(error), "during": "undo"}
        detail = {"undo_tries": st.undo_tries, "error": brief(error)}
        ex.record(st, "step.undo_failed", detail, error=error)
        return StepFailure(name, error)


def run_error(
    ex: Execution, step: str, error: BaseException, undo_errors: list[StepFailure]
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
        "other_errors": [{"step": f.step, **brief(f.error)} for f in ex.others],
    }
