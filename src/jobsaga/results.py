"""What ``perform`` may return to steer the job, as small frozen values.

Returning ``None`` or any JSON value completes the job; raising an exception or returning
:class:`Error` fails the attempt (retried with backoff until ``max_attempts``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .backoff import Delay, delay_seconds
from .errors import NotAJobError
from .job import JobSpec
from .serialization import ensure_json_object


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run the job again after ``delay`` (seconds or a timedelta) without using up an
    attempt. A delay past 100 years (``math.inf``) is written as 100 years."""

    delay: float

    def __init__(self, delay: Delay) -> None:
        object.__setattr__(self, "delay", delay_seconds(delay, "Snooze(delay)"))


@dataclass(frozen=True, slots=True)
class Discard:
    """Stop for good: the job is discarded and the reason recorded; no more attempts."""

    reason: str = "discarded"


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop for good, as a deliberate decision rather than a failure."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Complete:
    """Complete the job and insert follow-up jobs in the same transaction.

    The follow-ups exist only if the completion is written: a job cancelled while it ran,
    or a node that dies before acknowledging, enqueues nothing. This is how a workflow
    starts further work safely once it has succeeded.
    """

    value: Any = None
    enqueue: tuple[JobSpec, ...] = ()

    def __post_init__(self) -> None:
        specs = tuple(self.enqueue)
        for spec in specs:
            if not isinstance(spec, JobSpec):
                raise NotAJobError(
                    f"Complete(enqueue=...) takes jobs built by Worker.new(), got {spec!r}"
                )
        object.__setattr__(self, "enqueue", specs)


@dataclass(frozen=True, slots=True)
class Park:
    """Wait, without using up an attempt, until something outside makes the job available
    again: a halted saga's job waits so for ``resume_run`` (``WorkflowWorker`` returns it).

    The job is written ``scheduled`` at the far end of time (100 years out, where no stager
    reaches), so it is neither finished (the pruner keeps it, and with it its saga run) nor
    due; ``meta`` is merged into the job's meta, saying what it waits for (``jobs show``
    reads it). Unlike ``Snooze(math.inf)`` it does not count as a snooze."""

    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:  # refused here, not when the outcome is written
        object.__setattr__(self, "meta", ensure_json_object(dict(self.meta), "meta", "Park"))


@dataclass(frozen=True, slots=True)
class Error:
    """Fail this attempt without raising (Oban's ``{:error, reason}``)."""

    reason: str


Result = Snooze | Discard | Cancel | Complete | Park | Error
