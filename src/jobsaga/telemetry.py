"""Named events with handlers attached by id, in the manner of Erlang's ``:telemetry``.

Events are dotted names (``job.start``, ``job.stop``, ``job.exception``, ``workflow.step.stop``...);
a handler gets ``(event, measurements, metadata)``. Logging is just one handler of them, so a
node does no per-job logging work unless someone attached a handler that wants it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from .errors import ConfigError

log = logging.getLogger("jobsaga.telemetry")

__all__ = ["Handler", "Telemetry", "logging_handler"]

Handler = Callable[[str, Mapping[str, Any], Mapping[str, Any]], None]


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

    @contextmanager
    def span(self, prefix: str, metadata: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Emit ``prefix.start``, then ``prefix.stop`` or ``prefix.exception`` with a duration.
        The yielded dict is the stop metadata; the caller may add to it."""
        start = time.monotonic()
        self.emit(f"{prefix}.start", {"system_time": time.time()}, metadata)
        extra: dict[str, Any] = dict(metadata)
        try:
            yield extra
        except BaseException as exc:
            self.emit(
                f"{prefix}.exception",
                {"duration": time.monotonic() - start},
                {**extra, "error": exc, "kind": type(exc).__name__},
            )
            raise
        self.emit(f"{prefix}.stop", {"duration": time.monotonic() - start}, extra)


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
