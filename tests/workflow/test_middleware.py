"""Workflow middleware: the chain a run calls (only the hooks a middleware overrides, each
guarded so a failing one never breaks the saga), jobsaga's telemetry events as a middleware,
and OpenTelemetry spans made current around a step's code, a thread's included."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from jobsaga.errors import StepFailure, WorkflowError
from jobsaga.telemetry import Telemetry
from jobsaga.workflow.middleware import (
    Middleware,
    MiddlewareChain,
    RunInfo,
    StepCode,
    StepEvent,
)
from jobsaga.workflow.otel_middleware import OpenTelemetryMiddleware
from jobsaga.workflow.records import RunStatus
from jobsaga.workflow.telemetry_middleware import TelemetryMiddleware

Call = tuple[Any, ...]


def run_info(**fields: Any) -> RunInfo:
    values: dict[str, Any] = {
        "workflow": "shop.Checkout",
        "run_id": 7,
        "job_id": 42,
        "attempt": 1,
        "resumed": False,
        **fields,
    }
    return RunInfo(**values)


class Recorder(Middleware):
    """Records every hook, under its name."""

    def __init__(self, name: str, calls: list[Call]) -> None:
        self.name, self.calls = name, calls

    def run_started(self, run: RunInfo) -> None:
        self.calls.append((self.name, "run_started", run.workflow))

    def run_completed(self, run: RunInfo, value: Any) -> None:
        self.calls.append((self.name, "run_completed", value))

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        self.calls.append((self.name, "run_failed", error.step, status))

    def run_halted(self, run: RunInfo, value: Any) -> None:
        self.calls.append((self.name, "run_halted", value))

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        self.calls.append((self.name, "run_interrupted", type(reason).__name__))

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        self.calls.append((self.name, "step_event", event.step, event.kind))

    @contextlib.contextmanager
    def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
        self.calls.append((self.name, "enter", step, code))
        try:
            yield
        finally:
            self.calls.append((self.name, "exit", step, code))


class Broken(Middleware):
    """Every hook raises."""

    def run_started(self, run: RunInfo) -> None:
        raise RuntimeError("middleware bug")

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        raise RuntimeError("middleware bug")

    def around_step(
        self, run: RunInfo, step: str, code: StepCode
    ) -> contextlib.AbstractContextManager[Any]:
        raise RuntimeError("middleware bug")


# --- the chain ----------------------------------------------------------------------------


def test_hooks_are_called_in_order_and_around_step_nests_first_outermost() -> None:
    calls: list[Call] = []
    chain = MiddlewareChain([Recorder("a", calls), Recorder("b", calls)])
    run = run_info()
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "reserve", tries=1))
    with chain.around_step(run, "reserve", "step"):
        calls.append(("code",))
    chain.run_completed(run, 3)
    assert calls == [
        ("a", "run_started", "shop.Checkout"),
        ("b", "run_started", "shop.Checkout"),
        ("a", "step_event", "reserve", "started"),
        ("b", "step_event", "reserve", "started"),
        ("a", "enter", "reserve", "step"),
        ("b", "enter", "reserve", "step"),
        ("code",),
        ("b", "exit", "reserve", "step"),
        ("a", "exit", "reserve", "step"),
        ("a", "run_completed", 3),
        ("b", "run_completed", 3),
    ]


def test_an_empty_chain_is_falsy_and_only_overridden_hooks_count() -> None:
    class StepsOnly(Middleware):
        def step_event(self, run: RunInfo, event: StepEvent) -> None:
            pass

    empty = MiddlewareChain()
    assert not empty and not empty.step_events and not empty.around
    chain = MiddlewareChain([StepsOnly()])
    assert chain and chain.step_events and not chain.around
    plain = MiddlewareChain([Middleware()])  # the base class: every hook a no-op
    assert plain and not plain.step_events and not plain.around
    with plain.around_step(run_info(), "s", "step"):
        pass


def test_the_same_instance_twice_runs_once() -> None:
    calls: list[Call] = []
    shared = Recorder("a", calls)
    chain = MiddlewareChain([shared, Recorder("b", calls), shared])
    chain.run_started(run_info())
    assert [name for name, *_ in calls] == ["a", "b"]


def test_a_failing_hook_is_logged_once_per_hook_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[Call] = []
    chain = MiddlewareChain([Broken(), Recorder("ok", calls)])
    run = run_info()
    with caplog.at_level(logging.DEBUG, "jobsaga.workflow.middleware"):
        chain.run_started(run)
        for kind in ("started", "succeeded"):
            chain.step_event(run, StepEvent(kind, "s", tries=1))  # type: ignore[arg-type]
        for _ in range(2):
            with chain.around_step(run, "s", "step"):
                calls.append(("code",))
    assert calls == [
        ("ok", "run_started", "shop.Checkout"),
        ("ok", "step_event", "s", "started"),
        ("ok", "step_event", "s", "succeeded"),
        ("ok", "enter", "s", "step"),
        ("code",),
        ("ok", "exit", "s", "step"),
    ] + [("ok", "enter", "s", "step"), ("code",), ("ok", "exit", "s", "step")]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(" (")[0] for r in errors] == [
        f"workflow middleware {__name__}.Broken failed in run_started",
        f"workflow middleware {__name__}.Broken failed in step_event",
        f"workflow middleware {__name__}.Broken failed in around_step",
    ]
    assert all(r.exc_info is not None for r in errors)  # with the traceback
    again = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(again) == 2  # step_event's and around_step's second failures


def test_around_step_cannot_swallow_the_codes_error_and_a_failing_exit_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[Any] = []

    class Swallows(Middleware):
        @contextlib.contextmanager
        def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
            try:
                yield
            except ValueError as exc:
                seen.append(exc)  # and returns: a plain context manager would swallow it

    class FailsOnExit(Middleware):
        @contextlib.contextmanager
        def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
            yield
            raise RuntimeError("exit bug")

    chain = MiddlewareChain([Swallows(), FailsOnExit()])
    with pytest.raises(ValueError, match="the step's"), chain.around_step(run_info(), "s", "step"):
        raise ValueError("the step's")
    assert [str(e) for e in seen] == ["the step's"]
    with (
        caplog.at_level(logging.ERROR, "jobsaga.workflow.middleware"),
        chain.around_step(run_info(), "s", "step"),
    ):
        pass
    [logged] = caplog.records
    assert "FailsOnExit failed in around_step" in logged.getMessage()


def test_around_step_sets_context_seen_by_code_in_a_thread() -> None:
    """The executor enters around_step, then copies the context into the step's thread."""
    tenant: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)

    class Tenant(Middleware):
        @contextlib.contextmanager
        def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
            token = tenant.set(run.context["tenant"])
            try:
                yield
            finally:
                tenant.reset(token)

    chain = MiddlewareChain([Tenant()])
    run = run_info(context={"tenant": "acme"})

    async def call_in_thread() -> str | None:
        with chain.around_step(run, "s", "step"):
            context = contextvars.copy_context()
            return await asyncio.to_thread(context.run, tenant.get)

    assert asyncio.run(call_in_thread()) == "acme"
    assert tenant.get() is None


