"""How ``jobsaga jobs show`` tells one job: what it is, its times, its errors, its saga runs.

Kept apart from the commands (``cli/jobs.py``) because the errors have rules: an error that
repeats attempt after attempt (a saga that rolled back twice, a gateway down for every try)
is said once, counted, with one traceback; and a traceback shows the user's frames, jobsaga's
own folded as ``runs show`` folds them (``-v`` shows every frame).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import click

from ..job import Job, JobState
from ..workflow.records import RunRecord
from ..workflow.resuming import HALTED_RUN, HALTED_STEP
from .tables import (
    STATE_STYLES,
    TIME_ZONE,
    Column,
    clock,
    echo_table,
    paint,
    relative,
    time_header,
    when,
)
from .trail import fold_traceback


def job_json(job: Job[Any]) -> dict[str, Any]:
    times = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at")
    data: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "worker": job.worker,
        "args": job.raw_args,
        "meta": job.meta,
        "tags": list(job.tags),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "attempted_by": job.attempted_by,
        "errors": list(job.errors),
    }
    for name in (*times, "cancelled_at"):
        value = getattr(job, name)
        data[name] = value.isoformat() if value is not None else None
    return data


def run_summary_json(run: RunRecord) -> dict[str, Any]:
    return {
        "id": run.id,
        "workflow": run.workflow,
        "status": run.status,
        "attempt": run.attempt,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
    }


def parked_on(job: Job[Any]) -> int | None:
    """The halted saga run a parked job waits on (``WorkflowWorker`` parks it), or None."""
    run_id = job.meta.get(HALTED_RUN)
    if job.state is not JobState.SCHEDULED or isinstance(run_id, bool):
        return None
    return run_id if isinstance(run_id, int) else None


def error_time(text: Any, now: datetime) -> str:
    """An error record's ``at`` (ISO text) in the one time format; as stored if unreadable."""
    try:
        return when(datetime.fromisoformat(str(text)), now)
    except ValueError:
        return str(text)


@dataclass
class ErrorGroup:
    """Errors of consecutive attempts that say the same thing (kind, type and message)."""

    kind: str
    text: str
    attempts: list[Any] = field(default_factory=list)
    at: Any = None
    """The last attempt's time."""
    tracebacks: list[str] = field(default_factory=list)

    @property
    def attempts_text(self) -> str:
        if len(self.attempts) == 1:
            return f"attempt {self.attempts[0]}"
        return f"attempts {self.attempts[0]}-{self.attempts[-1]} × {len(self.attempts)}"


def error_groups(errors: Sequence[Mapping[str, Any]]) -> list[ErrorGroup]:
    """The job's errors in order, an error that repeats the one of the attempt before it
    joining that one's group. Only consecutive repeats fold, so the order stays true (an
    error that comes back after another is said again)."""
    groups: list[ErrorGroup] = []
    for error in errors:
        kind = str(error.get("kind") or "error")
        text = str(error.get("error", ""))
        if not groups or (groups[-1].kind, groups[-1].text) != (kind, text):
            groups.append(ErrorGroup(kind, text))
        group = groups[-1]
        group.attempts.append(error.get("attempt", "?"))
        group.at = error.get("at")
        group.tracebacks.append(str(error.get("traceback") or ""))
    return groups


def error_lines(group: ErrorGroup, now: datetime, verbose: bool) -> list[str]:
    """A group as text: the attempts, when (the last), the kind when the text does not say
    it, the message (its further lines indented), then the last traceback, folded."""
    said = "" if group.kind == "error" or group.text.startswith(f"{group.kind}:") else group.kind
    moment = ("last " if len(group.attempts) > 1 else "") + error_time(group.at, now)
    head = f"  {group.attempts_text}, {moment}" + (f" [{said}]" if said else "")
    message = group.text.strip().replace("\n", "\n    ")
    lines = [f"{head}:", f"    {message}"]
    traceback = group.tracebacks[-1]
    if traceback.strip():
        if len(set(group.tracebacks)) > 1:
            lines.append(f"    traceback of attempt {group.attempts[-1]}:")
        folded = fold_traceback(traceback, verbose, command="jobs show")
        lines.extend(f"    {line}".rstrip() for line in folded)
    return lines


def tags_text(tags: Sequence[str]) -> str:
    return ", ".join(tags) if tags else "none"


def echo_job(
    job: Job[Any],
    runs: Sequence[RunRecord],
    now: datetime,
    *,
    verbose: bool = False,
    same_database: str = "",
) -> None:
    """``same_database``: the flags that name the database this job was read from
    (``--app``, ``--url``, ``--config``), so a hint's command reaches the same one."""
    state = paint(job.state.value, STATE_STYLES.get(job.state.value))
    click.echo(f"job {job.id}  {job.worker}  queue={job.queue}  state={state}")
    click.echo(
        f"  attempt {job.attempt}/{job.max_attempts}  priority {job.priority}  "
        f"tags {tags_text(list(job.tags))}"
    )
    click.echo(f"  times ({TIME_ZONE}):")
    moments = [
        ("inserted", job.inserted_at, ""),
        ("scheduled", job.scheduled_at, ""),
        ("attempted", job.attempted_at, f" by {job.attempted_by}" if job.attempted_by else ""),
        ("completed", job.completed_at, ""),
        ("discarded", job.discarded_at, ""),
        ("cancelled", job.cancelled_at, ""),
    ]
    halted_run = parked_on(job)
    for label, moment, extra in moments:
        if label == "scheduled" and halted_run is not None:
            click.echo(f"    {label:<10} never by itself: parked until its run is resumed")
        elif moment is not None:
            click.echo(f"    {label:<10} {clock(moment)}  ({relative(moment, now)}){extra}")
    click.echo(f"  args {json.dumps(job.args)}")
    if job.meta:
        click.echo(f"  meta {json.dumps(job.meta)}")
    if halted_run is not None:
        step = job.meta.get(HALTED_STEP)
        at = f" at step {step!r}" if isinstance(step, str) else ""
        click.echo(
            f"  halted{at}: saga run {halted_run} waits for a resume: "
            f"jobsaga runs resume {halted_run} [--input KEY=VALUE ...]{same_database}"
        )
    run_id = job.meta.get("enqueued_by_run")
    if isinstance(run_id, int) and not isinstance(run_id, bool):
        click.echo(
            f"  enqueued by saga run {run_id} when it succeeded: "
            f"jobsaga runs show {run_id}{same_database}"
        )
    if job.errors:
        click.echo(f"errors ({len(job.errors)}, oldest first):")
        for group in error_groups(job.errors):
            click.echo("\n".join(error_lines(group, now, verbose)))
    if runs:
        click.echo("saga runs:")
        echo_table(
            [
                Column("RUN", "right"),
                Column("STATUS"),
                Column("ATTEMPT", "right"),
                Column(time_header("STARTED")),
            ],
            [[run.id, run.status, run.attempt, when(run.started_at, now)] for run in runs],
        )
        click.echo(f"details: jobsaga runs show {runs[0].id}{same_database}")
