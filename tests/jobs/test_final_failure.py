"""``on_final_failure`` runs exactly once, on the attempt that exhausts ``max_attempts``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobsaga import App, Error, Job, JobState, Worker
from jobsaga.errors import PerformError
from tests.jobs.conftest import SEEN, wait_final

FAST = {"backoff": lambda attempt: 0.0}


class Doomed(Worker, max_attempts=3, **FAST):
    def perform(self, job: Job[Any]) -> None:
        SEEN.add(("perform", job.attempt, job.is_final_attempt))
        raise LookupError("record missing")

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        SEEN.add(("final", job.attempt, job.is_final_attempt, repr(error)))


class DoomedAsync(Worker, max_attempts=2, **FAST):
    async def perform(self, job: Job[Any]) -> Error:
        return Error("quota exceeded")

    async def on_final_failure(self, job: Job[Any], error: BaseException) -> None:  # type: ignore[override]
        SEEN.add(("final", job.attempt, type(error).__name__, str(error)))


class BrokenHook(Worker, max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("first")

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        raise RuntimeError("hook broke")


class Recovers(Worker, max_attempts=3, **FAST):
    def perform(self, job: Job[Any]) -> None:
        if job.attempt < 3:
            raise ValueError("not yet")

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        SEEN.add("final")


def node(app: App) -> Any:
    return app.node({"default": 5}, poll_interval=0.05, stage_interval=0.05).start_in_thread()


def test_runs_once_on_the_last_failed_attempt(make_app: Callable[..., App]) -> None:
    app = make_app(Doomed)
    stored = app.insert(Doomed.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.DISCARDED
    assert SEEN.items() == [
        ("perform", 1, False),
        ("perform", 2, False),
        ("perform", 3, True),
        ("final", 3, True, "LookupError('record missing')"),
    ]


def test_async_hook_gets_the_error_result(make_app: Callable[..., App]) -> None:
    app = make_app(DoomedAsync)
    stored = app.insert(DoomedAsync.new())
    with node(app):
        wait_final(app, stored.id)
    assert SEEN.items() == [("final", 2, PerformError.__name__, "quota exceeded")]


def test_a_failing_hook_is_recorded_and_the_job_still_discarded(
    make_app: Callable[..., App],
) -> None:
    app = make_app(BrokenHook)
    stored = app.insert(BrokenHook.new())
    with node(app):
        done = wait_final(app, stored.id)
    assert done.state is JobState.DISCARDED
    assert done.errors[0]["error"] == "ValueError: first"
    assert done.errors[0]["final_failure_hook_error"] == "RuntimeError: hook broke"


def test_not_run_when_the_last_attempt_succeeds(make_app: Callable[..., App]) -> None:
    app = make_app(Recovers)
    stored = app.insert(Recovers.new())
    with node(app):
        assert wait_final(app, stored.id).state is JobState.COMPLETED
    assert SEEN.items() == []


def test_is_final_attempt_from_the_job() -> None:
    spec = Doomed.new()
    assert spec.max_attempts == 3
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    base: dict[str, Any] = dict(
        id=1,
        state=JobState.EXECUTING,
        queue="default",
        worker=Doomed.name,
        args={},
        meta={},
        tags=(),
        errors=(),
        max_attempts=3,
        priority=0,
        inserted_at=now,
        scheduled_at=now,
    )
    assert not Job(attempt=2, **base).is_final_attempt
    assert Job(attempt=3, **base).is_final_attempt
