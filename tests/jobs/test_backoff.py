"""Retry delays: the guide's default curve with jitter, a custom callable, tenacity waits;
one function turns any backoff into seconds for jobs and steps, and a wait is a ``delay``
(seconds or a timedelta) wherever it is given."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from tenacity import RetryCallState, wait_exponential, wait_fixed
from tenacity.wait import wait_base

from jobsaga import App, Job, JobState, Retry, Snooze, StepContext, Worker, Workflow, step
from jobsaga.backoff import CAP, STEP_BACKOFF, default_backoff, retry_delay
from jobsaga.errors import ConfigError, WorkflowDefinitionError
from jobsaga.testing import run_workflow
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
    assert retry_delay(wait_fixed(42), 3) == 42
    exponential = wait_exponential(multiplier=1, max=60)
    assert [retry_delay(exponential, a) for a in (1, 2, 3, 10)] == [1, 2, 4, 60]


def test_one_function_reads_every_form_of_backoff() -> None:
    assert retry_delay(None, 1, default=lambda attempt: 7.0 * attempt) == 7.0
    assert 0.1 <= retry_delay(None, 1, default=STEP_BACKOFF) <= 0.15  # a step's default
    assert 13.5 <= retry_delay(None, 1) <= 16.5  # a job's default: the guide's curve
    assert retry_delay(5, 9) == 5.0 and retry_delay(timedelta(minutes=1), 9) == 60.0
    assert retry_delay(lambda attempt: -3.0, 1) == 0.0  # a curve cannot ask to go back in time
    assert retry_delay(HalfMinute(), 2) == 60.0  # a user's own wait_base subclass


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


class QuickHalfMinute(wait_base):
    """A user's own tenacity strategy for a step (defined outside tenacity's modules)."""

    def __call__(self, retry_state: RetryCallState) -> float:
        return 0.01 * retry_state.attempt_number


class OwnStrategyStep(Workflow):
    @step(max_retries=2, backoff=QuickHalfMinute())
    def flaky(self, ctx: StepContext[Any]) -> str:
        return "done" if ctx.tries == 3 else Retry("not yet")  # type: ignore[return-value]


def test_a_step_takes_a_users_own_tenacity_strategy_as_a_worker_does() -> None:
    """Steps once told a tenacity wait by its module name, so a user's own ``wait_base``
    subclass was called like a plain callable and failed the step; jobs did it right."""
    result = run_workflow(OwnStrategyStep, {})
    assert result.value == "done"
    delays = [e.detail["delay"] for e in result.run.events_of("step.retried")]
    assert delays == [0.01, 0.02]


class DelayedStep(Workflow):
    @step(max_retries=1, backoff=timedelta(milliseconds=10))
    def once_more(self, ctx: StepContext[Any]) -> str:
        if ctx.tries == 1:
            return Retry("again", delay=timedelta(milliseconds=20))  # type: ignore[return-value]
        return "done"


def test_a_wait_is_a_delay_in_seconds_or_a_timedelta_everywhere() -> None:
    assert Snooze(60).delay == 60.0 and Snooze(timedelta(minutes=2)).delay == 120.0
    assert Retry(delay=timedelta(seconds=1.5)).delay == 1.5 and Retry().delay is None
    assert Snooze(float("inf")).delay == float("inf")  # written as 100 years, not refused
    for bad in (-1, float("nan"), "10", True, timedelta(seconds=-1)):
        with pytest.raises(ConfigError, match=r"Snooze\(delay\)"):
            Snooze(bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match=r"Retry\(delay=\)"):
            Retry(delay=bad)  # type: ignore[arg-type]
    started = time.monotonic()
    result = run_workflow(DelayedStep, {})
    assert result.value == "done" and time.monotonic() - started < 5
    [retried] = result.run.events_of("step.retried")
    assert retried.detail["delay"] == 0.02


def test_a_steps_constant_backoff_is_a_delay_too() -> None:
    with pytest.raises(WorkflowDefinitionError, match="backoff must be a delay"):

        @step(backoff=-1)
        def backwards(self: Any) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="backoff must be a delay"):

        @step(backoff="soon")  # type: ignore[call-overload]
        def later(self: Any) -> None: ...


def test_an_integer_past_any_float_is_an_endless_delay_not_a_crash() -> None:
    """Found by the fuzz suite: ``float(10**5000)`` overflows. As a wait it is endless (a
    snooze is written as 100 years); past that bound an insert refuses it, naming it."""
    assert Snooze(10**5000).delay == float("inf")
    with pytest.raises(ConfigError, match="too large to show"):
        Snooze(-(10**5000))


class NanCurve(Workflow):
    @step(max_retries=2, retry_on=(ConnectionError,), backoff=lambda tries: float("nan"))
    def flaky(self, ctx: StepContext[Any]) -> str:
        if ctx.tries == 1:
            raise ConnectionError("first try fails")
        return "done"


def test_a_step_curve_returning_nan_retries_at_once_and_the_run_is_recorded() -> None:
    """Found in review: the shared retry_delay passes NaN through (the job executor treats it
    as a broken curve); a step's NaN was written to the run log, which refused it and stopped
    the run."""
    result = run_workflow(NanCurve, {})
    assert result.value == "done"
    [retried] = result.run.events_of("step.retried")
    assert retried.detail["delay"] == 0.0
