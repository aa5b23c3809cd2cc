"""Assertions over the jobs an app has enqueued; a failure lists what is enqueued.

They select with the operations' :class:`~jobsaga.operations.JobFilter` (``app.list_jobs``),
so a criterion means in a test what it means to ``jobsaga jobs list`` and the bulk operations.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from ..app import App
from ..backoff import delay_seconds
from ..job import Job, JobState
from ..operations import JobFilter

ENQUEUED = (JobState.AVAILABLE, JobState.SCHEDULED, JobState.RETRYABLE)
"""The states of a job waiting to run. Oban's assertions match available and scheduled jobs;
a job waiting for its retry is waiting to run too, so a test can find the attempt a drain left
failed."""
CRITERIA = ("worker", "queue", "args", "meta", "priority", "tags")
"""Criteria handed to the job filter as they are."""
WINDOW = ("scheduled_at", "schedule_in", "delta")
"""Criteria that make the filter's ``scheduled_at`` window."""
FINEST = timedelta(microseconds=1)
"""The finest time either engine keeps: the filter's ``until`` is exclusive, the window's
end is not."""


def enqueued_filter(app: App, criteria: dict[str, Any]) -> JobFilter:
    """The job filter selecting the enqueued jobs that match ``criteria``."""
    unknown = set(criteria) - set(CRITERIA) - set(WINDOW)
    if unknown:
        raise TypeError(f"unknown enqueued-job criteria: {', '.join(sorted(unknown))}")
    given = {name: criteria[name] for name in CRITERIA if criteria.get(name) is not None}
    when: datetime | None = criteria.get("scheduled_at")
    if "schedule_in" in criteria:
        when = app.now() + timedelta(seconds=delay_seconds(criteria["schedule_in"], "schedule_in"))
    if when is not None:
        delta = timedelta(seconds=float(criteria.get("delta", 1.0)))
        given.update(since=when - delta, until=when + delta + FINEST, time_field="scheduled_at")
    return JobFilter(state=ENQUEUED, **given)


def all_enqueued(app: App, **criteria: Any) -> list[Job[Any]]:
    """Jobs waiting to run (available, scheduled, retryable) that match every criterion given,
    newest first (the most recently inserted, highest id, first), as Oban's ``all_enqueued``.

    Criteria: ``worker`` (class or name), ``queue``, ``args`` and ``meta`` (subset match),
    ``priority``, ``tags`` (all present), ``scheduled_at`` or ``schedule_in`` (seconds or a
    timedelta from now) within ``delta`` seconds (default 1). ``worker``, ``queue`` and ``priority`` also take
    several values (any of them).
    """
    return app.list_jobs(enqueued_filter(app, criteria), limit=None, newest_first=True)


def _describe(app: App, criteria: dict[str, Any]) -> str:
    jobs = app.list_jobs(state=ENQUEUED, limit=None, newest_first=True)
    shown = {k: (getattr(v, "name", v) if isinstance(v, type) else v) for k, v in criteria.items()}
    lines = [f"criteria: {shown}", f"enqueued jobs ({len(jobs)}):"]
    lines += [
        f"  #{j.id} {j.worker} queue={j.queue} state={j.state.value} args={j.raw_args} "
        f"priority={j.priority} tags={list(j.tags)} meta={j.meta} "
        f"scheduled_at={j.scheduled_at.isoformat()}"
        for j in jobs
    ] or ["  (none)"]
    return "\n".join(lines)


def assert_enqueued(app: App, *, timeout: float = 0.0, **criteria: Any) -> Job[Any]:
    """Fail unless a matching job is enqueued (waiting up to ``timeout`` seconds); returns it
    (of several, the newest: the first that ``all_enqueued`` lists)."""
    deadline = time.monotonic() + timeout
    while True:  # the filter is made again each time: ``schedule_in`` counts from now
        found = app.list_jobs(enqueued_filter(app, criteria), limit=1, newest_first=True)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            raise AssertionError(
                "expected a matching enqueued job, found none\n" + _describe(app, criteria)
            )
        time.sleep(0.02)


def refute_enqueued(app: App, *, timeout: float = 0.0, **criteria: Any) -> None:
    """Fail if a matching job is enqueued now or appears within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = all_enqueued(app, **criteria)
        if found:
            raise AssertionError(
                f"expected no matching enqueued job, found {len(found)}\n"
                + _describe(app, criteria)
            )
        if time.monotonic() >= deadline:
            return
        time.sleep(0.02)
