"""The state of one run as the executor tracks it, and what a run returns."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import RecordedError, WorkflowError
from ..job import JobSpec
from .plan import Binding, Instance
from .records import RunRecord, RunStatus, StepRecord, StepStatus
from .runlog import RunLog
from .steps import StepDef

COMPLETED = (StepStatus.SUCCEEDED, StepStatus.COMPENSATED)
"""Statuses of a step that ran to a result: undone on rollback if it has an undo."""
DONE = (*COMPLETED, StepStatus.SKIPPED)
"""Statuses that let dependents start."""


def spec_to_json(spec: JobSpec) -> dict[str, Any]:
    """A follow-up job as the run log stores it."""
    return {
        "worker": spec.worker,
        "queue": spec.queue,
        "args": spec.args,
        "priority": spec.priority,
        "max_attempts": spec.max_attempts,
        "tags": list(spec.tags),
        "meta": spec.meta,
        "scheduled_at": spec.scheduled_at.isoformat() if spec.scheduled_at else None,
        "schedule_in": spec.schedule_in,
        "unique_key": spec.unique_key,
        "unique_states": spec.unique_states,
        "unique_period": spec.unique_period,
    }


def spec_from_json(data: Mapping[str, Any]) -> JobSpec:
    fields = dict(data)
    at = fields.get("scheduled_at")
    return JobSpec(
        **{
            **fields,
            "tags": tuple(fields.get("tags", ())),
            "scheduled_at": datetime.fromisoformat(at) if at else None,
        }
    )


def follow_ups_of(steps: Iterable[StepRecord]) -> tuple[JobSpec, ...]:
    """The follow-up jobs a succeeded run registered, as the log holds them (each step's
    ``enqueue``), in completion order: what the run returned when it succeeded."""
    done = sorted(
        (record.completed_seq, record.step, record.enqueue or ())
        for record in steps
        if record.completed_seq is not None
        and record.status in (StepStatus.SUCCEEDED.value, StepStatus.COMPENSATED.value)
    )
    return tuple(spec_from_json(data) for _, _, enqueue in done for data in enqueue)


@dataclass(slots=True, eq=False)
class StepState:
    spec: StepDef
    position: int
    name: str
    """The step's name in the run: its own, or prefixed by the parts it sits in
    (``charge_each[3].reserve``)."""
    args: tuple[Binding, ...] = ()
    guard_args: tuple[Binding, ...] = ()
    needs: tuple[str, ...] = ()
    """The steps it waits for (full names)."""
    feeds: list[str] = field(default_factory=list)
    """The steps waiting for it: a part's steps join when the part starts."""
    instance: Instance | None = None
    """The part instance it belongs to (None at the workflow's top level)."""
    instances: list[Instance] | None = None
    """A part's instances once it started (a map's elements, a switch's chosen case)."""
    plan: Any = None
    """A map's progress while it runs (its elements, how many were taken and admitted)."""
    child: Any = None
    """A compose or recurse step's child runs (their executions) in this attempt."""
    closing: bool = False
    """A part whose body is done is queued to close, once."""
    placement: Any = None
    """For a step of an ``around`` group: the thread and context the group entered."""
    status: StepStatus = StepStatus.PENDING
    value: Any = None
    stored: Any = None
    """The result as the run log holds it (JSON data when persisted)."""
    error: dict[str, Any] | None = None
    exc: BaseException | None = None
    tries: int = 0
    undo_tries: int = 0
    compensations: int = 0
    """Calls of the step's compensation so far in this run (its ``ctx.tries``); counted
    from the log's ``step.compensate`` events when a run is resumed."""
    completed_seq: int | None = None
    follow_ups: list[JobSpec] = field(default_factory=list)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    waiting: int = 0
    recorded_seq: int = 0
    """The run log event that recorded how this step ended: its dependents start once it
    is durable, so no step runs on a result a crash could make the step produce again."""

    def row(self) -> dict[str, Any]:
        return {
            "step": self.name,
            "position": self.position,
            "status": self.status.value,
            "result": self.stored,
            "error": self.error,
            "tries": self.tries,
            "undo_tries": self.undo_tries,
            "completed_seq": self.completed_seq,
            "enqueue": [spec_to_json(s) for s in self.follow_ups] if self.follow_ups else None,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


@dataclass(slots=True)
class RunResult:
    """How a run ended: ``value`` on success, ``error`` (a WorkflowError) on failure."""

    workflow: str
    run_id: int | None
    status: RunStatus
    value: Any = None
    error: WorkflowError | None = None
    follow_ups: tuple[JobSpec, ...] = ()
    """Jobs the steps registered with ``ctx.enqueue_after_success``; empty unless it succeeded."""
    halted_step: str | None = None
    """The step that halted the run (status ``halted``), its result the halt value."""
    run: RunRecord | None = None
    """The run log (filled in by the test entry point)."""
    log: RunLog | None = None

    @property
    def ok(self) -> bool:
        """The run succeeded (a halted run has no error, but has not succeeded either)."""
        return self.error is None and self.status is not RunStatus.HALTED

    @property
    def halted(self) -> bool:
        """The run halted (``Halt``): ``value`` is the halt value, ``halted_step`` the step
        that returned it; it goes on when resumed (``resume_run``)."""
        return self.status is RunStatus.HALTED

    def unwrap(self) -> Any:
        """The value, or raise the WorkflowError (a halted run's value is its halt value)."""
        if self.error is not None:
            raise self.error
        return self.value


def brief(error: BaseException) -> dict[str, str]:
    if isinstance(error, RecordedError):
        return {"type": error.type_name, "message": error.message}
    return {"type": f"{type(error).__module__}.{type(error).__qualname__}", "message": str(error)}
