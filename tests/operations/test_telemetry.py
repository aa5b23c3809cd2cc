"""Telemetry: the events operations add, the default structured-logging handler, and the
OpenTelemetry bridge (spans checked with the SDK's in-memory exporter)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from jobsaga import App, Job, JobState, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.telemetry_logging import attach_default_logger
from jobsaga.telemetry_otel import attach_otel
from jobsaga.workflow import Retry
from tests.helpers import wait_until

from . import workers as w
from .conftest import NODE


class Boom(Worker, queue="default", max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("boom")


class Shipping(Workflow, inputs=["order"]):
    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> str:
        if ctx.tries == 1:
            return Retry("stock service busy", delay=0)  # type: ignore[return-value]
        return f"r-{order}"

    @step
    async def ship(self, reserve: str) -> str:
        return f"shipped {reserve}"


class ShippingWorker(WorkflowWorker, workflow=Shipping, name="ops.shipping"):
    pass


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, list[ReadableSpan]]:
    found: dict[str, list[ReadableSpan]] = {}
    for span in finished:
        found.setdefault(span.name, []).append(span)
    return found


def test_otel_spans_per_job_and_per_workflow_step(
    make_app: Callable[..., App], spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = make_app(w.Noop, Boom, ShippingWorker)
    bridge = attach_otel(app, tracer_provider=provider)
    ok, bad = app.insert(w.Noop.new({})), app.insert(Boom.new({}))
    saga = app.insert(ShippingWorker.new({"order": "o-1"}))
    with app.node({"default": 3}, **NODE).start_in_thread():
        wait_until(
            lambda: (
                app.count_jobs(ids=[ok.id, bad.id, saga.id]).get("available") is None
                and app.count_jobs(state="executing") == {}
            ),
            timeout=15,
        )
    bridge.detach()
    found = by_name(exporter.get_finished_spans())
    [noop] = found[f"job {w.Noop.name}"]
    assert noop.attributes is not None and noop.attributes["jobsaga.job.id"] == ok.id
    assert noop.attributes["jobsaga.job.state"] == "completed"
    assert noop.status.status_code is not StatusCode.ERROR
    [boom] = found[f"job {Boom.name}"]
    assert boom.status.status_code is StatusCode.ERROR and "boom" in (boom.status.description or "")
    assert boom.attributes is not None and boom.attributes["jobsaga.job.state"] == "discarded"
    assert [e.name for e in boom.events] == ["exception"]

    [job_span] = found["job ops.shipping"]
    [run_span] = found[f"workflow {Shipping.name}"]
    reserve_tries = found["step reserve"]
    [ship] = found["step ship"]
    assert run_span.parent is not None and run_span.parent.span_id == job_span.context.span_id
    assert {s.parent.span_id for s in [*reserve_tries, ship] if s.parent} == {
        run_span.context.span_id
    }
    assert sorted(s.attributes["jobsaga.step.try"] for s in reserve_tries if s.attributes) == [1, 2]
    statuses = sorted(s.status.status_code.name for s in reserve_tries)
    assert statuses == ["ERROR", "UNSET"]  # the first try asked for a retry


def test_otel_span_of_a_cancelled_job(
    make_app: Callable[..., App], spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    app = make_app(w.Hold)
    attach_otel(app, tracer_provider=provider)
    held = app.insert(w.Hold.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: held.id in w.started)
        app.cancel_job(held.id)
        wait_until(lambda: not thread.node.producers["default"].running)
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert (span.attributes["jobsaga.job.state"], span.attributes["jobsaga.job.stopped"]) == (
        "cancelled",
        "cancelled",
    )


def test_default_logger_writes_json_lines_at_sensible_levels(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(w.Noop, Boom)
    attach_default_logger(app)
    caplog.set_level(logging.INFO, logger="jobsaga.events")
    ok, bad = app.insert(w.Noop.new({})), app.insert(Boom.new({}))
    with app.node({"default": 2}, name="logged", **NODE).start_in_thread():
        wait_until(lambda: app.count_jobs(ids=[ok.id, bad.id]) == {"completed": 1, "discarded": 1})
        app.pause_queue("default")
        wait_until(lambda: any("queue.pause" in r.getMessage() for r in caplog.records))
    records = [r for r in caplog.records if r.name == "jobsaga.events"]
    lines = [(r.levelname, json.loads(r.getMessage())) for r in records]
    events = [(level, data["event"]) for level, data in lines]
    assert ("ERROR", "job.exception") in events  # discarded: its last attempt failed
    assert ("INFO", "queue.pause") in events
    assert all(event != "job.stop" for _, event in events)  # per-job successes are DEBUG
    failure = next(data for _, data in lines if data["event"] == "job.exception")
    assert failure["job_id"] == bad.id and failure["error"] == "ValueError: boom"
    assert failure["state"] == JobState.DISCARDED.value and failure["node"] == "logged"
    pause = next(r for r in records if "queue.pause" in r.getMessage())
    assert pause.jobsaga["queue"] == "default"  # type: ignore[attr-defined]


def test_job_operation_events(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop)
    seen: list[tuple[str, int]] = []
    app.telemetry.attach("ops", "job.*", lambda e, m, meta: seen.append((e, m["count"])))
    job = app.insert(w.Noop.new({}))
    app.cancel_job(job.id)
    app.retry_job(job.id)
    app.cancel_job(job.id)
    app.delete_job(job.id)
    assert seen == [("job.cancel", 1), ("job.retry", 1), ("job.cancel", 1), ("job.delete", 1)]
