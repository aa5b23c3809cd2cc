"""The span helper every timed piece of work reports through (jobs, workflow runs, step tries,
plugin runs): its events, and that jobs and steps really come from it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from jobsaga import App, Job, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.telemetry import NO_SPAN, Span, Telemetry
from jobsaga.workflow import Retry, list_runs
from tests.helpers import wait_until

from .conftest import NODE

Event = tuple[str, dict[str, Any], dict[str, Any]]


@pytest.fixture
def recorded() -> tuple[Telemetry, list[Event]]:
    telemetry = Telemetry()
    events: list[Event] = []
    telemetry.attach(
        "record", "*", lambda event, m, meta: events.append((event, dict(m), dict(meta)))
    )
    return telemetry, events


class FakeTime:
    """A wall clock and a monotonic clock the test moves separately."""

    def __init__(self) -> None:
        self.wall = 1_700_000_000.0
        self.mono = 50.0

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr("jobsaga.telemetry.time", fake)
    return fake


def test_start_then_stop_with_the_duration_and_the_metadata_added_meanwhile(
    recorded: tuple[Telemetry, list[Event]], clock: FakeTime
) -> None:
    telemetry, events = recorded
    with telemetry.span("thing", {"id": 7}, {"queue_wait": 1.5}) as span:
        clock.mono += 0.25
        span.add(state="done")
    assert events == [
        ("thing.start", {"system_time": clock.wall, "queue_wait": 1.5}, {"id": 7}),
        ("thing.stop", {"duration": 0.25, "queue_wait": 1.5}, {"id": 7, "state": "done"}),
    ]


def test_duration_is_monotonic_whatever_the_wall_clock_does(
    recorded: tuple[Telemetry, list[Event]], clock: FakeTime
) -> None:
    telemetry, events = recorded
    with telemetry.span("thing", {}):
        clock.wall -= 3600.0  # the system clock is set back an hour mid-span
        clock.mono += 2.0
    assert events[-1][1] == {"duration": 2.0}


def test_an_exception_is_reported_and_reraised_unchanged(
    recorded: tuple[Telemetry, list[Event]], clock: FakeTime
) -> None:
    telemetry, events = recorded
    error = ValueError("boom")
    with pytest.raises(ValueError) as raised, telemetry.span("thing", {"id": 7}) as span:
        span.add(step="charge")
        clock.mono += 0.5
        raise error
    assert raised.value is error
    assert [e for e, _, _ in events] == ["thing.start", "thing.exception"]
    _, measurements, metadata = events[-1]
    assert measurements == {"duration": 0.5}
    assert metadata == {"id": 7, "step": "charge", "error": error, "kind": "ValueError"}


def test_an_outcome_ends_the_span_once_without_raising(
    recorded: tuple[Telemetry, list[Event]], clock: FakeTime
) -> None:
    telemetry, events = recorded
    span = telemetry.span("job", {"id": 1})
    span.fail(KeyError("x"), state="retryable")
    span.stop(state="completed")  # already ended: nothing more
    with telemetry.span("run", {"id": 2}) as wrapped:
        wrapped.fail(RuntimeError("outer"), kind="ValueError")  # the caller names the kind
    retried = telemetry.span("step", {"id": 3})
    clock.mono += 1.0
    retried.end("retry", {"delay": 5.0}, tries=1)
    ends = [(e, m, meta) for e, m, meta in events if not e.endswith(".start")]
    assert [(e, meta.get("kind"), meta.get("state")) for e, _, meta in ends] == [
        ("job.exception", "KeyError", "retryable"),
        ("run.exception", "ValueError", None),
        ("step.retry", None, None),
    ]
    assert ends[-1][1:] == ({"duration": 1.0, "delay": 5.0}, {"id": 3, "tries": 1})


def test_a_span_without_a_start_event(recorded: tuple[Telemetry, list[Event]]) -> None:
    telemetry, events = recorded
    with telemetry.span("plugin.pruner", {"plugin": "pruner"}, start=False) as span:
        span.stop({"deleted": 3})
    assert [(e, sorted(m)) for e, m, _ in events] == [
        ("plugin.pruner.stop", ["deleted", "duration"])
    ]


def test_a_cancellation_emits_nothing_unless_the_caller_says_what_it_meant(
    recorded: tuple[Telemetry, list[Event]],
) -> None:
    telemetry, events = recorded
    with pytest.raises(asyncio.CancelledError), telemetry.span("thing", {}):
        raise asyncio.CancelledError
    assert [e for e, _, _ in events] == ["thing.start"]


def test_with_no_handler_a_span_costs_no_clock_and_emits_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    telemetry = Telemetry()

    def no_clock() -> float:
        raise AssertionError("a clock was read with nobody listening")

    monkeypatch.setattr("jobsaga.telemetry.time.monotonic", no_clock)
    monkeypatch.setattr("jobsaga.telemetry.time.time", no_clock)
    with telemetry.span("job", {"id": 1}) as span:
        span.add(state="completed")
        span.fail(ValueError("x"))
    assert span is NO_SPAN and NO_SPAN.metadata == {}
    with pytest.raises(ValueError), telemetry.span("job", {}):
        raise ValueError("still raised")


def test_a_handler_that_raises_breaks_neither_the_span_nor_other_handlers(
    recorded: tuple[Telemetry, list[Event]], caplog: pytest.LogCaptureFixture
) -> None:
    telemetry, events = recorded

    def broken(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        raise RuntimeError("handler bug")

    telemetry.attach("broken", "*", broken)
    ran = []
    with caplog.at_level(logging.ERROR, "jobsaga.telemetry"):
        with telemetry.span("thing", {}):
            ran.append(1)
        with pytest.raises(KeyError), telemetry.span("other", {}):  # the body's, not the handler's
            raise KeyError("body")
    assert ran == [1]
    assert [e for e, _, _ in events] == [
        "thing.start",
        "thing.stop",
        "other.start",
        "other.exception",
    ]
    assert sum("telemetry handler failed" in r.message for r in caplog.records) == 4


# --- jobs, runs and steps come from it ----------------------------------------------------


class Fine(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> str:
        return "ok"


class Broken(Worker, queue="default", max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("broken")


class Checkout(Workflow, inputs=["order"]):
    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> str:
        if ctx.tries == 1:
            return Retry("stock service busy", delay=0)  # type: ignore[return-value]
        return f"r-{order}"

    @step(where=lambda order: order == "gift")
    def wrap(self) -> str:
        return "wrapped"

    @step
    def charge(self, order: str, reserve: str) -> str:
        if order == "bad":
            raise ValueError("card declined")
        return "paid"


class CheckoutWorker(WorkflowWorker, workflow=Checkout, name="ops.checkout", max_attempts=1):
    pass


@pytest.fixture
def spans_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The prefix of every span opened through Telemetry.span."""
    opened: list[str] = []
    real = Telemetry.span

    def spy(self: Telemetry, prefix: str, *args: Any, **kwargs: Any) -> Span:
        opened.append(prefix)
        return real(self, prefix, *args, **kwargs)

    monkeypatch.setattr(Telemetry, "span", spy)
    yield opened


