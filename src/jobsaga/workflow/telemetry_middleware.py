"""jobsaga's workflow telemetry events (docs/telemetry.md), emitted by a middleware.

Every run gets this middleware when its app's telemetry has a handler attached as the run
starts (as a job's span is only made while someone listens): ``workflow.start`` /
``.stop`` / ``.exception`` for the run, ``workflow.step.start`` / ``.stop`` / ``.retry`` /
``.exception`` for each try of a step, ``workflow.step.compensate`` and
``workflow.step.undo``. It is also a short example of a middleware that keeps something per
run (here a :class:`~jobsaga.telemetry.Span` per run and per step try), keyed by the run.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..telemetry import NO_SPAN, Span, Telemetry
from .middleware import Middleware, RunInfo, StepCode, StepEvent

if TYPE_CHECKING:
    from ..errors import WorkflowError
    from .records import RunStatus

__all__ = ["TelemetryMiddleware"]


@dataclass(slots=True)
class _RunSpans:
    span: Span
    metadata: dict[str, Any]
    """Every event's: ``workflow``, ``run_id``, ``job_id``, ``attempt``."""
    steps: dict[str, Span] = field(default_factory=dict)
    """The span of each step's try under way."""


class TelemetryMiddleware(Middleware):
    """Emits a run's ``workflow.*`` events into ``telemetry``."""

    wraps = frozenset({"guard"})

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self._runs: dict[RunInfo, _RunSpans] = {}

    # --- the run ------------------------------------------------------------------------

    def run_started(self, run: RunInfo) -> None:
        metadata = self._metadata(run)
        span = self.telemetry.span("workflow", {**metadata, "resumed": run.resumed})
        self._runs[run] = _RunSpans(span, metadata)

    @staticmethod
    def _metadata(run: RunInfo) -> dict[str, Any]:
        return {
            "workflow": run.workflow,
            "run_id": run.run_id,
            "job_id": run.job_id,
            "attempt": run.attempt,
        }

    def run_completed(self, run: RunInfo, value: Any) -> None:
        self._runs.pop(run).span.stop(status="succeeded")

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        # The kind of the step's error: the WorkflowError only carries it.
        self._runs.pop(run).span.fail(error, kind=type(error.error).__name__, status=status.value)

    def run_halted(self, run: RunInfo, value: Any) -> None:
        self._runs.pop(run).span.end("halt", status="halted")

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        self._runs.pop(run, None)  # no end event: the next attempt carries the run on

    # --- its steps ------------------------------------------------------------------------

    def around_step(
        self, run: RunInfo, step: str, code: StepCode
    ) -> contextlib.AbstractContextManager[Any]:
        if code == "guard":  # a step its guard skips reports the guard's duration, no start
            spans = self._runs[run]
            spans.steps[step] = self._step_span(spans, step, None)
        return contextlib.nullcontext()

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        spans = self._runs.get(run)
        if spans is None:  # a child run its parent's rollback undoes after it ended
            spans = _RunSpans(NO_SPAN, self._metadata(run))
        kind, step = event.kind, event.step
        if kind == "started":
            spans.steps[step] = self._step_span(spans, step, event.tries)
        elif kind in ("succeeded", "compensated"):
            self._settled(spans, step).stop(status=kind, tries=event.tries)
        elif kind == "skipped":
            self._settled(spans, step).stop(status=kind)
        elif kind == "retried":
            delay = {"delay": event.delay or 0.0}
            self._settled(spans, step).end("retry", delay, error=event.error)
        elif kind == "failed":  # outside a try too (its guard raised, a retry was cancelled)
            assert event.error is not None
            span = self._settled(spans, step)
            if event.tries is None:  # a part failed by a step of it
                span.fail(event.error)
            else:
                span.fail(event.error, tries=event.tries)
        elif kind == "halted":  # a step that returned Halt has ended its try: succeeded
            spans.steps.pop(step, NO_SPAN).end("halt")  # a compose whose child run halted
        elif kind == "compensate":
            compensation = {"outcome": event.outcome, "error": event.error}
            self._emit(spans, "workflow.step.compensate", {}, step, **compensation)
        elif kind == "undone":
            self._emit(spans, "workflow.step.undo", {}, step, outcome="undone", tries=event.tries)
        elif kind == "undo_retried":
            delay = {"delay": event.delay or 0.0}
            self._emit(spans, "workflow.step.undo", delay, step, outcome="retry", tries=event.tries)
        elif kind == "undo_failed":
            failure = {"outcome": "failed", "error": event.error, "tries": event.tries}
            self._emit(spans, "workflow.step.undo", {}, step, **failure)
        elif kind == "interrupted":  # a cancel cut it short: no end event; a timeout: halt
            span = spans.steps.pop(step, NO_SPAN)
            if event.outcome == "halt":
                span.end("halt", error=event.error)

    def _step_span(self, spans: _RunSpans, step: str, tries: int | None) -> Span:
        """A try's span (``workflow.step.start`` now); without ``tries``, the span of a step
        settled outside a try, which has no start event."""
        if tries is None:
            return self.telemetry.span(
                "workflow.step", {**spans.metadata, "step": step}, start=False
            )
        metadata = {**spans.metadata, "step": step, "tries": tries}
        return self.telemetry.span("workflow.step", metadata)

    def _settled(self, spans: _RunSpans, step: str) -> Span:
        """The span a step's settling ends: its try's, or else one without a start."""
        span = spans.steps.pop(step, None)
        return span if span is not None else self._step_span(spans, step, None)

    def _emit(
        self, spans: _RunSpans, event: str, measurements: dict[str, Any], step: str, **more: Any
    ) -> None:
        self.telemetry.emit(event, measurements, {**spans.metadata, "step": step, **more})
