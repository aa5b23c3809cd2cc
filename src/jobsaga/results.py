"""What ``perform`` may return to steer the job, as small frozen values.

Returning ``None`` or any JSON value completes the job; raising an exception or returning
:class:`Error` fails the attempt (retried with backoff until ``max_attempts``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run the job again after ``seconds`` without using up an attempt."""

    seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.seconds, (int, float)) or self.seconds < 0:
            raise ValueError(f"Snooze needs a number of seconds >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Discard:
    """Stop for good: the job is discarded and the reason recorded; no more attempts."""

    reason: str = "discarded"


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop for good, as a deliberate decision rather than a failure."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Error:
    """Fail this attempt without raising (Oban's ``{:error, reason}``)."""

    reason: str


Result = Snooze | Discard | Cancel | Error
