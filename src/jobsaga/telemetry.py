"""Named events with handlers attached by id, in the manner of Erlang's ``:telemetry``.

Events are dotted names (``job.start``, ``job.stop``, ``job.exception``, ``workflow.step.stop``...);
a handler gets ``(event, measurements, metadata)``. Logging is just one handler of them, so a
node does no per-job logging work unless someone attached a handler that wants it.

Whatever is timed (a job attempt, a workflow run, a step's try, a plugin run) reports through
one :class:`Span`, so its events share one shape: ``<prefix>.start`` with ``system_time``,
then one end event whose measurements have the ``duration`` since the start (monotonic) and
whose metadata is the start's plus what the caller learned meanwhile;
``<prefix>.exception`` adds ``error`` and ``kind``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from .errors import ConfigError

log = logging.getLogger("jobsaga.telemetry")

__all__ = ["Handler", "Span", "Telemetry", "logging_handler"]

Handler = Callable[[str, Mapping[str, Any], Mapping[str, Any]], None]
Measurements = Mapping[str, float]


class Telemetry:
    def __init__(self) -> None:
        self._handlers: dict[str, tuple[tuple[str, ...], Handler]] = {}
        self._lock = threading.Lock()
        self._snapshot: tuple[tuple[tuple[str, ...], Handler], ...] = ()

    def attach(self, handler_id: str, events: str | Iterable[str], handler: Handler) -> None:
        """Call ``handler`` for the given events; a name ending in ``*`` matches a prefix."""
        names = (events,) if isinstance(events, str) else tuple(events)
        with self._lock:
            if handler_id in self._handlers:
                raise ConfigError(f"a telemetry handler is already attached as {handler_id!r}")
            self._handlers[handler_id] = (names, handler)
            self._snapshot = tuple(self._handlers.values())

    def detach(self, handler_id: str) -> bool:
        with self._lock:
            found = self._handlers.pop(handler_id, None) is not None
            self._snapshot = tuple(self._handlers.values())
        return found

    @property
    def active(self) -> bool:
        return bool(self._snapshot)

    def emit(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        for names, handler in self._snapshot:
            if not any(_matches(pattern, event) for pattern in names):
                continue
            try:
                handler(event, measurements, metadata)
            except Exception:  # a broken handler must never fail a job
                log.exception("telemetry handler failed on %s", event)

    def span(
        self,
        prefix: str,
        metadata: Mapping[str, Any],
        measurements: Measurements | None = None,
        *,
        start: bool = True,
    ) -> Span:
        """Begin timing ``prefix``: emits ``prefix.start`` (unless ``start`` is false: plugin
        runs only report their end) and returns the span that emits its end.

        ``measurements`` (a job's ``queue_wait``) go into every event of the span. With no
        handler attached this returns :data:`NO_SPAN` and reads no clock: the node opens a
        span per job, thousands a second."""
        if not self._snapshot:
            return NO_SPAN
        return Span(self, prefix, metadata, measurements or {}, start)


class Span:
    """One timed operation: ends once, with ``.stop``, ``.exception`` or an outcome the caller
    names (a step's try that will be retried ends with ``.retry``).

    Used as a context manager it stops when its body returns and fails when the body raises
    an ``Exception`` (re-raised unchanged), unless the body ended it first. A cancellation
    emits nothing on its own: only the caller knows whether a cancel was an operator's stop or
    a shutdown cutting the work short, and says so by ending the span itself."""

    __slots__ = ("_telemetry", "_prefix", "_started", "_measurements", "metadata", "ended")

    def __init__(
        self,
        telemetry: Telemetry,
        prefix: str,
        metadata: Mapping[str, Any],
        measurements: Measurements,
        start: bool,
    ) -> None:
        self._telemetry = telemetry
        self._prefix = prefix
        self._measurements = measurements
        self.metadata: dict[str, Any] = dict(metadata)
        """Every event's metadata; :meth:`add` extends it for the end event."""
        self.ended = False
        if start:
            telemetry.emit(
                f"{prefix}.start", {"system_time": time.time(), **measurements}, metadata
            )
        self._started = time.monotonic()

    def add(self, **metadata: Any) -> None:
        """Metadata learned during the span (a job's outcome state), for its end event."""
        self.metadata.update(metadata)

    def stop(self, measurements: Measurements | None = None, **metadata: Any) -> None:
        """End with ``prefix.stop``; ``measurements`` are the outcome's (a plugin's counts)."""
        self.end("stop", measurements, **metadata)

    def fail(
        self, error: BaseException, measurements: Measurements | None = None, **metadata: Any
    ) -> None:
        """End with ``prefix.exception``: ``error`` and ``kind`` (its class name, unless the
        caller names a more telling one, as a workflow run does for its step's error)."""
        failed = {"error": error, "kind": type(error).__name__, **metadata}
        self.end("exception", measurements, **failed)

    def end(self, outcome: str, measurements: Measurements | None = None, **metadata: Any) -> None:
        """Emit ``prefix.<outcome>`` with the duration; a span already ended emits nothing."""
        if self.ended:
            return
        self.ended = True
        duration = time.monotonic() - self._started
        measured = {"duration": duration, **self._measurements, **(measurements or {})}
        self._telemetry.emit(f"{self._prefix}.{outcome}", measured, {**self.metadata, **metadata})

    def __enter__(self) -> Span:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if error is None:
            self.stop()
        elif isinstance(error, Exception):
            self.fail(error)


class _NoSpan(Span):
    """What :meth:`Telemetry.span` returns while nobody listens: every method does nothing."""

    __slots__ = ()

    def __init__(self) -> None:
        self.metadata = {}
        self.ended = True

    def add(self, **metadata: Any) -> None:
        pass

    def stop(self, measurements: Measurements | None = None, **metadata: Any) -> None:
        pass

    def fail(
        self, error: BaseException, measurements: Measurements | None = None, **metadata: Any
    ) -> None:
        pass

    def end(self, outcome: str, measurements: Measurements | None = None, **metadata: Any) -> None:
        pass

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pass


NO_SPAN: Span = _NoSpan()
"""The span of work nobody listens to (also for callers that must not emit, e.g. a plugin
whose runs are not reported)."""


def _matches(pattern: str, event: str) -> bool:
    if pattern.endswith("*"):
        return event.startswith(pattern[:-1])
    return pattern == event


def logging_handler(logger: logging.Logger | None = None, level: int = logging.INFO) -> Handler:
    """A structured-logging handler: one record per event, fields in ``extra``."""
    target = logger or logging.getLogger("jobsaga.events")

    def handle(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        fields = {k: v for k, v in metadata.items() if isinstance(v, (str, int, float, bool))}
        fields.update({k: v for k, v in measurements.items() if isinstance(v, (int, float))})
        if "error" in metadata:
            fields["error"] = repr(metadata["error"])
        target.log(
            level, "%s %s", event, fields, extra={"jobsaga_event": event, **{"jobsaga": fields}}
        )

    return handle
