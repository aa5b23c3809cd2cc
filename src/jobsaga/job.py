"""The job as stored, and the not-yet-inserted job a worker's ``new`` builds."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, TypeVar

A = TypeVar("A")

MAX_DELAY_SECONDS = 100 * 365 * 86400.0
"""How far ahead a job may be scheduled (``schedule_in``, ``scheduled_at``) and how long a
unique period may be: 100 years. A later date would overflow Python's datetime (year 9999)
somewhere down the line, and nothing real waits that long; the executor clamps snoozes and
retry delays to the same bound."""
MAX_ATTEMPTS = 2**31 - 1
"""The largest ``max_attempts``: the column is a 32-bit integer on PostgreSQL."""
MAX_JOB_ID = 2**63 - 1
"""Job ids are 64-bit integers on both engines: no job has an id outside 1..MAX_JOB_ID."""


class JobState(enum.StrEnum):
    """Oban's seven states; only available jobs are fetched."""

    AVAILABLE = "available"
    SCHEDULED = "scheduled"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job built by ``Worker.new``: validated, JSON-ready, not yet stored."""

    worker: str
    queue: str
    args: dict[str, Any]
    priority: int
    max_attempts: int
    tags: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    scheduled_at: datetime | None = None
    schedule_in: float | None = None
    """Seconds from the insert until the job is due (``Worker.new(schedule_in=...)``)."""
    unique_key: str | None = None
    unique_states: str | None = None
    """Encoded as ``,state,state,`` (see ``unique.encode_states``)."""
    unique_period: float | None = None


@dataclass(frozen=True, slots=True)
class Job(Generic[A]):
    """A stored job. Inside ``perform``, ``args`` is the worker's typed ``Args`` model when it has one."""

    id: int
    state: JobState
    queue: str
    worker: str
    args: A
    meta: dict[str, Any]
    tags: tuple[str, ...]
    errors: tuple[dict[str, Any], ...]
    attempt: int
    max_attempts: int
    priority: int
    inserted_at: datetime
    scheduled_at: datetime
    attempted_at: datetime | None = None
    attempted_by: str | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    unique_key: str | None = None
    conflict: bool = False
    """True when an insert found an existing unique job and returned it instead."""

    @property
    def is_final_attempt(self) -> bool:
        """Whether a failure now would discard the job (the guide's ``attempt >= max_attempts``)."""
        return self.attempt >= self.max_attempts

    @property
    def raw_args(self) -> dict[str, Any]:
        """The args as JSON, whatever ``args`` holds."""
        args: Any = self.args
        dump = getattr(args, "model_dump", None)
        result: dict[str, Any] = dump(mode="json") if dump is not None else dict(args)
        return result

    def with_args(self, args: Any) -> Job[Any]:
        return replace(self, args=args)