def test_jobs_runs_and_steps_emit_through_the_span_helper(
    make_app: Callable[..., App], spans_opened: list[str]
) -> None:
    app = make_app(Fine, Broken, CheckoutWorker)
    events: list[Event] = []
    app.telemetry.attach(
        "all", ["job.*", "workflow.*"], lambda e, m, meta: events.append((e, dict(m), dict(meta)))
    )
    jobs = app.insert_all(
        [
            Fine.new(),
            Broken.new(),
            CheckoutWorker.new({"order": "ok"}),
            CheckoutWorker.new({"order": "bad"}),
        ]
    )
    ids = [job.id for job in jobs]
    with app.node({"default": 4}, **NODE).start_in_thread():
        wait_until(lambda: app.count_jobs(ids=ids) == {"completed": 2, "discarded": 2}, timeout=15)
        wait_until(lambda: sum(e.startswith("job.") for e, _, _ in events) == 8)
    assert {"job", "workflow", "workflow.step", "plugin.stager"} <= set(spans_opened)

    # Every end pairs with its start: the start's metadata carried over, plus the outcome's.
    starts: dict[tuple[str, Any], tuple[dict[str, Any], dict[str, Any]]] = {}
    ends = 0
    for event, measurements, meta in events:
        prefix, _, outcome = event.rpartition(".")
        if prefix == "workflow.step":
            key: Any = (meta["run_id"], meta["step"], meta.get("tries"))
        elif prefix == "workflow":
            key = meta["run_id"]
        elif prefix == "job" and outcome in ("start", "stop", "exception"):
            key = (meta["job"].id, meta["attempt"])
        else:
            continue
        if outcome == "start":
            assert "system_time" in measurements
            starts[(prefix, key)] = (measurements, meta)
            continue
        if outcome not in ("stop", "exception", "retry"):
            continue
        assert measurements["duration"] >= 0
        if outcome == "exception":
            assert isinstance(meta["error"], BaseException) and isinstance(meta["kind"], str)
        if meta.get("status") == "skipped":  # settled by its guard: no try, no start
            assert (prefix, key) not in starts
            continue
        start_measurements, start_meta = starts.pop((prefix, key))
        assert start_meta.items() <= meta.items()
        assert {k: v for k, v in start_measurements.items() if k != "system_time"}.items() <= (
            measurements.items()
        )
        ends += 1
    assert not starts  # every start ended
    # 4 jobs, 2 runs, reserve's 2 tries twice, charge once each
    assert ends == 4 + 2 + 4 + 2

    by_name = [(e, meta.get("step"), meta.get("kind")) for e, _, meta in events]
    assert ("workflow.step.retry", "reserve", None) in by_name
    assert ("workflow.step.stop", "wrap", None) in by_name  # skipped
    assert ("workflow.step.exception", "charge", "ValueError") in by_name
    assert ("workflow.exception", None, "ValueError") in by_name  # the step's error's kind
    assert ("job.exception", None, "ValueError") in by_name


def test_a_raising_handler_fails_neither_jobs_nor_steps(make_app: Callable[..., App]) -> None:
    app = make_app(CheckoutWorker)

    def broken(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        raise RuntimeError("handler bug")

    app.telemetry.attach("broken", "*", broken)
    job = app.insert(CheckoutWorker.new({"order": "ok"}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: app.count_jobs(ids=[job.id]) == {"completed": 1}, timeout=15)
    [run] = list_runs(app, job_id=job.id)
    assert run.status == "succeeded"
