"""Assertions over the jobs an app has enqueued; a failure lists what is enqueued."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

from ..app import App
from ..job import Job
from ..worker import Worker

ENQUEUED = ("available", "scheduled", "retryable")


def _subset(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            k in actual and _subset(v, actual[k]) for k, v in expected.items()
        )
    return bool(expected == actual)


def _jobs(app: App) -> list[Job[Any]]:
    sql = "SELECT * FROM jobsaga_jobs WHERE state IN ('available', 'scheduled', 'retryable') ORDER BY id"
    with app.engine.read() as tx:
        return [app.engine.row_to_job(r) for r in tx.execute(sql)]


def _matches(job: Job[Any], app: App, crit: dict[str, Any]) -> bool:
    worker = crit.get("worker")
    if worker is not None:
        name = worker.name if isinstance(worker, type) and issubclass(worker, Worker) else worker
        if job.worker != name:
            return False
    if "queue" in crit and job.queue != crit["queue"]:
        return False
    if "priority" in crit and job.priority != crit["priority"]:
        return False
    if "args" in crit and not _subset(crit["args"], job.raw_args):
        return False
    if "meta" in crit and not _subset(crit["meta"], job.meta):
        return False
    if "tags" in crit and not set(crit["tags"]) <= set(job.tags):
        return False
    when: datetime | None = crit.get("scheduled_at")
    if "schedule_in" in crit:
        when = app.now() + timedelta(seconds=float(crit["schedule_in"]))
    delta = float(crit.get("delta", 1.0))
    return not (when is not None and abs((job.scheduled_at - when).total_seconds()) > delta)


def all_enqueued(app: App, **criteria: Any) -> list[Job[Any]]:
    """Jobs waiting to run (available, scheduled, retryable) that match every criterion given.

    Criteria: ``worker`` (class or name), ``queue``, ``args`` and ``meta`` (subset match),
    ``priority``, ``tags`` (all present), ``scheduled_at`` or ``schedule_in`` (seconds from now)
    within ``delta`` seconds (default 1).
    """
    unknown = set(criteria) - {
        "worker",
        "queue",
        "args",
        "meta",
        "priority",
        "tags",
        "scheduled_at",
        "schedule_in",
        "delta",
    }
    if unknown:
        raise TypeError(f"unknown enqueued-job criteria: {', '.join(sorted(unknown))}")
    return [j for j in _jobs(app) if _matches(j, app, criteria)]


def _describe(app: App, criteria: dict[str, Any]) -> str:
    jobs = _jobs(app)
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
    """Fail unless a matching job is enqueued (waiting up to ``timeout`` seconds); returns it."""
    deadline = time.monotonic() + timeout
    while True:
        found = all_enqueued(app, **criteria)
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