def test_run_info_is_read_only_and_hashed_by_identity() -> None:
    run = run_info()
    with pytest.raises(AttributeError):
        run.run_id = 8  # type: ignore[misc]
    same_fields = run_info()
    assert run != same_fields and len({run, same_fields}) == 2


# --- jobsaga's telemetry events -----------------------------------------------------------

Event = tuple[str, dict[str, Any], dict[str, Any]]


@pytest.fixture
def telemetry() -> tuple[Telemetry, list[Event]]:
    telemetry = Telemetry()
    events: list[Event] = []
    telemetry.attach("all", "*", lambda e, m, meta: events.append((e, dict(m), dict(meta))))
    return telemetry, events


META = {"workflow": "shop.Checkout", "run_id": 7, "job_id": 42, "attempt": 1}


def test_telemetry_events_of_a_run_that_retries_and_succeeds(
    telemetry: tuple[Telemetry, list[Event]],
) -> None:
    tel, events = telemetry
    chain = MiddlewareChain([TelemetryMiddleware(tel)])
    run = run_info(resumed=True)
    error = TimeoutError("slow")
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "reserve", tries=1))
    chain.step_event(run, StepEvent("retried", "reserve", tries=1, error=error, delay=0.5))
    chain.step_event(run, StepEvent("started", "reserve", tries=2))
    chain.step_event(run, StepEvent("succeeded", "reserve", tries=2))
    with chain.around_step(run, "wrap", "guard"):
        pass
    chain.step_event(run, StepEvent("skipped", "wrap"))
    chain.run_completed(run, "paid")
    names = [e for e, _, _ in events]
    assert names == [
        "workflow.start",
        "workflow.step.start",
        "workflow.step.retry",
        "workflow.step.start",
        "workflow.step.stop",
        "workflow.step.stop",
        "workflow.stop",
    ]
    start, retry_start, retry, _, stop, skipped, run_stop = events
    assert start[2] == {**META, "resumed": True} and "system_time" in start[1]
    assert retry_start[2] == {**META, "step": "reserve", "tries": 1}
    assert retry[1]["delay"] == 0.5 and retry[1]["duration"] >= 0
    assert retry[2] == {**META, "step": "reserve", "tries": 1, "error": error}
    assert stop[2] == {**META, "step": "reserve", "tries": 2, "status": "succeeded"}
    assert skipped[2] == {**META, "step": "wrap", "status": "skipped"}  # no start, no tries
    assert "duration" in skipped[1]
    assert run_stop[2] == {**META, "resumed": True, "status": "succeeded"}


