"""Workflow middleware: the chain a run calls (only the hooks a middleware overrides, each
guarded so a failing one never breaks the saga), jobsaga's telemetry events as a middleware,
and OpenTelemetry spans made current around a step's code, a thread's included."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from jobsaga import App, StepContext, Workflow, step
from jobsaga.engines import IN_MEMORY_URL
from jobsaga.errors import ConfigError, StepFailure, WorkflowDefinitionError, WorkflowError
from jobsaga.telemetry import Telemetry
from jobsaga.testing import arun_workflow, run_workflow
from jobsaga.workflow import Retry
from jobsaga.workflow.middleware import (
    Middleware,
    MiddlewareChain,
    RunInfo,
    StepCode,
    StepEvent,
)
from jobsaga.workflow.otel_middleware import OpenTelemetryMiddleware
from jobsaga.workflow.parts import compose
from jobsaga.workflow.records import RunStatus
from jobsaga.workflow.results import Halt
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

    class TriesOnly(Recorder):
        wraps = frozenset({"step"})

    empty = MiddlewareChain()
    assert not empty and not empty.step_events and not empty.wraps("step")
    chain = MiddlewareChain([StepsOnly()])
    assert chain and chain.step_events and not chain.wraps("step")
    plain = MiddlewareChain([Middleware()])  # the base class: every hook a no-op
    assert plain and not plain.step_events and not plain.wraps("step")
    tries = MiddlewareChain([TriesOnly("t", [])])
    assert tries.wraps("step") and not tries.wraps("guard") and not tries.wraps("undo")
    assert MiddlewareChain([Recorder("r", [])]).wraps("undo")
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


def test_otel_steps_of_a_part_nest_under_the_parts_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    chain = MiddlewareChain([OpenTelemetryMiddleware(provider)])
    run = run_info()
    chain.run_started(run)
    for step_name in ("each", "each[0].pack", "pay", "pay.card.charge"):
        chain.step_event(run, StepEvent("started", step_name, tries=1))
    for step_name in ("each[0].pack", "each", "pay.card.charge", "pay"):
        chain.step_event(run, StepEvent("succeeded", step_name, tries=1))
    chain.run_completed(run, None)
    found = {name: spans[0] for name, spans in by_name(exporter).items()}
    parent_of = {
        name: found[name].parent.span_id  # type: ignore[union-attr]
        for name in ("step each[0].pack", "step pay.card.charge", "step each", "step pay")
    }
    assert parent_of == {
        "step each[0].pack": found["step each"].context.span_id,
        "step pay.card.charge": found["step pay"].context.span_id,
        "step each": found["workflow shop.Checkout"].context.span_id,
        "step pay": found["workflow shop.Checkout"].context.span_id,
    }


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


def test_a_halted_run_ends_with_halt(
    telemetry: tuple[Telemetry, list[Event]],
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    """A step that returns Halt succeeds (with the halt value), then halts the run; a compose
    whose child run halted ends its try with halt."""
    tel, events = telemetry
    provider, exporter = spans
    chain = MiddlewareChain([TelemetryMiddleware(tel), OpenTelemetryMiddleware(provider)])
    run = run_info()
    chain.run_started(run)
    chain.step_event(run, StepEvent("started", "approve", tries=1))
    chain.step_event(run, StepEvent("succeeded", "approve", tries=1))
    chain.step_event(run, StepEvent("halted", "approve", reason="waiting"))
    chain.step_event(run, StepEvent("started", "ship", tries=1))
    chain.step_event(run, StepEvent("halted", "ship"))
    chain.run_halted(run, {"ticket": "t-1"})
    assert [(e, meta.get("step"), meta.get("status")) for e, _, meta in events] == [
        ("workflow.start", None, None),
        ("workflow.step.start", "approve", None),
        ("workflow.step.stop", "approve", "succeeded"),
        ("workflow.step.start", "ship", None),
        ("workflow.step.halt", "ship", None),
        ("workflow.halt", None, "halted"),
    ]
    found = by_name(exporter)
    [run_span] = found["workflow shop.Checkout"]
    for span in (run_span, *found["step approve"], *found["step ship"]):
        assert span.status.status_code is StatusCode.UNSET
    assert run_span.attributes is not None
    assert run_span.attributes["jobsaga.workflow.status"] == "halted"


# --- wired into the executor: real runs -----------------------------------------------------

TENANT: contextvars.ContextVar[str | None] = contextvars.ContextVar("tenant", default=None)


class Trail(Middleware):
    """Records what a real run tells it: hooks, step events and the code around_step wraps."""

    def __init__(self, name: str = "trail", calls: list[Call] | None = None) -> None:
        self.name = name
        self.calls: list[Call] = [] if calls is None else calls
        self.runs: list[RunInfo] = []

    def run_started(self, run: RunInfo) -> None:
        self.runs.append(run)
        self.calls.append((self.name, "run_started", run.workflow))

    def run_completed(self, run: RunInfo, value: Any) -> None:
        self.calls.append((self.name, "run_completed", value))

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        self.calls.append((self.name, "run_failed", error.step, status.value))

    def run_halted(self, run: RunInfo, value: Any) -> None:
        self.calls.append((self.name, "run_halted", value))

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        self.calls.append((self.name, "run_interrupted", type(reason).__name__))

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        error = type(event.error).__name__ if event.error is not None else None
        self.calls.append((event.step, event.kind, event.tries, error, event.outcome))

    @contextlib.contextmanager
    def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
        self.calls.append((step, f"<{code}"))
        try:
            yield
        finally:
            self.calls.append((step, f"{code}>"))


SAGA_TRAIL = Trail()


class Saga(Workflow, inputs=["mode"], middleware=[SAGA_TRAIL]):
    @step(where=lambda mode: mode != "skip", backoff=0)
    def reserve(self, mode: str, ctx: StepContext[Any]) -> str:
        if ctx.tries == 1:
            return Retry("busy")  # type: ignore[return-value]
        return "r-1"

    @reserve.undo
    def release(self, reservation: str) -> None:
        pass

    @step
    async def charge(self, reserve: str, mode: str) -> str:
        if mode == "fail":
            raise ValueError("declined")
        return "paid"

    @charge.compensate
    def on_charge_error(self, error: BaseException) -> None:
        return None  # the failure stands


@pytest.fixture
def saga_trail() -> Iterator[list[Call]]:
    SAGA_TRAIL.calls.clear()
    SAGA_TRAIL.runs.clear()
    yield SAGA_TRAIL.calls


def test_a_run_calls_every_hook_in_order(app: App, saga_trail: list[Call]) -> None:
    result = run_workflow(Saga, {"mode": "fail"}, app=app)
    assert result.status is RunStatus.ROLLED_BACK
    assert saga_trail == [
        ("trail", "run_started", Saga.name),
        ("reserve", "<guard"),
        ("reserve", "guard>"),
        ("reserve", "started", 1, None, None),
        ("reserve", "<step"),
        ("reserve", "step>"),
        ("reserve", "retried", 1, None, None),
        ("reserve", "started", 2, None, None),
        ("reserve", "<step"),
        ("reserve", "step>"),
        ("reserve", "succeeded", 2, None, None),
        ("charge", "started", 1, None, None),
        ("charge", "<step"),
        ("charge", "step>"),
        ("charge", "<compensate"),
        ("charge", "compensate>"),
        ("charge", "compensate", None, "ValueError", "fail"),
        ("charge", "failed", 1, "ValueError", None),
        ("reserve", "<undo"),
        ("reserve", "undo>"),
        ("reserve", "undone", 1, None, None),
        ("trail", "run_failed", "charge", "rolled_back"),
    ]
    [run] = SAGA_TRAIL.runs
    assert run.run_id == result.run_id is not None
    assert (run.attempt, run.resumed, run.job_id, run.parent) == (1, False, None, None)
    assert dict(run.inputs or {}) == {"mode": "fail"}
    # The events are the run log's transitions, in its order.
    assert result.run is not None
    logged = [(e.step, e.kind.removeprefix("step.")) for e in result.run.events if e.step]
    told = [(c[0], c[1]) for c in saga_trail if len(c) == 5]
    assert told == logged


def test_a_skipped_step_and_a_success(saga_trail: list[Call]) -> None:
    result = run_workflow(Saga, {"mode": "skip"})
    assert result.ok
    assert ("reserve", "skipped", None, None, None) in saga_trail
    assert saga_trail[-1] == ("trail", "run_completed", "paid")


def test_app_middleware_runs_first_and_a_shared_instance_once(
    make_app: Callable[..., App], saga_trail: list[Call]
) -> None:
    app_wide = Trail("app", saga_trail)
    app = make_app(workflow_middleware=[app_wide, SAGA_TRAIL])
    run_workflow(Saga, {"mode": "ok"}, app=app)
    starts = [c for c in saga_trail if c[1] == "run_started"]
    # SAGA_TRAIL, given twice (the app's and the class's), is called once.
    assert starts == [("app", "run_started", Saga.name), ("trail", "run_started", Saga.name)]


def test_app_middleware_must_be_instances(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="Middleware instances"):
        App(f"sqlite:///{tmp_path / 'x.db'}", workflow_middleware=[Trail])


def test_a_subclass_inherits_its_bases_middleware_and_classes_are_refused() -> None:
    class Child(Saga):
        pass

    assert Child.options.middleware == (SAGA_TRAIL,)
    with pytest.raises(WorkflowDefinitionError, match=r"pass Trail\(\), not Trail"):

        class Wrong(Workflow, middleware=[Trail]):
            @step
            def a(self) -> int:
                return 1


class Tenant(Middleware):
    @contextlib.contextmanager
    def around_step(self, run: RunInfo, step: str, code: StepCode) -> Iterator[None]:
        token = TENANT.set(run.context["tenant"])
        try:
            yield
        finally:
            TENANT.reset(token)


class Tenanted(Workflow, middleware=[Tenant()]):
    @step
    def in_a_thread(self) -> tuple[str | None, bool]:
        return TENANT.get(), threading.current_thread() is threading.main_thread()

    @step
    async def on_the_loop(self, in_a_thread: Any) -> str | None:
        return TENANT.get()

    @step
    def result(self, in_a_thread: Any, on_the_loop: str | None) -> Any:
        return [list(in_a_thread), on_the_loop]


def test_around_step_context_reaches_the_steps_code_in_threads_and_on_the_loop() -> None:
    result = run_workflow(Tenanted, context={"tenant": "acme"})
    assert result.value == [["acme", False], "acme"]
    assert TENANT.get() is None


def test_a_failing_middleware_never_breaks_the_run(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    class Fragile(Workflow, middleware=[Broken()]):
        @step
        def a(self) -> int:
            return 1

        @step
        def b(self, a: int) -> int:
            return a + 1

    with caplog.at_level(logging.ERROR, "jobsaga.workflow.middleware"):
        result = run_workflow(Fragile, app=app)
    assert result.ok and result.value == 2
    assert sorted(r.getMessage().split(" (")[0].rsplit(" ", 1)[1] for r in caplog.records) == [
        "around_step",
        "run_started",
        "step_event",
    ]


def test_a_halted_run_and_an_interrupted_one() -> None:
    trail = Trail()
    release = asyncio.Event()

    class Approval(Workflow, inputs=["wait"], middleware=[trail]):
        @step
        async def approve(self, wait: bool) -> Any:
            if wait:
                release.set()
                await asyncio.sleep(60)
            return Halt({"ticket": "t-1"}, reason="a manager must approve")

    result = run_workflow(Approval, {"wait": False})
    assert result.status is RunStatus.HALTED
    assert ("approve", "halted", None, None, None) in trail.calls
    assert trail.calls[-1] == ("trail", "run_halted", {"ticket": "t-1"})

    async def cut_short() -> None:
        task = asyncio.ensure_future(arun_workflow(Approval, {"wait": True}))
        await release.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    trail.calls.clear()
    asyncio.run(cut_short())
    # (The cancelled step's around_step may exit after: its task ends after the run's.)
    assert ("trail", "run_interrupted", "CancelledError") in trail.calls
    assert not [c for c in trail.calls if c[1] in ("run_completed", "run_failed", "run_halted")]


class Packed(Workflow, inputs=["order"]):
    @step
    def pack(self, order: str) -> str:
        with trace.get_tracer("test").start_as_current_span("label printer"):
            pass
        return f"box-{order}"


def test_a_child_run_gets_its_parents_middleware_and_nests_its_spans(
    app: App, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    trail = Trail()

    class Order(Workflow, inputs=["order"], middleware=[trail, OpenTelemetryMiddleware(provider)]):
        shipment = compose(Packed, inputs={"order": "order"})

    with _global_tracer(provider):
        result = run_workflow(Order, {"order": "o-1"}, app=app)
    assert result.ok and result.value == "box-o-1"
    parent, child = trail.runs
    assert child.parent is parent and child.parent_step == "shipment"
    assert child.workflow == Packed.name and child.run_id != parent.run_id
    found = by_name(exporter)
    [order_span] = found[f"workflow {Order.name}"]
    [shipment] = found["step shipment"]
    [packed] = found[f"workflow {Packed.name}"]
    [pack] = found["step pack"]
    [printer] = found["label printer"]  # made by the step's code, in a thread
    assert shipment.parent is not None and shipment.parent.span_id == order_span.context.span_id
    assert packed.parent is not None and packed.parent.span_id == shipment.context.span_id
    assert pack.parent is not None and pack.parent.span_id == packed.context.span_id
    assert printer.parent is not None and printer.parent.span_id == pack.context.span_id


@contextlib.contextmanager
def _global_tracer(provider: TracerProvider) -> Iterator[None]:
    """Step code asks the global tracer provider (as a library would): this one, meanwhile."""
    with mock.patch.object(trace, "get_tracer_provider", return_value=provider):
        yield


def test_without_middleware_or_a_handler_a_run_builds_no_chain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[Any] = []
    real = MiddlewareChain

    def spy(middleware: Any) -> Any:
        built.append(middleware)
        return real(middleware)

    monkeypatch.setattr("jobsaga.workflow.executor.MiddlewareChain", spy)

    class Plain(Workflow):
        @step
        def a(self) -> int:
            return 1

    app = App(IN_MEMORY_URL)
    app.migrate()
    assert run_workflow(Plain, app=app).ok
    assert built == []  # the shared empty chain: no hook is asked anything
    events: list[str] = []
    app.telemetry.attach("t", "workflow.*", lambda e, m, meta: events.append(e))
    assert run_workflow(Plain, app=app).ok
    [(telemetry,)] = built
    assert isinstance(telemetry, TelemetryMiddleware)
    assert events == [
        "workflow.start",
        "workflow.step.start",
        "workflow.step.stop",
        "workflow.stop",
    ]


def test_the_bridge_hands_job_spans_to_the_middleware_and_leaves_sagas_to_it(app: App) -> None:
    """attach_otel(workflow_spans=False) + OpenTelemetryMiddleware(job_spans=bridge): one
    span per run, nested under its job's span (no duplicate run spans from the bridge)."""
    from jobsaga.telemetry_otel import attach_otel
    from jobsaga.workflow import WorkflowWorker
    from jobsaga.workflow.otel_middleware import OpenTelemetryMiddleware
    from tests.helpers import wait_until

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    bridge = attach_otel(app, tracer_provider=provider, workflow_spans=False)
    traced = OpenTelemetryMiddleware(tracer_provider=provider, job_spans=bridge)

    class Traced(Workflow, inputs=["x"], middleware=[traced]):
        @step
        def double(self, x: int) -> int:
            return x * 2

    class TracedWorker(WorkflowWorker, workflow=Traced, name="traced.bridge.worker"):
        pass

    app.register(TracedWorker)
    job = app.insert(TracedWorker.new({"x": 2}))
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.count_jobs(ids=[job.id]) == {"completed": 1})
        wait_until(lambda: any(s.name.startswith("job ") for s in exporter.get_finished_spans()))
    spans = exporter.get_finished_spans()
    runs = [s for s in spans if s.name.startswith("workflow ")]
    jobs = [s for s in spans if s.name.startswith("job ")]
    assert len(runs) == 1 and len(jobs) == 1
    assert runs[0].parent is not None and runs[0].parent.span_id == jobs[0].context.span_id
