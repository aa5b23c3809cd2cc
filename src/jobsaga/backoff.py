"""How long to wait before something runs again: delays, and the retry curves that make them.

One word for one idea: a **delay** is how long to wait before something runs again, given as
seconds or a ``timedelta`` (``Snooze(delay)``, ``Retry(delay=...)``); a new job's first wait
keeps Oban's name, ``Worker.new(schedule_in=...)``, and is checked by the same function.
A **backoff** gives the delay before the next try from how many have failed: a callable
``attempt -> seconds`` or a tenacity wait strategy (``wait_exponential(...)``); a step's may
also be a constant delay. :func:`retry_delay` is the one place a backoff becomes seconds, for
jobs and steps alike; the two defaults differ because their retries do: a job's next attempt
is a new fetch, minutes apart as the guide lists them (:func:`default_backoff`), a step's
next try happens inside the running attempt, a fraction of a second later
(:data:`STEP_BACKOFF`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import timedelta
from typing import TypeAlias

from tenacity import RetryCallState, wait_exponential, wait_random
from tenacity.wait import wait_base

from .errors import ConfigError
from .serialization import short_repr

__all__ = ["Backoff", "Delay", "STEP_BACKOFF", "default_backoff", "retry_delay"]

Delay: TypeAlias = float | timedelta
"""How long to wait: seconds (an int or a float) or a ``timedelta``."""

Backoff: TypeAlias = float | timedelta | Callable[[int], float] | wait_base
"""The delay before the retry after ``attempt`` failed tries: a callable ``attempt ->
seconds``, a tenacity wait strategy, or (steps only) the same delay every time."""

# Delay before retry N (N = the attempt that just failed), as the guide lists them.
GUIDE_STEPS: tuple[float, ...] = (15.0, 120.0, 600.0, 3600.0)
GROWTH = 2.0
CAP = 24 * 3600.0
JITTER = 0.1

STEP_BACKOFF: wait_base = wait_exponential(multiplier=0.1, max=5.0) + wait_random(0, 0.05)
"""Before retry N of a step (or undo): 0.1 s doubling to 5 s, plus up to 50 ms of jitter so
steps that failed together (a shared dependency down) do not retry in lockstep."""


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


def retry_delay(
    backoff: Backoff | None, attempt: int, *, default: Backoff = default_backoff
) -> float:
    """Seconds before the retry after ``attempt`` failed tries, as ``backoff`` says (``None``:
    as ``default`` says).

    A tenacity strategy is recognised by its base class, so a user's own subclass of
    ``wait_base`` is one too (it would fail if called like a plain ``attempt -> seconds``)."""
    if backoff is None:
        backoff = default
    if isinstance(backoff, wait_base):
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(backoff(state))
    if isinstance(backoff, timedelta):
        return backoff.total_seconds()
    if isinstance(backoff, (int, float)):
        return float(backoff)
    seconds = float(backoff(attempt))
    return 0.0 if seconds < 0 else seconds  # NaN stays NaN: the caller's sign of a broken curve


def delay_seconds(delay: object, what: str) -> float:
    """``delay`` (seconds or a timedelta) as seconds >= 0, or a :class:`ConfigError` naming
    ``what``. Infinity passes: where a delay is written it is clamped (a job snoozed for ever
    waits 100 years); where it must be stored as given (an insert), the caller bounds it."""
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if (
        not isinstance(delay, (int, float)) or isinstance(delay, bool) or not delay >= 0  # NaN too
    ):
        raise ConfigError(f"{what} must be seconds >= 0 or a timedelta, got {short_repr(delay)}")
    try:
        return float(delay)
    except OverflowError:  # an integer past any float: as long as infinity, bounded by callers
        return math.inf
