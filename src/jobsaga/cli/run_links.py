"""How ``jobsaga runs`` tells a run's links to other runs and its halt: whose child run it is
(``runs list``'s PARENT, ``runs show``'s ``child of run 5 (step 'ship')``), and which step
halted a halted run, with what, and how it goes on. Kept apart from the commands
(``cli/runs.py``): these are the phrases, tested through them.
"""

from __future__ import annotations

from typing import Any

from ..workflow.records import RunRecord
from .trail import value_text


def parent_text(run: RunRecord) -> str:
    """Which run a child run belongs to, as ``runs list`` says it: ``5:ship`` (the parent
    run, its step), ``5:loop#2`` for a later iteration of recurse; blank for a top-level run."""
    if run.parent_step is None:
        return ""
    parent = "-" if run.parent_run_id is None else str(run.parent_run_id)
    iteration = f"#{run.iteration}" if run.iteration else ""
    return f"{parent}:{run.parent_step}{iteration}"


def child_of_text(run: RunRecord) -> str:
    """``child of run 5 (step 'ship', iteration 2)``: the line ``runs show`` gives a child."""
    where = f"step {run.parent_step!r}" + (f", iteration {run.iteration}" if run.iteration else "")
    if run.parent_run_id is None:
        return f"child of a run whose log was kept in memory ({where})"
    return f"child of run {run.parent_run_id} ({where})"


def halt_of(run: RunRecord) -> tuple[str | None, Any]:
    """The step that halted the run and the value it halted with (its last ``step.halted``
    event); ``(None, None)`` when the log holds no such event."""
    for event in reversed(run.events):
        if event.kind == "step.halted":
            return event.step, (event.detail or {}).get("value")
    return None, None


def halt_reason(run: RunRecord) -> str | None:
    """Why a run halted without a step's ``Halt``: its run.halted event says (a timeout, a
    child run that halted)."""
    for event in reversed(run.events):
        if event.kind == "run.halted":
            reason = (event.detail or {}).get("reason")
            return reason if isinstance(reason, str) else None
        detail = event.detail or {}
        if event.kind == "step.halted" and "child_run" in detail:
            return f"its step {event.step!r} composed child run {detail['child_run']}, which halted"
    return None


def halted_lines(run: RunRecord, same_database: str = "") -> list[str]:
    """What ``runs show`` says of a halted run: the step that halted it and the value it
    halted with, and how it goes on (the job's next attempt, given inputs by ``runs
    resume``; a halted child run goes on with its parent)."""
    step, value = halt_of(run)
    reason = halt_reason(run)
    if reason is not None:
        lines = [f"halted: {reason}"]
    elif step is not None:
        lines = [f"halted by step {step!r}: {value_text(value)}"]
    else:
        lines = ["halted (no halting step recorded)"]
    if run.parent_step is not None and run.parent_run_id is not None:
        lines.append(
            f"  resumed with its parent run {run.parent_run_id}: "
            f"jobsaga runs show {run.parent_run_id}{same_database}"
        )
    elif run.parent_step is None:
        lines.append(f"  resume: jobsaga runs resume {run.id} --input key=value{same_database}")
    return lines
