"""What the run log holds, as read back: runs, steps, events, and the queries that read them.

``get_run`` and ``list_runs`` are the API behind ``jobsaga runs``; :class:`RunRecord` is also
what the test entry point returns, so tests assert on exactly what an operator would see.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import FilterError, UnknownStepError

if TYPE_CHECKING:
    from ..core import AppCore
    from ..engines import Engine


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    HALTED = "halted"
    """Stopped by a step (``halt``) until its job's next attempt, which takes it up as it
    takes up a running run: not finished, not failed."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Failed with nothing to undo."""
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRIED = "retried"
    """Failed a try and waits to run again."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    """Failed, and its compensation continued with a value: counts as succeeded."""
    SKIPPED = "skipped"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"


FAILED_STATUSES = (RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED)
"""What ``status="failed"`` means when listing runs: every way a saga can end in failure."""


# --- what is read back ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    position: int
    status: str
    result: Any
    error: dict[str, Any] | None
    tries: int
    undo_tries: int
    completed_seq: int | None
    enqueue: list[dict[str, Any]] | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    at: datetime
    attempt: int
    step: str | None
    kind: str
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class ChildRun:
    """A child run as its parent's record lists it (``RunRecord.children``): another
    workflow run as one of the parent's steps (compose), or one iteration of a workflow run
    repeatedly (recurse). ``get_run`` of its id gives the whole run."""

    id: int
    workflow: str
    status: str
    parent_step: str
    """The parent's step that ran it."""
    iteration: int
    """0 for compose; 0, 1, 2... for the iterations of recurse."""
    started_at: datetime
    finished_at: datetime | None
    error: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One saga run as the log holds it: ``runs show`` prints exactly this."""

    id: int | None
    workflow: str
    job_id: int | None
    attempt: int
    status: str
    inputs: Any
    context: Any
    result: Any
    error: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    dag: dict[str, list[str]] | None = None
    """Each step's dependencies, as the workflow declared them when the run started."""
    steps: tuple[StepRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    parent_run_id: int | None = None
    """For a child run, its parent run (None for a job's own run, or a parent whose log was
    kept in memory)."""
    parent_step: str | None = None
    """For a child run, the parent's step that ran it; None exactly for a top-level run."""
    iteration: int = 0
    """For a child run of recurse, which iteration it is (0, 1, 2...); else 0."""
    children: tuple[ChildRun, ...] = ()
    """The child runs of this run, in the parent's step order then by iteration (filled by
    ``get_run``; empty in ``list_runs`` rows)."""

    @property
    def is_child(self) -> bool:
        return self.parent_step is not None

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.step == name:
                return record
        raise UnknownStepError(f"run {self.id} has no step {name!r}")

    def statuses(self) -> dict[str, str]:
        return {s.step: s.status for s in self.steps}

    def steps_with(self, *statuses: str) -> list[str]:
        return [s.step for s in self.steps if s.status in statuses]

    def events_of(self, *kinds: str) -> list[EventRecord]:
        return [e for e in self.events if e.kind in kinds]

    def undo_order(self) -> list[str]:
        """The steps whose undo ran (for good or not), in the order the rollback took."""
        return [e.step for e in self.events_of("step.undone", "step.undo_failed") if e.step]


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


# --- reading ------------------------------------------------------------------------------


def _run_from_row(engine: Engine, row: Mapping[str, Any]) -> RunRecord:
    tv = engine.time_value
    return RunRecord(
        id=int(row["id"]),
        workflow=row["workflow"],
        job_id=None if row["job_id"] is None else int(row["job_id"]),
        attempt=int(row["attempt"]),
        status=row["status"],
        inputs=_load(row["inputs"]),
        context=_load(row["context"]),
        dag=_load(row["dag"]),
        result=_load(row["result"]),
        error=_load(row["error"]),
        started_at=tv(row["started_at"]),  # type: ignore[arg-type]
        updated_at=tv(row["updated_at"]),  # type: ignore[arg-type]
        finished_at=tv(row["finished_at"]),
        parent_run_id=None if row["parent_run_id"] is None else int(row["parent_run_id"]),
        parent_step=row["parent_step"],
        iteration=int(row["iteration"] or 0),
    )


def read_children(engine: Engine, tx: Any, run_id: int) -> tuple[ChildRun, ...]:
    """The child runs of run ``run_id``, in its step order then by iteration."""
    tv = engine.time_value
    return tuple(
        ChildRun(
            id=int(r["id"]),
            workflow=r["workflow"],
            status=r["status"],
            parent_step=r["parent_step"],
            iteration=int(r["iteration"]),
            started_at=tv(r["started_at"]),  # type: ignore[arg-type]
            finished_at=tv(r["finished_at"]),
            error=_load(r["error"]),
        )
        for r in tx.execute(engine.queries["get_children"], {"run_id": run_id})
    )


def read_run(engine: Engine, tx: Any, run_id: int, *, children: bool = False) -> RunRecord | None:
    """The run with its steps and events (and its child runs, with ``children``: what an
    attempt taking a run up does not need)."""
    q = engine.queries
    rows = tx.execute(q["get_run"], {"id": run_id})
    if not rows:
        return None
    tv = engine.time_value
    steps = tuple(
        StepRecord(
            step=r["step"],
            position=int(r["position"]),
            status=r["status"],
            result=_load(r["result"]),
            error=_load(r["error"]),
            tries=int(r["tries"]),
            undo_tries=int(r["undo_tries"]),
            completed_seq=None if r["completed_seq"] is None else int(r["completed_seq"]),
            enqueue=_load(r["enqueue"]),
            started_at=tv(r["started_at"]),
            finished_at=tv(r["finished_at"]),
        )
        for r in tx.execute(q["get_steps"], {"run_id": run_id})
    )
    events = tuple(
        EventRecord(
            seq=int(r["seq"]),
            at=tv(r["at"]),  # type: ignore[arg-type]
            attempt=int(r["attempt"]),
            step=r["step"],
            kind=r["kind"],
            detail=_load(r["detail"]),
        )
        for r in tx.execute(q["get_events"], {"run_id": run_id})
    )
    run = _run_from_row(engine, rows[0])
    kids = read_children(engine, tx, run_id) if children else ()
    return RunRecord(**{**_fields(run), "steps": steps, "events": events, "children": kids})


def _fields(run: RunRecord) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunRecord.__slots__}