def test_telemetry_events_of_a_run_that_fails_and_rolls_back(
    telemetry: tuple[Telemetry, list[Event]],
) -> None:
    tel, events = telemetry
    chain = MiddlewareChain([TelemetryMiddleware(tel)])
    run = run_info()
    declined, undo_error = ValueError("declined"), OSError("gone")
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "charge", tries=1))
    chain.step_event(run, StepEvent("compensate", "charge", error=declined, outcome="fail"))
    chain.step_event(run, StepEvent("failed", "charge", tries=1, error=declined))
    chain.step_event(run, StepEvent("failed", "ship", tries=1, error=declined))  # outside a try
    chain.step_event(run, StepEvent("undo_retried", "reserve", tries=1, delay=0.1))
    chain.step_event(run, StepEvent("undone", "reserve", tries=2))
    chain.step_event(run, StepEvent("undo_failed", "pack", tries=1, error=undo_error))
    error = WorkflowError(
        "shop.Checkout", "charge", declined, undo_errors=(StepFailure("pack", undo_error),)
    )
    chain.run_failed(run, error, RunStatus.ROLLBACK_FAILED)
    step = {**META, "step": "charge"}
    assert [(e, meta) for e, _, meta in events[1:-1]] == [
        ("workflow.step.start", {**step, "tries": 1}),
        ("workflow.step.compensate", {**step, "outcome": "fail", "error": declined}),
        (
            "workflow.step.exception",
            {**step, "tries": 1, "error": declined, "kind": "ValueError"},
        ),
        (
            "workflow.step.exception",
            {**META, "step": "ship", "tries": 1, "error": declined, "kind": "ValueError"},
        ),
        ("workflow.step.undo", {**META, "step": "reserve", "outcome": "retry", "tries": 1}),
        ("workflow.step.undo", {**META, "step": "reserve", "outcome": "undone", "tries": 2}),
        (
            "workflow.step.undo",
            {**META, "step": "pack", "outcome": "failed", "error": undo_error, "tries": 1},
        ),
    ]
    assert events[5][1] == {"delay": 0.1} and events[2][1] == {}
    end, measurements, meta = events[-1]
    assert end == "workflow.exception" and measurements["duration"] >= 0
    # The kind of the step's error: the WorkflowError only carries it.
    assert meta == {
        **META,
        "resumed": False,
        "status": "rollback_failed",
        "error": error,
        "kind": "ValueError",
    }


