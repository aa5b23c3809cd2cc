"""Retry delays: the guide's default curve with jitter, a custom callable, tenacity waits."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from tenacity import RetryCallState, wait_exponential, wait_fixed
from tenacity.wait import wait_base

from jobsaga import App, Job, JobState, Worker
from jobsaga.backoff import CAP, default_backoff, tenacity_backoff
from tests.jobs.conftest import wait_state


@pytest.mark.parametrize(("attempt", "around"), [(1, 15.0), (2, 120.0), (3, 600.0), (4, 3600.0)])
def test_default_follows_the_guide(attempt: int, around: float) -> None:
    rng = random.Random(7)
    delays = [default_backoff(attempt, rng=rng) for _ in range(200)]
    assert all(around * 0.9 <= d <= around * 1.1 for d in delays)
    assert len({round(d, 3) for d in delays}) > 100  # jittered, not one fixed value
    assert min(delays) < around < max(delays)


def test_default_grows_to_a_cap() -> None:
    rng = random.Random(1)
    bases = [default_backoff(a, rng=random.Random(0)) for a in range(1, 30)]
    assert all(later > earlier for earlier, later in zip(bases[:8], bases[1:9], strict=True))
    assert all(d <= CAP * 1.1 for d in (default_backoff(a, rng=rng) for a in range(1, 200)))
    assert default_backoff(50, rng=rng) >= CAP * 0.9
    assert default_backoff(0, rng=rng) <= 15 * 1.1  # attempt 0 is treated as the first


def test_tenacity_waits_adapt() -> None:
    assert tenacity_backoff(wait_fixed(42))(3) == 42
    exponential = tenacity_backoff(wait_exponential(multiplier=1, max=60))
    assert [exponential(a) for a in (1, 2, 3, 10)] == [1, 2, 4, 60]


class LinearBackoff(Worker, max_attempts=5, backoff=lambda attempt: 100.0 * attempt):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


class TenacityBackoff(Worker, max_attempts=5, backoff=wait_fixed(42)):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


class HalfMinute(wait_base):
    """A user's own tenacity strategy: a subclass defined outside tenacity's modules."""

    def __call__(self, retry_state: RetryCallState) -> float:
        return 30.0 * retry_state.attempt_number


class OwnTenacityBackoff(Worker, max_attempts=5, backoff=HalfMinute()):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


class MethodBackoff(Worker, max_attempts=5):
    def backoff(self, job: Job[Any]) -> float:
        return 7.0 * job.attempt + float(job.args["extra"])

    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


class BrokenBackoff(Worker, max_attempts=5):
    def backoff(self, job: Job[Any]) -> float:
        raise ZeroDivisionError("bad curve")

    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


@pytest.mark.parametrize(
    ("worker", "args", "expected"),
    [
        (LinearBackoff, {}, 100.0),
        (TenacityBackoff, {}, 42.0),
        (OwnTenacityBackoff, {}, 30.0),
        (MethodBackoff, {"extra": 3}, 10.0),
        (BrokenBackoff, {}, 15.0),  # a broken curve falls back to the default
    ],
)
def test_worker_backoff_sets_the_retry_time(
    make_app: Callable[..., App], worker: type[Worker], args: dict[str, Any], expected: float
) -> None:
    app = make_app(worker)
    stored = app.insert(worker.new(args))
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        retry = wait_state(app, stored.id, JobState.RETRYABLE)
    assert retry.attempted_at is not None
    delay = (retry.scheduled_at - retry.attempted_at).total_seconds()
    assert expected * 0.85 <= delay <= expected * 1.15 + 1, delay


class RunawayBackoff(Worker, max_attempts=5, backoff=lambda attempt: float("inf")):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


class NanBackoff(Worker, max_attempts=5, backoff=lambda attempt: float("nan")):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("x")


def test_an_endless_or_nan_delay_is_still_written_back(make_app: Callable[..., App]) -> None:
    """An infinite delay once left the job 'executing' for good (the date overflowed)."""
    app = make_app(RunawayBackoff, NanBackoff)
    endless, nan = app.insert_all([RunawayBackoff.new(), NanBackoff.new()])
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        endless_retry = wait_state(app, endless.id, JobState.RETRYABLE)
        nan_retry = wait_state(app, nan.id, JobState.RETRYABLE)
    assert endless_retry.scheduled_at.year >= endless_retry.inserted_at.year + 99
    assert nan_retry.attempted_at is not None
    delay = (nan_retry.scheduled_at - nan_retry.attempted_at).total_seconds()
    assert 13 <= delay <= 17  # NaN is a broken curve: the default applies
