"""Middleware: your code, called as a saga runs, for tracing, metrics or context.

::

    class FailureCounter(Middleware):
        def step_event(self, run: RunInfo, event: StepEvent) -> None:
            if event.kind == "failed":
                step_failures.labels(run.workflow, event.step).inc()

    class Checkout(Workflow, middleware=[FailureCounter()]): ...      # this workflow
    app = App(..., workflow_middleware=[OpenTelemetryMiddleware()])  # every workflow of the app

A run calls, in this order: :meth:`Middleware.run_started` once its run log is open;
:meth:`Middleware.step_event` after each step transition the log records;
:meth:`Middleware.around_step` around each call of a step's code (its guard, a try, its
compensation, its undo); then exactly one of :meth:`Middleware.run_completed`,
:meth:`Middleware.run_failed` (the saga failed, rolled back or not),
:meth:`Middleware.run_halted` (a step returned ``Halt``: the run waits for ``resume_run``) or
:meth:`Middleware.run_interrupted` (the attempt ended without an outcome: a timeout, a
shutdown, a run log that cannot be written; the job's next attempt resumes the run). An
attempt that finds its run already succeeded runs nothing and calls nothing. One exception:
a child run (``compose``, ``recurse``) that ended is undone later by its parent's rollback,
and reports those undo events after its end, under the same :class:`RunInfo`.

Hooks are plain functions called on the run's event loop, between two transitions of the
saga, so they must be quick (hand slow work such as network I/O to a queue or a thread): an
``async`` hook would put its latency between every two steps. A hook that raises never
breaks the saga: the error is logged (at ERROR, with the middleware's name, the first time
each hook of that middleware fails; at DEBUG afterwards) and the run goes on. jobsaga's own
telemetry events (:mod:`.telemetry_middleware`) and OpenTelemetry spans
(:mod:`.otel_middleware`) are middleware written this way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, get_args

if TYPE_CHECKING:
    from ..errors import WorkflowError
    from ..job import Job
    from .records import RunStatus

logger = logging.getLogger("jobsaga.workflow.middleware")

__all__ = [
    "Middleware",
    "MiddlewareChain",
    "RunInfo",
    "StepCode",
    "StepEvent",
    "StepEventKind",
]

StepCode = Literal["guard", "step", "compensate", "undo", "part"]
"""Which code of a step :meth:`Middleware.around_step` wraps: its ``where=`` guard, a try
of the step itself, its compensation (still part of the try), its undo, or a part's own
function (a switch case's ``when``, a group's ``before``, ``after`` or ``around``)."""

StepEventKind = Literal[
    "started",
    "expanded",
    "succeeded",
    "compensated",
    "skipped",
    "retried",
    "failed",
    "halted",
    "compensate",
    "undone",
    "undo_retried",
    "undo_failed",
    "interrupted",
]
"""The step transitions a run log records (``step.<kind>`` in ``jobsaga runs show``)."""


@dataclass(frozen=True, slots=True, eq=False)
class RunInfo:
    """The run a hook is called for, read-only. One object per attempt of a run, hashed by
    identity, so a middleware can key what it keeps per run (a span) by it."""

    workflow: str
    """The workflow's stable name."""
    run_id: int | None
    """The run's id in the run log; None for a run kept in memory (a test's)."""
    job_id: int | None
    attempt: int
    """The job's attempt running the saga (the first one is 1)."""
    resumed: bool
    """This attempt carries on a run an earlier attempt started."""
    job: Job[Any] | None = None
    """The job running the saga (its ``meta`` can carry a trace context); None in a test run
    and in an operator's rollback."""
    context: Any = None
    """The caller's context the workflow was given (e.g. the actor)."""
    inputs: Mapping[str, Any] | None = None
    parent: RunInfo | None = None
    """For a child run (``compose``, ``recurse``): the run whose step started it."""
    parent_step: str | None = None
    """For a child run: the name of that step."""


