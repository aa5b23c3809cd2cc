"""From insert to a final state: every outcome a perform can have, as Oban defines them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jobsaga import App, Cancel, Discard, Error, Job, JobState, Snooze, Worker
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, job, wait_final, wait_state

FAST = {"backoff": lambda attempt: 0.0}


class Succeeds(Worker):
    async def perform(self, job: Job[Any]) -> dict[str, int]:
        return {"ok": 1}


class AlwaysRaises(Worker, max_attempts=3, **FAST):
    def perform(self, job: Job[Any]) -> None:
        SEEN.add(job.attempt)
        raise ValueError(f"broken on attempt {job.attempt}")


class FailsTwice(Worker, max_attempts=5, **FAST):
    async def perform(self, job: Job[Any]) -> str:
        if job.attempt <= 2:
            raise ConnectionError("flaky")
        return "fine"


class ReturnsError(Worker, max_attempts=2, **FAST):
    def perform(self, job: Job[Any]) -> Error:
        return Error("upstream said no")


class SlowRetry(Worker, max_attempts=5):
    """Default backoff: the job waits ~15 seconds after its first failure."""

    def perform(self, job: Job[Any]) -> None:
        raise RuntimeError("try later")


class Snoozes(Worker, max_attempts=1):
    async def perform(self, job: Job[Any]) -> Snooze | None:
        SEEN.add((job.attempt, job.meta.get("snoozed", 0)))
        if job.meta.get("snoozed", 0) < 3:
            return Snooze(0.05)
        return None


class LongSnooze(Worker):
    def perform(self, job: Job[Any]) -> Snooze:
        return Snooze(3600)


class SnoozesForever(Worker):
    def perform(self, job: Job[Any]) -> Snooze:
        return Snooze(float("inf"))


class Discards(Worker, max_attempts=5):
    def perform(self, job: Job[Any]) -> Discard:
        return Discard("not_found")


class Cancels(Worker, max_attempts=5):
    async def perform(self, job: Job[Any]) -> Cancel:
        return Cancel("user deleted the order")


def node(app: App, limit: int = 5) -> Any:
    return app.node({"default": limit}, poll_interval=0.05, stage_interval=0.05).start_in_thread()


def test_normal_return_completes(make_app: Callable[..., App]) -> None:
    app = make_app(Succeeds)
    stored = app.insert(Succeeds.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.COMPLETED
    assert done.attempt == 1 and done.errors == ()
    assert done.completed_at is not None and done.attempted_at is not None
    assert done.attempted_by is not None


def test_raising_retries_until_max_attempts_then_discards(make_app: Callable[..., App]) -> None:
    app = make_app(AlwaysRaises)
    stored = app.insert(AlwaysRaises.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.DISCARDED
    assert done.attempt == 3
    assert SEEN.items() == [1, 2, 3]
    assert [e["attempt"] for e in done.errors] == [1, 2, 3]
    for n, record in enumerate(done.errors, start=1):
        assert set(record) >= {"attempt", "at", "error", "traceback"}
        assert record["error"] == f"ValueError: broken on attempt {n}"
        assert "Traceback" in record["traceback"] and "test_lifecycle.py" in record["traceback"]
        assert "raise ValueError" in record["traceback"]
    assert done.discarded_at is not None


def test_a_retried_job_can_complete(make_app: Callable[..., App]) -> None:
    app = make_app(FailsTwice)
    stored = app.insert(FailsTwice.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.COMPLETED
    assert done.attempt == 3
    assert [e["error"] for e in done.errors] == ["ConnectionError: flaky"] * 2


def test_error_result_fails_the_attempt(make_app: Callable[..., App]) -> None:
    app = make_app(ReturnsError)
    stored = app.insert(ReturnsError.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.DISCARDED
    assert [e["attempt"] for e in done.errors] == [1, 2]
    assert all("upstream said no" in e["error"] for e in done.errors)


def test_failure_makes_the_job_retryable_with_backoff(make_app: Callable[..., App]) -> None:
    app = make_app(SlowRetry)
    stored = app.insert(SlowRetry.new())
    with node(app):
        retry = wait_state(app, stored.id, JobState.RETRYABLE)
    assert retry.attempt == 1 and len(retry.errors) == 1
    assert retry.attempted_at is not None
    delay = (retry.scheduled_at - retry.attempted_at).total_seconds()
    assert 13 <= delay <= 17, delay  # the guide's ~15 s, with jitter


def test_snooze_reschedules_without_using_an_attempt(make_app: Callable[..., App]) -> None:
    app = make_app(Snoozes)
    stored = app.insert(Snoozes.new())  # max_attempts=1: a counted snooze would discard it
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.COMPLETED
    assert SEEN.items() == [(1, 0), (1, 1), (1, 2), (1, 3)]
    assert done.attempt == 1
    assert done.meta["snoozed"] == 3
    assert done.errors == ()


def test_snooze_state_and_time(make_app: Callable[..., App]) -> None:
    app = make_app(LongSnooze)
    stored = app.insert(LongSnooze.new(meta={"keep": "me"}))
    with node(app):
        snoozed = wait_state(app, stored.id, JobState.SCHEDULED)
    assert snoozed.attempt == 0
    assert snoozed.meta == {"keep": "me", "snoozed": 1}
    assert snoozed.attempted_at is not None
    assert abs(snoozed.scheduled_at - snoozed.attempted_at - timedelta(hours=1)) < timedelta(
        seconds=5
    )


def test_discard_is_final_and_recorded(make_app: Callable[..., App]) -> None:
    app = make_app(Discards)
    stored = app.insert(Discards.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.DISCARDED
    assert done.attempt == 1
    assert len(done.errors) == 1 and "not_found" in done.errors[0]["error"]
    assert done.discarded_at is not None


def test_cancel_is_final_and_recorded(make_app: Callable[..., App]) -> None:
    app = make_app(Cancels)
    stored = app.insert(Cancels.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.CANCELLED
    assert done.attempt == 1
    assert "user deleted the order" in done.errors[0]["error"]
    assert done.cancelled_at is not None and done.discarded_at is None


def test_every_outcome_at_once(make_app: Callable[..., App]) -> None:
    workers = [Succeeds, AlwaysRaises, FailsTwice, ReturnsError, Snoozes, Discards, Cancels]
    app = make_app(*workers)
    jobs = app.insert_all([w.new() for w in workers])
    with node(app, limit=10):
        wait_until(lambda: all(job(app, j.id).state.is_final for j in jobs))
    states = [job(app, j.id).state for j in jobs]
    assert states == [
        JobState.COMPLETED,
        JobState.DISCARDED,
        JobState.COMPLETED,
        JobState.DISCARDED,
        JobState.COMPLETED,
        JobState.DISCARDED,
        JobState.CANCELLED,
    ]


def test_snooze_forever_is_written_back(make_app: Callable[..., App]) -> None:
    """``Snooze(inf)`` once overflowed the date and left the job 'executing' for good."""
    app = make_app(SnoozesForever)
    stored = app.insert(SnoozesForever.new())
    with node(app):
        snoozed = wait_state(app, stored.id, JobState.SCHEDULED)
    assert snoozed.scheduled_at.year >= snoozed.inserted_at.year + 99
    assert snoozed.attempt == 0


def test_snooze_rejects_nonsense() -> None:
    for bad in (-1, float("nan"), "10"):
        with pytest.raises(ValueError, match="Snooze"):
            Snooze(bad)  # type: ignore[arg-type]