def test_an_interrupted_run_ends_no_span_and_is_forgotten(
    telemetry: tuple[Telemetry, list[Event]],
) -> None:
    tel, events = telemetry
    middleware = TelemetryMiddleware(tel)
    chain = MiddlewareChain([middleware])
    run = run_info()
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "a", tries=1))
    chain.step_event(run, StepEvent("started", "b", tries=1))
    chain.step_event(run, StepEvent("interrupted", "b"))
    chain.run_interrupted(run, asyncio.CancelledError())
    assert [e for e, _, _ in events] == [
        "workflow.start",
        "workflow.step.start",
        "workflow.step.start",
    ]
    assert middleware._runs == {}


# --- OpenTelemetry ------------------------------------------------------------------------


@pytest.fixture
def spans() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        found.setdefault(span.name, []).append(span)
    return found


class FakeBridge:
    """Where the OpenTelemetry bridge keeps the span of a job's attempt."""

    def __init__(self, span: trace.Span) -> None:
        self.span = span

    def job_span(self, job_id: int, attempt: int) -> trace.Span | None:
        return self.span if (job_id, attempt) == (42, 1) else None


def test_otel_step_spans_are_current_in_the_steps_code_even_in_a_thread(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    job_span = tracer.start_span("job shop.CheckoutWorker")
    chain = MiddlewareChain([OpenTelemetryMiddleware(provider, job_spans=FakeBridge(job_span))])
    run = run_info()
    threads: list[int] = []

    def sync_step_code() -> None:  # what a plain def step does, in its thread
        threads.append(threading.get_ident())
        with tracer.start_as_current_span("http GET /stock"):
            pass

    async def saga() -> None:
        chain.run_started(run)
        chain.step_event(run, StepEvent("started", "reserve", tries=1))
        with chain.around_step(run, "reserve", "step"):
            context = contextvars.copy_context()
            await asyncio.to_thread(context.run, sync_step_code)
        slow = TimeoutError("slow")
        chain.step_event(run, StepEvent("retried", "reserve", tries=1, delay=0.2, error=slow))
        chain.step_event(run, StepEvent("started", "reserve", tries=2))
        with (
            chain.around_step(run, "reserve", "step"),
            tracer.start_as_current_span("db insert"),  # an async step's, on the loop
        ):
            pass
        chain.step_event(run, StepEvent("succeeded", "reserve", tries=2))
        chain.run_completed(run, "r-1")

    asyncio.run(saga())
    job_span.end()
    assert threads and threads[0] != threading.get_ident()
    found = by_name(exporter)
    [run_span] = found["workflow shop.Checkout"]
    failed_try, ok_try = found["step reserve"]
    [http] = found["http GET /stock"]
    [db] = found["db insert"]
    assert run_span.parent is not None
    assert run_span.parent.span_id == job_span.get_span_context().span_id
    assert run_span.attributes is not None
    assert run_span.attributes["jobsaga.workflow.status"] == "succeeded"
    for try_span in (failed_try, ok_try):
        assert try_span.parent is not None
        assert try_span.parent.span_id == run_span.context.span_id
    assert http.parent is not None and http.parent.span_id == failed_try.context.span_id
    assert db.parent is not None and db.parent.span_id == ok_try.context.span_id
    assert failed_try.status.status_code is StatusCode.ERROR
    assert failed_try.attributes is not None
    assert failed_try.attributes["jobsaga.step.retry_in"] == 0.2
    assert [e.name for e in failed_try.events] == ["exception"]
    assert ok_try.status.status_code is StatusCode.UNSET
    assert ok_try.attributes is not None and ok_try.attributes["jobsaga.step.try"] == 2


def test_otel_a_child_run_nests_under_its_composing_step_or_the_current_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    chain = MiddlewareChain([OpenTelemetryMiddleware(provider)])
    parent = run_info()
    child = run_info(workflow="shop.Pack", run_id=8, parent=parent, parent_step="pack")
    chain.run_started(parent)
    chain.step_event(parent, StepEvent("started", "pack", tries=1))
    chain.run_started(child)  # a composed saga's child run, started beside the step's code
    chain.run_completed(child, None)
    with provider.get_tracer("test").start_as_current_span("request") as request:
        chain.run_started(inline := run_info(workflow="shop.Inline"))  # a span is current
        chain.run_completed(inline, None)
    chain.step_event(parent, StepEvent("succeeded", "pack", tries=1))
    chain.run_completed(parent, None)
    found = by_name(exporter)
    [child_span] = found["workflow shop.Pack"]
    [inline_span] = found["workflow shop.Inline"]
    [step_span] = found["step pack"]
    assert child_span.parent is not None
    assert child_span.parent.span_id == step_span.context.span_id
    assert inline_span.parent is not None
    assert inline_span.parent.span_id == request.get_span_context().span_id


def test_otel_failure_undo_spans_and_moments(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    chain = MiddlewareChain([OpenTelemetryMiddleware(provider)])
    run = run_info()
    declined = ValueError("declined")
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "charge", tries=1))
    chain.step_event(run, StepEvent("compensate", "charge", error=declined, outcome="fail"))
    chain.step_event(run, StepEvent("failed", "charge", tries=1, error=declined))
    with pytest.raises(OSError), chain.around_step(run, "reserve", "undo"):
        raise OSError("gone")
    chain.step_event(run, StepEvent("undo_failed", "reserve", tries=1, error=OSError("gone")))
    error = WorkflowError("shop.Checkout", "charge", declined)
    chain.run_failed(run, error, RunStatus.ROLLBACK_FAILED)
    found = by_name(exporter)
    [run_span] = found["workflow shop.Checkout"]
    [charge] = found["step charge"]
    [undo] = found["undo reserve"]
    assert [e.name for e in charge.events] == ["step.compensate", "exception"]
    assert charge.status.status_code is StatusCode.ERROR
    assert undo.status.status_code is StatusCode.ERROR
    assert undo.parent is not None and undo.parent.span_id == run_span.context.span_id
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.status.description == "ValueError: declined"
    assert run_span.attributes is not None
    assert run_span.attributes["jobsaga.workflow.status"] == "rollback_failed"
    assert [e.name for e in run_span.events] == ["step.undo_failed", "exception"]


