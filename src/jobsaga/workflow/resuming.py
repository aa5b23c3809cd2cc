"""A halted saga's job side: the job waits parked, and :func:`resume_run` sets it going again.

A step that returns ``Halt`` stops its run ``halted`` (the executor's part). The run's job
must then wait, durably, for whatever the halt waits for (an approval, a payment): not
completed (the pruner deletes finished jobs, and the run with its job), not failed (no
attempt is used up, no final-failure hook runs). ``WorkflowWorker`` parks it: ``scheduled``
at the far end of time with ``meta.halted_run`` naming the run (:func:`park`).

:func:`resume_run` (``jobsaga runs resume RUN``) merges new inputs into the job's args,
validated as an insert validates them, and makes the job available, in one transaction that
also records ``run.resume_requested`` in the run log. The job's next attempt resumes the
halted run: the steps the log holds as done never run again, and the halted step's result is
its halt value.

One seam needs care: the run's ``halted`` status and the job's parking are two writes. A
node that dies between them leaves the job ``executing`` with its run halted; the lifeline
gives the job another attempt, which must park it again rather than resume a run nobody
resumed. So a resume leaves a mark on the job, the sequence number of the halt it answers
(``meta.resumed_halt``), and an attempt that finds its run halted without that mark parks
the job again at once (:func:`unanswered_halt`), running nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ArgsError, RunStateError, UnknownWorkerError, WorkflowInputError
from ..job import Job, JobState
from ..results import Park
from ..serialization import dumps, ensure_json_object
from .records import RunRecord, RunStatus, get_run, list_runs, read_run
from .runlog import append_event

if TYPE_CHECKING:
    from ..core import AppCore

HALTED_RUN = "halted_run"
"""Job meta: the run a parked job waits on (dropped by the resume)."""
HALTED_STEP = "halted_step"
"""Job meta: the step that halted that run (for ``jobs show``)."""
RESUMED_RUN = "resumed_run"
"""Job meta: the run a resume set going again (kept as a trace)."""
RESUMED_HALT = "resumed_halt"
"""Job meta: the sequence number of the halt event that resume answered."""

HALT_EVENTS = ("run.halted", "step.halted")


@dataclass(frozen=True, slots=True)
class ResumedRun:
    """What :func:`resume_run` did."""

    run_id: int
    job_id: int
    queue: str
    inputs: tuple[str, ...]
    """The args the resume set (their names), in the order given."""
    validated: bool
    """False when the app does not know the job's worker, so the new args were only checked
    to be JSON: the job's attempt validates them (a bad one fails that attempt)."""


def park(run_id: int | None, step: str | None) -> Park:
    """The result that parks a job whose run halted at ``step``."""
    return Park({HALTED_RUN: run_id, HALTED_STEP: step})


def halt_mark(run: RunRecord) -> int | None:
    """The sequence number of the run's latest halt event: which halt a resume answers."""
    seqs = [event.seq for event in run.events_of(*HALT_EVENTS)]
    return max(seqs) if seqs else None


def halted_step(run: RunRecord) -> str | None:
    """The step whose halt the run waits on (its latest ``step.halted`` event)."""
    events = run.events_of("step.halted")
    return events[-1].step if events else None


def unanswered_halt(app: AppCore, job: Job[Any]) -> RunRecord | None:
    """The job's halted run when no resume asked for this attempt: its node died after the
    run halted and before the job was parked (the lifeline gave it this attempt), or the job
    was set available by other means than :func:`resume_run`. The attempt parks the job
    again instead of resuming the run. None (the usual case, at no cost) for a job that
    never halted: only a job that has been attempted before, or carries a halt's meta, looks."""
    meta = job.meta
    if job.attempt <= 1 and HALTED_RUN not in meta and RESUMED_RUN not in meta:
        return None
    found = list_runs(app, status=RunStatus.HALTED, job_id=job.id, top_level=True, limit=1)
    if not found or found[0].id is None:
        return None
    run = get_run(app, found[0].id)
    if run is None:
        return None
    if meta.get(RESUMED_RUN) == run.id and meta.get(RESUMED_HALT) == halt_mark(run):
        return None  # this attempt is the resume of this halt
    return run


