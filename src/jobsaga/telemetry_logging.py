"""The default structured-logging handler: one JSON log line per telemetry event; and the
compact line per finished job that ``jobsaga worker`` shows.

Levels follow what an operator wants to see at the usual WARNING/INFO thresholds: failures
are WARNING (ERROR when a job is discarded or a plugin run fails), operator actions and queue
changes are INFO, and per-job successes are DEBUG, so a busy node does no per-job logging work
unless asked (the level check comes before any formatting). ``jobsaga worker`` attaches both:
each finished job is one human line on ``jobsaga.jobs`` (INFO, so shown from ``-v``; failures
WARNING), and the JSON lines of job events are then DEBUG (``-vv``), so nothing is said twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

from .telemetry import Handler

if TYPE_CHECKING:
    from .core import AppCore

DEFAULT_HANDLER_ID = "jobsaga-default-logger"
JOB_LINES_HANDLER_ID = "jobsaga-job-lines"

__all__ = [
    "JOB_EVENT_LEVELS",
    "LEVELS",
    "attach_default_logger",
    "attach_job_lines",
    "job_line",
    "job_lines_handler",
    "structured_logging_handler",
]

LEVELS: dict[str, int] = {
    "job.start": logging.DEBUG,
    "job.stop": logging.DEBUG,
    "job.exception": logging.WARNING,
    "job.cancel": logging.INFO,
    "job.retry": logging.INFO,
    "job.delete": logging.INFO,
    "queue.pause": logging.INFO,
    "queue.resume": logging.INFO,
    "queue.scale": logging.INFO,
    "leader.elected": logging.INFO,
    "leader.resigned": logging.INFO,
    "workflow.exception": logging.WARNING,
    "workflow.step.exception": logging.INFO,
    "workflow.step.undo": logging.INFO,
    "workflow.step.compensate": logging.INFO,
}
"""Level per event; events not listed log at DEBUG, ``plugin.<name>.exception`` at ERROR."""


def level_of(event: str, metadata: Mapping[str, Any], levels: Mapping[str, int]) -> int:
    if event == "job.exception" and metadata.get("state") == "discarded":
        return logging.ERROR
    if event.startswith("plugin.") and event.endswith(".exception"):
        return levels.get(event, logging.ERROR)
    return levels.get(event, logging.DEBUG)


def plain(value: Any) -> Any:
    """A JSON-ready form of a telemetry value (jobs by their identity, errors as text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, BaseException):
        return f"{type(value).__name__}: {value}"
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)) and len(value) <= 50:
        return [plain(v) for v in value]
    if isinstance(value, Mapping) and len(value) <= 50:
        return {str(k): plain(v) for k, v in value.items()}
    return repr(value)[:200]


def event_fields(
    event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
) -> dict[str, Any]:
    fields: dict[str, Any] = {"event": event}
    for key, value in metadata.items():
        if key == "job":
            fields["job_id"] = getattr(value, "id", None)
        elif key == "result":
            continue  # may be large, and is the job's business
        else:
            fields[key] = plain(value)
    for key, value in measurements.items():
        if isinstance(value, float):
            fields[key] = round(value, 6)
        elif isinstance(value, int):
            fields[key] = value
    return fields


def structured_logging_handler(
    logger: logging.Logger | None = None, levels: Mapping[str, int] | None = None
) -> Handler:
    """A handler writing each event as one JSON line, with the fields also in ``extra``
    (``record.jobsaga``) for log processors that read attributes rather than messages."""
    target = logger or logging.getLogger("jobsaga.events")
    given = dict(levels or {})
    chosen = {**LEVELS, **given}

    def handle(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        # A level the caller gave wins over the defaults' rules (a discarded job's ERROR).
        level = given[event] if event in given else level_of(event, metadata, chosen)
        if not target.isEnabledFor(level):
            return
        fields = event_fields(event, measurements, metadata)
        target.log(
            level,
            "%s",
            json.dumps(fields, default=repr),
            extra={"jobsaga_event": event, "jobsaga": fields},
        )

    return handle


def attach_default_logger(
    app: AppCore,
    *,
    logger: logging.Logger | None = None,
    levels: Mapping[str, int] | None = None,
    handler_id: str = DEFAULT_HANDLER_ID,
) -> str:
    """Log every event of ``app`` through :func:`structured_logging_handler`; returns the
    handler id (``app.telemetry.detach(id)`` stops it)."""
    app.telemetry.attach(handler_id, "*", structured_logging_handler(logger, levels))
    return handler_id


JOB_EVENT_LEVELS: dict[str, int] = {"job.stop": logging.DEBUG, "job.exception": logging.DEBUG}
"""The JSON handler's levels for job events where :func:`attach_job_lines` says them."""


def seconds_text(seconds: float) -> str:
    """A duration as an operator reads it: ``850 us``, ``12 ms``, ``1.4 s``, ``3 min 5 s``."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


STATE_WORDS = {"scheduled": "snoozed", "retryable": "failed (will retry)"}
"""A finished attempt's state as :func:`job_line` says it (a snooze is written scheduled)."""


def job_line(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """One finished attempt in one line: worker, id, state, duration, attempt (and the error)::

    sample.completes job 42 completed in 12 ms (attempt 1, queue default)
    sample.fails job 43 retryable in 3 ms (attempt 1, queue default): ValueError: bad
    """
    job = metadata.get("job")
    job_id = getattr(job, "id", "?")
    state = metadata.get("state") or ("failed" if event == "job.exception" else "finished")
    state = STATE_WORDS.get(state, state)
    if metadata.get("stopped"):
        state = "cancelled by an operator"
    elif metadata.get("interrupted"):
        state = "interrupted"
    duration = measurements.get("duration")
    after = "after" if metadata.get("interrupted") else "in"
    took = f" {after} {seconds_text(float(duration))}" if isinstance(duration, (int, float)) else ""
    line = (
        f"{metadata.get('worker')} job {job_id} {state}{took} "
        f"(attempt {metadata.get('attempt')}, queue {metadata.get('queue')})"
    )
    if event == "job.exception":
        error = metadata.get("error")
        text = plain(error) if error is not None else metadata.get("kind", "error")
        line += f": {' '.join(str(text).split())[:500]}"
    return line


def job_lines_handler(logger: logging.Logger | None = None) -> Handler:
    """Each finished attempt as :func:`job_line` on ``jobsaga.jobs``: INFO when it stopped
    (completed, snoozed, discarded or cancelled by its result), WARNING when it failed (ERROR
    when that discarded the job); formatted only when the level is enabled."""
    target = logger or logging.getLogger("jobsaga.jobs")

    def handle(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        if event == "job.stop":
            level = logging.INFO
        elif event == "job.exception":
            level = level_of(event, metadata, LEVELS)
        else:
            return
        if target.isEnabledFor(level):
            target.log(level, "%s", job_line(event, measurements, metadata))

    return handle


def attach_job_lines(app: AppCore, *, logger: logging.Logger | None = None) -> str:
    """Log each finished job of ``app`` as one line (:func:`job_lines_handler`); returns the
    handler id."""
    app.telemetry.attach(
        JOB_LINES_HANDLER_ID, ["job.stop", "job.exception"], job_lines_handler(logger)
    )
    return JOB_LINES_HANDLER_ID