def test_otel_an_interrupted_run_ends_its_open_spans_in_error(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    chain = MiddlewareChain([OpenTelemetryMiddleware(provider)])
    run = run_info()
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "a", tries=1))
    chain.run_interrupted(run, asyncio.CancelledError())
    found = by_name(exporter)
    [run_span] = found["workflow shop.Checkout"]
    [step_span] = found["step a"]
    assert step_span.status.status_code is StatusCode.ERROR
    assert run_span.attributes is not None
    assert run_span.attributes["jobsaga.workflow.status"] == "interrupted"
    assert run_span.status.status_code is StatusCode.ERROR


def test_a_halted_run_stops_with_status_halted(
    telemetry: tuple[Telemetry, list[Event]],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    tel, events = telemetry
    provider, exporter = spans
    chain = MiddlewareChain([TelemetryMiddleware(tel), OpenTelemetryMiddleware(provider)])
    run = run_info()
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "approve", tries=1))
    chain.step_event(run, StepEvent("halted", "approve", tries=1, reason="waiting"))
    chain.run_halted(run, {"ticket": "t-1"})
    assert [(e, meta.get("status")) for e, _, meta in events] == [
        ("workflow.start", None),
        ("workflow.step.start", None),
        ("workflow.step.stop", "halted"),
        ("workflow.stop", "halted"),
    ]
    found = by_name(exporter)
    [run_span] = found["workflow shop.Checkout"]
    [step_span] = found["step approve"]
    for span in (run_span, step_span):
        assert span.status.status_code is StatusCode.UNSET
    assert run_span.attributes is not None
    assert run_span.attributes["jobsaga.workflow.status"] == "halted"