def resume_run(
    app: AppCore,
    run_id: int,
    inputs: Mapping[str, Any] | None = None,
    *,
    reason: str | None = None,
) -> ResumedRun:
    """Set a halted run going again: ``inputs`` are merged into its job's args (validated
    with the worker's ``Args`` when the app knows the worker), and the job is made available
    now; its next attempt resumes the run, whose recorded steps never run again. One
    transaction: a concurrent resume of the same run finds the job no longer parked and is
    refused.

    Refused with :class:`RunStateError` when the run is not halted, has no job of its own
    (a child run, a test run), or its job is gone or not parked; with
    :class:`WorkflowInputError` (an :class:`ArgsError`) naming the field when an input is
    unknown or invalid. Nothing is changed when it is refused."""
    given = _given_inputs(run_id, inputs)
    run = get_run(app, run_id)
    if run is None:
        raise RunStateError(f"no run {run_id}")
    if run.status != RunStatus.HALTED:
        raise RunStateError(
            f"run {run_id} is {run.status}, not halted: only a halted run can be resumed"
        )
    if run.is_child:
        raise RunStateError(
            f"run {run_id} is a child run (of run {run.parent_run_id}, step "
            f"{run.parent_step!r}): resume its top-level run, which takes the child up"
        )
    if run.job_id is None:
        raise RunStateError(f"run {run_id} has no job (a test run): nothing can resume it")
    engine = app.engine
    q = engine.queries
    now = app.clock()
    with engine.transaction() as tx:
        rows = tx.execute(q["lock_job_to_resume"], {"id": run.job_id})
        if not rows:
            raise RunStateError(
                f"run {run_id}: its job {run.job_id} is gone (deleted or pruned), so nothing "
                "can run the saga again"
            )
        job = engine.row_to_job(rows[0])
        _check_parked(job, run_id)
        # Read again under the job's lock: a resume that raced this one may have run the
        # saga to a later halt since; the mark must name the halt this resume answers.
        current = read_run(engine, tx, run_id)
        if current is None or current.status != RunStatus.HALTED:
            raise RunStateError(f"run {run_id} is no longer halted: not resumed")
        args, validated = _merged_args(app, job, given, run_id)
        mark = {RESUMED_RUN: run_id, RESUMED_HALT: halt_mark(current)}
        updated = tx.execute(
            q["resume_parked_job"],
            {
                "id": job.id,
                "run_id": run_id,
                "now": engine.time_param(now),
                "args": dumps(args),
                "meta": dumps(mark),
            },
        )
        if not updated:  # the check above holds the row: only a changed schema gets here
            raise RunStateError(f"run {run_id}: job {job.id} is no longer parked; not resumed")
        detail: dict[str, Any] = {"job_id": job.id, "inputs": list(given)}
        if reason:
            detail["reason"] = reason
        append_event(
            engine, tx, run_id, "run.resume_requested", attempt=run.attempt, at=now, detail=detail
        )
        engine.notify(tx, {"queues": [job.queue]})
    app.signal_local_nodes({"queues": [job.queue]})
    return ResumedRun(run_id, job.id, job.queue, tuple(given), validated)


async def aresume_run(
    app: AppCore,
    run_id: int,
    inputs: Mapping[str, Any] | None = None,
    *,
    reason: str | None = None,
) -> ResumedRun:
    """:func:`resume_run` for async code (its database work runs in a thread)."""
    return await asyncio.to_thread(resume_run, app, run_id, inputs, reason=reason)


def _given_inputs(run_id: int, inputs: Mapping[str, Any] | None) -> dict[str, Any]:
    if inputs is None:
        return {}
    if not isinstance(inputs, Mapping):
        raise WorkflowInputError(
            f"run {run_id} not resumed: inputs must be a mapping of names to values, got "
            f"{type(inputs).__name__}"
        )
    bad = [key for key in inputs if not isinstance(key, str)]
    if bad:
        raise WorkflowInputError(f"run {run_id} not resumed: input names must be text: {bad!r}")
    return dict(inputs)


def _check_parked(job: Job[Any], run_id: int) -> None:
    """Refuse unless ``job`` waits parked on ``run_id``."""
    if job.state is JobState.SCHEDULED and job.meta.get(HALTED_RUN) == run_id:
        return
    why = {
        JobState.EXECUTING: "its attempt is still parking it (or its node died doing so, and "
        "the lifeline will give it back): try again in a moment",
        JobState.AVAILABLE: "it is set to run already (resumed, or given another attempt after "
        "its node died, which parks it again)",
        JobState.RETRYABLE: "it waits for another attempt, which parks it again",
    }.get(job.state, "it is finished: nothing will run the saga again")
    if job.state is JobState.SCHEDULED:
        why = "it is scheduled, not parked waiting for this run's resume"
    raise RunStateError(
        f"run {run_id}: job {job.id} is {job.state.value}, not parked waiting for a resume: {why}"
    )


def _merged_args(
    app: AppCore, job: Job[Any], given: Mapping[str, Any], run_id: int
) -> tuple[dict[str, Any], bool]:
    """The job's args with ``given`` merged in, checked as an insert checks them."""
    merged = {**job.raw_args, **given}
    try:
        worker = app.worker_for(job.worker)
    except UnknownWorkerError:
        worker = None
    try:
        if worker is None:
            return dict(ensure_json_object(merged, "args", job.worker)), False
        return worker.validate_args(merged), True
    except ArgsError as exc:
        raise WorkflowInputError(f"run {run_id} not resumed: {exc}") from None
