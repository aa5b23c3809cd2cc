"""The default retry delay, matching the guide: ~15 s, ~2 min, ~10 min, ~1 h, then growing to a cap."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

__all__ = ["default_backoff", "tenacity_backoff"]

# Delay before retry N (N = the attempt that just failed), as the guide lists them.
GUIDE_STEPS: tuple[float, ...] = (15.0, 120.0, 600.0, 3600.0)
GROWTH = 2.0
CAP = 24 * 3600.0
JITTER = 0.1


def default_backoff(attempt: int, *, rng: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based), with +/-10% jitter.

    Jitter spreads out a burst of jobs that failed together (a dependency outage) so their
    retries do not arrive as a burst too.
    """
    attempt = max(1, attempt)
    if attempt <= len(GUIDE_STEPS):
        base = GUIDE_STEPS[attempt - 1]
    else:
        base = min(CAP, GUIDE_STEPS[-1] * GROWTH ** (attempt - len(GUIDE_STEPS)))
    spread = (rng or random).uniform(-JITTER, JITTER)
    return min(CAP * (1 + JITTER), base * (1 + spread))


def tenacity_backoff(wait: Any) -> Callable[[int], float]:
    """Adapt a tenacity wait strategy (``wait_exponential(...)`` etc.) to attempt -> seconds."""
    from tenacity import RetryCallState

    def delay(attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(wait(state))

    return delay
