"""What steps, compensations and undos may return to steer the saga (Reactor's tuples).

A step returns its value, or :class:`Retry` to run again (counted against ``max_retries``).
A compensation returns :class:`Retry`, :class:`Continue` (the step succeeds with that value),
or ``None`` to let the failure stand. A step may also return :class:`Halt` to stop the run
until it is resumed. An undo returns :class:`Retry` to try again (bounded by
``undo_retries``) or anything else once it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backoff import Delay, delay_seconds


@dataclass(frozen=True, slots=True)
class Retry:
    """Run this step (or undo) again; ``delay`` (seconds or a timedelta) overrides the step's
    backoff for this retry."""

    reason: str | None = None
    delay: float | None = None

    def __init__(self, reason: str | None = None, delay: Delay | None = None) -> None:
        object.__setattr__(self, "reason", reason)
        seconds = None if delay is None else delay_seconds(delay, "Retry(delay=)")
        object.__setattr__(self, "delay", seconds)


@dataclass(frozen=True, slots=True)
class Continue:
    """From a compensation: treat the failed step as succeeded, with ``value`` as its result."""

    value: Any = None


@dataclass(frozen=True, slots=True)
class Halt:
    """From a step: stop the run here, durably, until it is resumed (``resume_run``, or
    ``jobsaga runs resume``), e.g. when an approval arrives. The step counts as completed
    with ``value`` as its result (so a resumed run hands ``value`` to the steps after it and
    never runs this one again); steps under way are awaited up to the workflow's
    ``halt_timeout``; the run's status is ``halted``."""

    value: Any = None
    reason: str | None = None
