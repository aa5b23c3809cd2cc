"""What steps, compensations and undos may return to steer the saga (Reactor's tuples).

A step returns its value, or :class:`Retry` to run again (counted against ``max_retries``).
A compensation returns :class:`Retry`, :class:`Continue` (the step succeeds with that value),
or ``None`` to let the failure stand. An undo returns :class:`Retry` to try again (bounded by
``undo_retries``) or anything else once it is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True, slots=True)
class Retry:
    """Run this step (or undo) again; ``delay`` overrides the step's backoff for this retry."""

    reason: str | None = None
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.delay is not None and (not isinstance(self.delay, (int, float)) or self.delay < 0):
            raise ConfigError(f"Retry delay must be seconds >= 0, got {self.delay!r}")


@dataclass(frozen=True, slots=True)
class Continue:
    """From a compensation: treat the failed step as succeeded, with ``value`` as its result."""

    value: Any = None
