"""OpenTelemetry spans for saga runs, as a workflow middleware (the ``jobsaga[otel]`` extra).

::

    from jobsaga.workflow.otel_middleware import OpenTelemetryMiddleware
    app = App(..., workflow_middleware=[OpenTelemetryMiddleware()])

A run gets a span, ``workflow <name>``: a child of its composing step's span for a child run
(``compose``, ``recurse``), else of the span current when the run starts, else of its job's
span when a ``job_spans`` source is given (the OpenTelemetry bridge of
:mod:`jobsaga.telemetry_otel` keeps those).
Each try of a step gets a span, ``step <name>``, child of the run's (or of its part's: a
map's, a switch's or a group's, whose span lasts while its steps run), and it is the CURRENT
span while the step's code (and its compensation) runs, a plain ``def`` step's thread
included, so the spans your step code makes (an HTTP client's, a database driver's) are its
children. A try that is retried or fails ends in error with the exception recorded; each
call of an undo gets its own span, ``undo <name>``; compensations, skips and undo outcomes
are span events. This module imports ``opentelemetry``: nothing else in jobsaga imports it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode

from .middleware import Middleware, RunInfo, StepCode, StepEvent

if TYPE_CHECKING:
    from ..errors import WorkflowError
    from .records import RunStatus

__all__ = ["JobSpans", "OpenTelemetryMiddleware"]

try:
    from importlib.metadata import version

    _VERSION: str | None = version("jobsaga")
except Exception:  # pragma: no cover - not installed as a distribution
    _VERSION = None


class JobSpans(Protocol):
    """Where the span of a job's attempt is found (the bridge that made it)."""

    def job_span(self, job_id: int, attempt: int) -> Span | None: ...


@dataclass(slots=True)
class _RunSpans:
    span: Span
    steps: dict[str, Span] = field(default_factory=dict)
    """The span of each step's try under way."""


class OpenTelemetryMiddleware(Middleware):
    """A span per run, per step try and per undo call, made current around the step's code."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        *,
        job_spans: JobSpans | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("jobsaga", _VERSION, tracer_provider=tracer_provider)
        self.job_spans = job_spans
        self._runs: dict[RunInfo, _RunSpans] = {}

    # --- the run ------------------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        parent = self._parent(run)
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            f"workflow {run.workflow}",
            context=context,
            attributes={
                "jobsaga.workflow": run.workflow,
                "jobsaga.workflow.run_id": str(run.run_id),
                "jobsaga.workflow.attempt": run.attempt,
                "jobsaga.workflow.resumed": run.resumed,
            },
        )
        self._runs[run] = _RunSpans(span)

    def run_completed(self, run: RunInfo, value: Any) -> None:
        self._end_run(run, "succeeded")

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        self._end_run(run, status.value, error.error, f"step {error.step!r} failed")

    def run_halted(self, run: RunInfo, value: Any) -> None:
        self._end_run(run, "halted")  # waits for resume_run: a later attempt's span goes on

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        # No outcome: the job's next attempt resumes the run, in a span of its own.
        self._end_run(run, "interrupted", reason, "interrupted")

    def _end_run(
        self, run: RunInfo, status: str, error: BaseException | None = None, note: str = ""
    ) -> None:
        spans = self._runs.pop(run, None)
        if spans is None:
            return
        for step_span in spans.steps.values():  # tries an interruption cut short
            _fail(step_span, None, "unfinished when the run ended")
        spans.span.set_attribute("jobsaga.workflow.status", status)
        if error is not None:
            _fail(spans.span, error, note)
        else:
            spans.span.end()

    def _parent(self, run: RunInfo) -> Span | None:
        """A child run's: its composing step's span. Else None when a span is current (the
        run starts in its context), else the job's span, if known."""
        if run.parent is not None and run.parent in self._runs:
            spans = self._runs[run.parent]
            return spans.steps.get(run.parent_step or "", spans.span)
        if trace.get_current_span().get_span_context().is_valid:
            return None
        if self.job_spans is None or run.job_id is None:
            return None
        return self.job_spans.job_span(run.job_id, run.attempt)

    # --- its steps ------------------------------------------------------------------------

    def around_step(
        self, run: RunInfo, step: str, code: StepCode
    ) -> contextlib.AbstractContextManager[Any]:
        spans = self._runs.get(run)
        if spans is None:
            return contextlib.nullcontext()
        if code == "undo":  # a span of its own, ended with the call (in error if it raised)
            context = trace.set_span_in_context(spans.span)
            return self.tracer.start_as_current_span(f"undo {step}", context=context)
        # The try's span for its code (the step's events end it, not this), else the run's.
        current = spans.steps.get(step, spans.span) if code != "guard" else spans.span
        return trace.use_span(current, record_exception=False, set_status_on_exception=False)

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        spans = self._runs.get(run)
        if spans is None:
            return
        kind, step = event.kind, event.step
        if kind == "started":
            spans.steps[step] = self.tracer.start_span(
                f"step {step}",
                context=trace.set_span_in_context(_enclosing(spans, step)),
                attributes={"jobsaga.step": step, "jobsaga.step.try": event.tries or 1},
            )
            return
        span = spans.steps.pop(step, None) if kind in _TRY_ENDS else None
        if span is None:  # a moment, not the end of a try: an event on the try's or run's span
            attributes = {"jobsaga.step": step}
            if event.outcome is not None:
                attributes["jobsaga.outcome"] = event.outcome
            if event.error is not None:
                attributes["jobsaga.error"] = _describe(event.error)
            spans.steps.get(step, spans.span).add_event(f"step.{kind}", attributes)
            return
        span.set_attribute("jobsaga.step.status", kind)
        if kind in ("succeeded", "compensated", "halted"):
            span.end()
            return
        if kind == "retried":
            span.set_attribute("jobsaga.step.retry_in", float(event.delay or 0.0))
        _fail(span, event.error, event.reason or kind)


_TRY_ENDS = ("succeeded", "compensated", "halted", "retried", "failed", "interrupted")


def _enclosing(spans: _RunSpans, step: str) -> Span:
    """The span a step's try nests in: the part it sits in (``each`` for ``each[3].pack``,
    ``pay`` for ``pay.card.charge``), else the run's."""
    name = step
    while "." in name:
        name = name.rsplit(".", 1)[0]
        part = spans.steps.get(name.rsplit("[", 1)[0] if name.endswith("]") else name)
        if part is not None:
            return part
    return spans.span


def _fail(span: Span, error: BaseException | None, note: str) -> None:
    if error is not None:
        span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, _describe(error) if error is not None else note))
    span.end()


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