def get_run(app: AppCore, run_id: int) -> RunRecord | None:
    """One run with its steps (in declaration order), its events (in the order they
    happened) and its child runs (in its step order, then by iteration)."""
    with app.engine.read() as tx:  # a poll: on SQLite, no write lock
        return read_run(app.engine, tx, run_id, children=True)


def _run_filter(
    engine: Engine,
    status: str | Iterable[str] | None,
    workflow: str | None,
    job_id: int | None,
    parent_run_id: int | None = None,
    top_level: bool = False,
) -> dict[str, Any]:
    """The parameters ``list_runs`` and ``count_runs`` filter by (the same filter)."""
    statuses: list[str] | None = None
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        statuses = []
        for item in wanted:
            valid = {s.value for s in RunStatus}
            if item not in valid:
                raise FilterError(f"unknown run status {item!r}; use one of {sorted(valid)}")
            statuses += [s.value for s in FAILED_STATUSES] if item == "failed" else [item]
    return {
        "statuses": None if statuses is None else engine.list_param(statuses),
        "workflow": workflow,
        "job_id": job_id,
        "parent_run_id": parent_run_id,
        "top_level": top_level,
    }


def list_runs(
    app: AppCore,
    *,
    status: str | Iterable[str] | None = None,
    workflow: str | None = None,
    job_id: int | None = None,
    parent_run_id: int | None = None,
    top_level: bool = False,
    limit: int | None = 50,
) -> list[RunRecord]:
    """Runs, newest first, without their steps (nor children); at most ``limit`` (None:
    all). ``status="failed"`` matches every failed ending (failed, rolled_back,
    rollback_failed); give the exact statuses to narrow it. ``parent_run_id``: only that
    run's child runs; ``top_level``: only runs that are not child runs (a job's own runs:
    its child runs carry its job_id too)."""
    if limit is not None and (isinstance(limit, bool) or limit < 1):
        raise FilterError(f"limit must be a positive number of runs, or None for all; got {limit}")
    engine = app.engine
    params = {
        **_run_filter(engine, status, workflow, job_id, parent_run_id, top_level),
        "limit": limit,  # None: all
    }
    with engine.read() as tx:
        rows = tx.execute(engine.queries["list_runs"], params)
    return [_run_from_row(engine, row) for row in rows]


def count_runs(
    app: AppCore,
    *,
    status: str | Iterable[str] | None = None,
    workflow: str | None = None,
    job_id: int | None = None,
    parent_run_id: int | None = None,
    top_level: bool = False,
) -> int:
    """How many runs :func:`list_runs` finds with these filters and no limit, so a listing
    cut at its limit can say how many it left out."""
    engine = app.engine
    with engine.read() as tx:
        rows = tx.execute(
            engine.queries["count_runs"],
            _run_filter(engine, status, workflow, job_id, parent_run_id, top_level),
        )
    return int(rows[0]["n"])


@dataclass(frozen=True, slots=True)
class FollowUpJob:
    """A job a succeeded run enqueued (its ``meta.enqueued_by_run`` names the run), as
    ``runs show`` lists it."""

    id: int
    state: str
    queue: str
    worker: str
    attempt: int
    max_attempts: int
    scheduled_at: datetime | None
    completed_at: datetime | None


def follow_up_jobs(app: AppCore, run_id: int) -> list[FollowUpJob]:
    """The jobs run ``run_id`` enqueued when it succeeded, oldest first: the follow-ups its
    steps registered with ``ctx.enqueue_after_success``, inserted with the job's completion.
    Jobs deleted since (pruned) are not found."""
    engine = app.engine
    with engine.read() as tx:
        rows = tx.execute(engine.queries["follow_up_jobs"], {"run_id": run_id})
    return [
        FollowUpJob(
            id=int(row["id"]),
            state=str(row["state"]),
            queue=str(row["queue"]),
            worker=str(row["worker"]),
            attempt=int(row["attempt"]),
            max_attempts=int(row["max_attempts"]),
            scheduled_at=engine.time_value(row["scheduled_at"]),
            completed_at=engine.time_value(row["completed_at"]),
        )
        for row in rows
    ]