class StepEvent(NamedTuple):
    """One step transition, after the run log recorded it (in the order of the log, which may
    not have written it yet). ``tries`` counts the step's tries (for ``undone``,
    ``undo_retried`` and ``undo_failed``, its undo's); ``error`` is the exception (not its
    recorded text): a try's error for ``retried`` (None when the step returned ``Retry``),
    the step's for ``failed``, the error handed to the compensation for ``compensate``, the
    undo's for ``undo_failed``; ``delay`` is the wait before the next try (``retried``,
    ``undo_retried``); ``reason`` a ``Retry``'s or a ``Halt``'s (``halted``);
    ``outcome`` ``halt`` for a try a ``timeout`` interrupted to halt the run; ``outcome`` a compensation's (``retry``,
    ``continue``, ``fail``, ``raised``, ``retry_refused``). A named tuple: a run makes a
    few per step, and it is the cheapest immutable record Python builds."""

    kind: StepEventKind
    step: str
    tries: int | None = None
    error: BaseException | None = None
    delay: float | None = None
    reason: str | None = None
    outcome: str | None = None


class Middleware:
    """Base class of workflow middleware: every hook does nothing; override those you need.
    See the module docstring for when each is called; hooks must be quick and never block."""

    wraps: ClassVar[frozenset[str]] = frozenset(get_args(StepCode))
    """The codes :meth:`around_step` is asked for (all, by default): a middleware that
    wraps only some (a step's tries) costs nothing around the others."""

    def run_started(self, run: RunInfo) -> None:
        """The run's log is open; nothing of this attempt has run yet."""

    def run_completed(self, run: RunInfo, value: Any) -> None:
        """The run succeeded with ``value`` (its result step's), recorded in its log."""

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        """The run failed and its rollback ended: ``status`` is ``failed`` (nothing to undo),
        ``rolled_back`` or ``rollback_failed``; ``error`` says what failed and was undone."""

    def run_halted(self, run: RunInfo, value: Any) -> None:
        """A step returned ``Halt(value)``: the run is ``halted`` until ``resume_run`` sets
        it going again, in a later attempt (``run_started`` with ``resumed`` then)."""

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        """This attempt ended without an outcome; the job's next attempt resumes the run:
        ``reason`` is the ``CancelledError`` of a timeout or a shutdown, or the
        ``RunLogUnwritable`` of a log that could not be written."""

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        """A step transition (see :class:`StepEvent`)."""

    def around_step(
        self, run: RunInfo, step: str, code: StepCode
    ) -> contextlib.AbstractContextManager[Any]:
        """A context manager entered just before ``code`` of ``step`` runs and exited just
        after, on the event loop, in the context the code runs in: a context variable set
        on entering (an OpenTelemetry span made current) is seen by the code, a plain
        ``def`` step's thread included. It sees the code's exception, but cannot swallow it
        nor change the result."""
        return contextlib.nullcontext()


HOOKS = (
    "run_started",
    "run_completed",
    "run_failed",
    "run_halted",
    "run_interrupted",
    "step_event",
    "around_step",
)


