"""OpenTelemetry bridge (the ``jobsaga[otel]`` extra): a span per job attempt, per workflow
run, and per workflow step try, built from jobsaga's telemetry events.

::

    from jobsaga.telemetry_otel import attach_otel
    bridge = attach_otel(app)              # the global tracer provider, or tracer_provider=...

Spans nest as job -> workflow run -> step. A step that is retried gets one span per try
(the failed tries end in error); compensations and undos are span events on the run's span.
A job stopped by an operator's cancel ends its span with ``jobsaga.job.state = cancelled``;
an attempt cut short by shutdown ends in error. Spans are started and ended from the event
handlers, so nothing here runs unless the bridge is attached.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from .core import AppCore

__all__ = ["OtelBridge", "attach_otel"]

HANDLER_ID = "jobsaga-otel"
JOB_EVENTS = ("job.start", "job.stop", "job.exception")
EVENTS = (*JOB_EVENTS, "workflow.*")
MAX_OPEN = 100_000
"""Open spans kept at most (a node that never reports an end must not grow without bound)."""

try:
    from importlib.metadata import version

    _VERSION: str | None = version("jobsaga")
except Exception:  # pragma: no cover - not installed as a distribution
    _VERSION = None


class OtelBridge:
    """Turns telemetry events into spans; :meth:`detach` ends any still open."""

    def __init__(self, app: AppCore, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.app = app
        self.tracer = trace.get_tracer("jobsaga", _VERSION, tracer_provider=tracer_provider)
        self._jobs: dict[tuple[int, int], Span] = {}
        self._runs: dict[Any, Span] = {}
        self._steps: dict[tuple[Any, str], Span] = {}
        self._lock = threading.Lock()

    def job_span(self, job_id: int, attempt: int) -> Span | None:
        """The open span of a job's attempt (``OpenTelemetryMiddleware(job_spans=bridge)``
        nests a saga's run under it)."""
        with self._lock:
            return self._jobs.get((job_id, attempt))

    # --- the handler ----------------------------------------------------------------------

    def __call__(self, event: str, measures: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        with self._lock:
            if event.startswith("job."):
                self._job(event, meta)
            elif event.startswith("workflow.step."):
                self._step(event, measures, meta)
            elif event.startswith("workflow."):
                self._run(event, meta)

    def _job(self, event: str, meta: Mapping[str, Any]) -> None:
        job = meta.get("job")
        if job is None:
            return
        key = (int(job.id), int(job.attempt))
        if event == "job.start":
            self._jobs[key] = self.tracer.start_span(
                f"job {job.worker}",
                kind=SpanKind.CONSUMER,
                attributes={
                    "jobsaga.job.id": job.id,
                    "jobsaga.job.worker": job.worker,
                    "jobsaga.job.queue": job.queue,
                    "jobsaga.job.attempt": job.attempt,
                    "jobsaga.job.max_attempts": job.max_attempts,
                    "jobsaga.node": str(meta.get("node", "")),
                    "messaging.system": "jobsaga",
                    "messaging.destination.name": job.queue,
                },
            )
            self._bound(self._jobs)
            return
        span = self._jobs.pop(key, None)
        if span is None:
            return
        span.set_attribute("jobsaga.job.state", str(meta.get("state", "")))
        if meta.get("stopped"):
            span.set_attribute("jobsaga.job.stopped", str(meta["stopped"]))
        error = meta.get("error")
        if event == "job.exception":
            if isinstance(error, BaseException):
                span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end()

    def _run(self, event: str, meta: Mapping[str, Any]) -> None:
        run_id = meta.get("run_id")
        if event == "workflow.start":
            parent = self._job_span(meta)
            context = trace.set_span_in_context(parent) if parent is not None else None
            self._runs[run_id] = self.tracer.start_span(
                f"workflow {meta.get('workflow')}",
                context=context,
                attributes={
                    "jobsaga.workflow": str(meta.get("workflow")),
                    "jobsaga.workflow.run_id": str(run_id),
                    "jobsaga.workflow.resumed": bool(meta.get("resumed", False)),
                },
            )
            self._bound(self._runs)
            return
        span = self._runs.pop(run_id, None) if event in _RUN_ENDS else self._runs.get(run_id)
        if span is None:
            return
        if "status" in meta:
            span.set_attribute("jobsaga.workflow.status", str(meta["status"]))
        if event == "workflow.exception":
            error = meta.get("error")
            inner = getattr(error, "error", error)
            if isinstance(inner, BaseException):
                span.record_exception(inner)
            span.set_status(Status(StatusCode.ERROR, _describe(inner)))
        if event in _RUN_ENDS:
            span.end()

    def _step(self, event: str, measures: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        run_id, step = meta.get("run_id"), str(meta.get("step"))
        key = (run_id, step)
        if event == "workflow.step.start":
            parent = self._runs.get(run_id)
            context = trace.set_span_in_context(parent) if parent is not None else None
            self._steps[key] = self.tracer.start_span(
                f"step {step}",
                context=context,
                attributes={
                    "jobsaga.workflow": str(meta.get("workflow")),
                    "jobsaga.workflow.run_id": str(run_id),
                    "jobsaga.step": step,
                    "jobsaga.step.try": int(meta.get("tries", 1)),
                },
            )
            self._bound(self._steps)
            return
        if event in ("workflow.step.compensate", "workflow.step.undo"):
            run = self._runs.get(run_id)
            if run is not None:
                attributes = {"jobsaga.step": step, "outcome": str(meta.get("outcome", ""))}
                if meta.get("error") is not None:
                    attributes["error"] = _describe(meta["error"])
                run.add_event(event, attributes)
            return
        span = self._steps.pop(key, None)
        if span is None:  # e.g. a skipped step: it never started
            return
        if "status" in meta:
            span.set_attribute("jobsaga.step.status", str(meta["status"]))
        error = meta.get("error")
        if event in ("workflow.step.exception", "workflow.step.retry"):
            if isinstance(error, BaseException):
                span.record_exception(error)
            if event == "workflow.step.retry":
                span.set_attribute("jobsaga.step.retry_in", float(measures.get("delay", 0.0)))
            span.set_status(Status(StatusCode.ERROR, _describe(error)))
        span.end()

    # --- helpers ----------------------------------------------------------------------------

    def _job_span(self, meta: Mapping[str, Any]) -> Span | None:
        job_id, attempt = meta.get("job_id"), meta.get("attempt")
        if job_id is None or attempt is None:
            return None
        return self._jobs.get((int(job_id), int(attempt)))

    @staticmethod
    def _bound(spans: dict[Any, Span]) -> None:
        while len(spans) > MAX_OPEN:
            oldest = next(iter(spans))
            spans.pop(oldest).end()

    def detach(self) -> None:
        """Stop listening and end the spans still open (as unfinished)."""
        self.app.telemetry.detach(HANDLER_ID)
        with self._lock:
            for spans in (self._steps, self._runs, self._jobs):
                for span in spans.values():
                    span.set_status(Status(StatusCode.ERROR, "unfinished when detached"))
                    span.end()
                spans.clear()


_RUN_ENDS = ("workflow.stop", "workflow.exception")


def _describe(error: Any) -> str:
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error) if error is not None else "error"


def attach_otel(
    app: AppCore,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    workflow_spans: bool = True,
) -> OtelBridge:
    """Emit OpenTelemetry spans for ``app``'s jobs, workflow runs and steps.

    ``workflow_spans=False`` leaves sagas to ``OpenTelemetryMiddleware`` (which makes a
    step's span current while its code runs): pass it the bridge as ``job_spans=`` so runs
    nest under their job's span, and the two do not both draw each run."""
    bridge = OtelBridge(app, tracer_provider)
    app.telemetry.attach(HANDLER_ID, EVENTS if workflow_spans else JOB_EVENTS, bridge)
    return bridge
