"""Helpers for plugin tests: a clock tests move by hand, and direct row edits."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from jobsaga import App, JobSpec


class FakeClock:
    """A settable clock for App(clock=...): cron ticks and ages without waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def set(self, value: datetime) -> None:
        with self._lock:
            self.now = value

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.now += timedelta(seconds=seconds)
            return self.now


def param(app: App, name: str) -> str:
    return f"%({name})s" if app.engine.dialect == "postgres" else f":{name}"


def update_job(app: App, job_id: int, **columns: Any) -> None:
    """Set columns of a job directly (times as datetimes), e.g. to age a finished job."""
    engine = app.engine
    values = {k: engine.time_param(v) if isinstance(v, datetime) else v for k, v in columns.items()}
    sets = ", ".join(f"{k} = {param(app, k)}" for k in values)
    with engine.transaction() as tx:
        tx.execute(
            f"UPDATE jobsaga_jobs SET {sets} WHERE id = {param(app, 'id')}",
            {**values, "id": job_id},
        )


FINISHED_AT = {
    "completed": "completed_at",
    "cancelled": "cancelled_at",
    "discarded": "discarded_at",
}
"""The column that says when a job reached each final state (the pruner's age)."""


def job_reached(app: App, spec: JobSpec, state: str, at: datetime) -> int:
    """Insert ``spec`` as a job that reached ``state`` at ``at`` (inserted a month before):
    a finished job's finishing time, else its scheduled time."""
    job = app.insert(spec)
    columns: dict[str, Any] = {"state": state, "inserted_at": at - timedelta(days=30)}
    columns[FINISHED_AT.get(state, "scheduled_at")] = at
    update_job(app, job.id, **columns)
    return job.id


def rows(app: App, sql: str, **params: Any) -> list[dict[str, Any]]:
    with app.engine.transaction() as tx:
        return tx.execute(sql, params)