class MiddlewareChain:
    """The middleware of one run, called in order (the first's ``around_step`` outermost),
    each hook guarded so that a failing one is logged and the saga goes on. Only the hooks a
    middleware overrides are called; the executor asks :attr:`step_events` and
    :meth:`wraps` before building what a hook would get, so a chain without middleware (or
    whose middleware ignores steps) costs a run nearly nothing per step."""

    __slots__ = ("middleware", "_hooks", "_step_event_hooks", "_around", "step_events")

    def __init__(self, middleware: Iterable[Middleware] = ()) -> None:
        unique: dict[int, Middleware] = {}
        for mw in middleware:  # the same instance twice (app-wide and the class's) runs once
            unique.setdefault(id(mw), mw)
        self.middleware: tuple[Middleware, ...] = tuple(unique.values())
        self._hooks: dict[str, tuple[tuple[Middleware, Any], ...]] = {
            name: tuple(
                (mw, getattr(mw, name))
                for mw in self.middleware
                if getattr(type(mw), name, None) is not getattr(Middleware, name)
            )
            for name in HOOKS
        }
        self._step_event_hooks = self._hooks["step_event"]
        self.step_events = bool(self._step_event_hooks)
        """Whether any middleware wants step events."""
        self._around: dict[str, tuple[tuple[Middleware, Any], ...]] = {
            code: tuple((mw, fn) for mw, fn in self._hooks["around_step"] if code in mw.wraps)
            for code in get_args(StepCode)
        }

    def __bool__(self) -> bool:
        return bool(self.middleware)

    def __repr__(self) -> str:
        return f"MiddlewareChain({', '.join(name_of(mw) for mw in self.middleware)})"

    def run_started(self, run: RunInfo) -> None:
        self._call("run_started", run)

    def run_completed(self, run: RunInfo, value: Any) -> None:
        self._call("run_completed", run, value)

    def run_failed(self, run: RunInfo, error: WorkflowError, status: RunStatus) -> None:
        self._call("run_failed", run, error, status)

    def run_halted(self, run: RunInfo, value: Any) -> None:
        self._call("run_halted", run, value)

    def run_interrupted(self, run: RunInfo, reason: BaseException) -> None:
        self._call("run_interrupted", run, reason)

    def step_event(self, run: RunInfo, event: StepEvent) -> None:
        for mw, fn in self._step_event_hooks:  # the hook called most: a few times a step
            try:
                fn(run, event)
            except Exception as exc:
                report_failure(mw, "step_event", exc)

    def wraps(self, code: StepCode) -> bool:
        """Whether any middleware wraps ``code`` (:meth:`around_step` is then worth it)."""
        return bool(self._around[code])

    def around_step(self, run: RunInfo, step: str, code: StepCode) -> AroundStep:
        """One context manager entering the ``around_step`` of every middleware that wraps
        ``code``."""
        return AroundStep(self._around[code], run, step, code)

    def _call(self, hook: str, *args: Any) -> None:
        for mw, fn in self._hooks[hook]:
            try:
                fn(*args)
            except Exception as exc:
                report_failure(mw, hook, exc)


class AroundStep:
    """The middleware's ``around_step`` context managers, entered in order and exited in
    reverse. One that fails to enter is left out (the code runs anyway); the code's
    exception goes on whatever their ``__exit__`` returns."""

    __slots__ = ("_hooks", "_run", "_step", "_code", "_entered")

    def __init__(
        self,
        hooks: tuple[tuple[Middleware, Any], ...],
        run: RunInfo,
        step: str,
        code: StepCode,
    ) -> None:
        self._hooks = hooks
        self._run, self._step, self._code = run, step, code
        self._entered: list[tuple[Middleware, contextlib.AbstractContextManager[Any]]] = []

    def __enter__(self) -> None:
        for mw, fn in self._hooks:
            try:
                manager = fn(self._run, self._step, self._code)
                manager.__enter__()
            except Exception as exc:
                report_failure(mw, "around_step", exc)
                continue
            self._entered.append((mw, manager))

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        entered, self._entered = self._entered, []
        for mw, manager in reversed(entered):
            try:
                manager.__exit__(kind, error, traceback)  # a True (swallow) is ignored
            except Exception as exc:
                if exc is not error:  # a manager re-raising the code's error is not at fault
                    report_failure(mw, "around_step", exc)


def name_of(mw: Middleware) -> str:
    kind = type(mw)
    return f"{kind.__module__}.{kind.__qualname__}"


FAILED_HOOKS_ATTRIBUTE = "_jobsaga_failed_hooks"


def report_failure(mw: Middleware, hook: str, exc: Exception) -> None:
    """Log a hook that raised: at ERROR with its traceback the first time this middleware's
    hook fails, at DEBUG afterwards (a hook failing on every step would flood the log)."""
    failed: set[str] | None = getattr(mw, FAILED_HOOKS_ATTRIBUTE, None)
    if failed is None:
        failed = set()
        with contextlib.suppress(AttributeError):  # an instance without __dict__: log each
            setattr(mw, FAILED_HOOKS_ATTRIBUTE, failed)
    if hook in failed:
        logger.debug("workflow middleware %s failed again in %s: %r", name_of(mw), hook, exc)
        return
    failed.add(hook)
    logger.error(
        "workflow middleware %s failed in %s (ignored: the saga goes on; further failures "
        "of this hook are logged at DEBUG)",
        name_of(mw),
        hook,
        exc_info=exc,
    )
