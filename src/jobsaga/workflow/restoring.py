"""Taking a run up where an earlier attempt left it: its recorded steps read back into the
execution (the parts' steps rebuilt first, level by level), or, for a run that had
succeeded, its result handed back without running anything."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import RecordedError, StepFailure
from .parts import PartStep
from .records import RunStatus, StepRecord, StepStatus
from .runlog import Resumed
from .state import DONE, RunResult, StepState, follow_ups_of, spec_from_json

if TYPE_CHECKING:
    from .executor import Execution

logger = logging.getLogger("jobsaga.workflow")

INTERRUPT_FLUSH_TIMEOUT = 5.0
"""Seconds an interrupted run may spend writing its log before giving up."""


def restore(ex: Execution, resumed: Resumed) -> bool:
    """Take over what an earlier attempt recorded; True when a rollback was under way.

    The steps of parts are rebuilt as the parts had built them (a map's elements from
    its collection, a switch's case from the steps it recorded) before their records
    are read back, level by level."""
    now = ex.now()
    detail: dict[str, Any] = {"attempt": ex.attempt}
    # an operator's rollback of a halted run is no resume of it
    after_halt = resumed.status == RunStatus.HALTED.value and ex.abandon is None
    if after_halt:
        detail["after_halt"] = True
        with contextlib.suppress(Exception):
            detail["inputs"] = ex.log.encode_result(ex.inputs, "the inputs")
    ex.log.event("run.resumed", now, detail=detail)
    records = dict(resumed.steps)
    rolling_back_found = resumed.status == RunStatus.ROLLING_BACK.value or any(
        record.status == StepStatus.FAILED.value for record in records.values()
    )
    failed: tuple[str, BaseException] | None = None
    done: list[tuple[int, str]] = []
    while True:
        for name in list(records):
            st = ex.states.get(name)
            if st is None:  # a part's step (rebuilt below), or one the class lost
                continue
            record = records.pop(name)
            failed = restore_step(ex, st, record, resumed, done, failed)
        if not ex.parts.reopen(records, resumed.plans, rolling_back_found):
            break
    ex.parts.after_restore()
    done.sort()
    ex.completion = [name for _, name in done]
    ex.completed_count = max((seq for seq, _ in done), default=0)
    if resumed.status == RunStatus.ROLLING_BACK.value or failed is not None:
        if failed is None:
            error = resumed.error or {}
            failed = (str(error.get("step", "?")), RecordedError(error))
        ex.failure = failed
        return True
    if after_halt:
        ex.log.set_run(RunStatus.RUNNING.value, now)
    else:
        marker = resumed.result if resumed.status == RunStatus.RUNNING.value else None
        if isinstance(marker, dict) and "halted_step" in marker:
            # The node died while the run was halting: it halts again (nothing new runs).
            halted = marker.get("halted_step")
            st = ex.states.get(halted) if isinstance(halted, str) else None
            ex.halt = (halted, st.value if st is not None else marker.get("value"))
            ex.halt_stored = marker.get("value")
            reason = marker.get("reason")
            ex.halt_reason = reason if isinstance(reason, str) else None
    return False


def restore_step(
    ex: Execution,
    st: StepState,
    record: StepRecord,
    resumed: Resumed,
    done: list[tuple[int, str]],
    failed: tuple[str, BaseException] | None,
) -> tuple[str, BaseException] | None:
    name = st.name
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
            ex.previous_undo_errors.append(StepFailure(name, RecordedError(record.error)))
    elif status is StepStatus.FAILED:
        st.status = status
        st.exc = RecordedError(record.error or {})
        if failed is None and not isinstance(st.spec, PartStep):
            failed = (name, st.exc)
    elif status in (StepStatus.RUNNING, StepStatus.RETRIED):
        if ex.parts.reopens(st):
            st.status = StepStatus.RUNNING  # a part that had started: rebuilt below
        else:
            # Its outcome died with the previous node: run it again, tries continue.
            st.status = StepStatus.PENDING
            ex.record(st, "step.interrupted", {"previous_status": status.value})
    return failed


async def already_succeeded(ex: Execution, resumed: Resumed) -> RunResult:
    """The job's run succeeded in an earlier attempt whose completion was never written
    (its node died, or lost the database, between the run log's commit and the job's
    acknowledgement). A succeeded run is final for its job: nothing runs again; the
    attempt hands back the run's value and the follow-up jobs its steps registered (in
    completion order, as the run returned them), which the job's completion inserts."""
    follow_ups = follow_ups_of(resumed.steps.values())
    value = resumed.result
    record = resumed.steps.get(ex.workflow.result_step())
    if record is not None and record.status != StepStatus.SKIPPED.value:
        with contextlib.suppress(Exception):  # a changed annotation: the JSON form then
            value = ex.states[record.step].spec.restore(record.result)
    detail = {
        "follow_ups": len(follow_ups),
        "note": "the run had succeeded; the job's completion was lost (its node died or "
        "lost the database) or the job was retried: completed without running a step",
    }
    ex.log.event("run.already_succeeded", ex.now(), detail=detail)
    try:
        # The event only explains; the completion must not hang on it, nor fail the
        # attempt of a saga that succeeded. Written within the bound of an interrupt.
        async with asyncio.timeout(INTERRUPT_FLUSH_TIMEOUT):
            await ex.log.flush()
    except (Exception, asyncio.CancelledError) as exc:
        ex.log.close()  # nothing more from this attempt lands later
        if isinstance(exc, asyncio.CancelledError):
            raise
        logger.warning(
            "run %s: its run.already_succeeded event was not written (%s)",
            ex.log.run_id,
            exc,
        )
    return RunResult(
        ex.workflow.name,
        ex.log.run_id,
        RunStatus.SUCCEEDED,
        value=value,
        follow_ups=follow_ups,
        log=ex.log,
    )
