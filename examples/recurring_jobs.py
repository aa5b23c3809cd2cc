"""Recurring jobs: the guide's "Scheduling > Recurring Jobs (Cron)".

Run it from the repository root: ``python examples/recurring_jobs.py``

The guide's crontab is a node option here: ``(expression, Worker)`` tuples or ``CronEntry``
(with args, queue, priority, timezone, a stable name). Entries are checked when they are
built; the leader node inserts each tick's job exactly once across the cluster. Five-field
expressions tick at most once a minute, so to show ticks firing within seconds this example
adds a six-field entry (seconds last, as croniter reads it), the form the tests use.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from _support import temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import CronEntry, Job, JobState, Worker
from jobsaga.errors import ConfigError


class DailyCleanup(Worker, queue="maintenance", name="examples.daily_cleanup"):
    def perform(self, job: Job[dict[str, object]]) -> None: ...


class HourlySync(Worker, name="examples.hourly_sync"):
    def perform(self, job: Job[dict[str, object]]) -> None: ...


class WeeklyReport(Worker, queue="maintenance", name="examples.weekly_report"):
    class Args(BaseModel):
        format: str

    def perform(self, job: Job[Args]) -> None: ...


class HealthCheck(Worker, name="examples.health_check"):
    def perform(self, job: Job[dict[str, object]]) -> None: ...


CRONTAB: list[CronEntry | tuple[str, type[Worker]]] = [
    ("0 2 * * *", DailyCleanup),  # every day at 2 AM
    ("0 * * * *", HourlySync),  # every hour
    CronEntry(  # every Monday at 9 AM, Paris time
        "0 9 * * 1",
        WeeklyReport,
        args={"format": "pdf"},
        timezone="Europe/Paris",
        name="weekly-report",
    ),
    ("*/15 * * * *", HealthCheck),  # every 15 minutes
]
EVERY_SECOND = CronEntry("* * * * * *", HealthCheck, name="health-every-second")


def next_runs(entry: CronEntry, after: datetime, count: int = 2) -> list[datetime]:
    runs: list[datetime] = []
    while len(runs) < count and (tick := entry.next_tick(runs[-1] if runs else after)):
        runs.append(tick)
    return runs


def main() -> None:
    now = datetime.now(UTC)
    print(f"now: {now:%a %d %H:%M:%S} UTC; next runs:")
    for item in CRONTAB:
        entry = item if isinstance(item, CronEntry) else CronEntry(item[0], item[1])
        runs = ", ".join(f"{tick:%a %d %H:%M}" for tick in next_runs(entry, now))
        print(f"  {entry.expression:<14} {entry.worker_name:<24} {runs} UTC")

    try:
        CronEntry("0 0 31 2 *", DailyCleanup)  # February 31st
    except ConfigError as exc:
        print(f"refused: {exc}")

    with temporary_app(DailyCleanup, HourlySync, WeeklyReport, HealthCheck) as app:
        node = app.node(
            {"default": 10, "maintenance": 2}, crontab=[*CRONTAB, EVERY_SECOND], poll_interval=0.05
        )
        started = time.monotonic()
        with node.start_in_thread():  # a single node: it wins the election and runs cron
            wait_until(lambda: len(app.list_jobs(worker=HealthCheck, state="completed")) >= 3)
        every = app.list_jobs(newest_first=False, limit=None)
        jobs = [job for job in every if job.meta.get("cron_name") == EVERY_SECOND.name]
        ticks = ", ".join(job.meta["cron_tick"][11:19] for job in jobs)
        took = time.monotonic() - started
        print(f"in {took:.1f}s, {EVERY_SECOND.name} inserted jobs for ticks {ticks}")
        done = [job for job in jobs if job.state is JobState.COMPLETED]
        print(f"completed: {len(done)}; meta of the first: {jobs[0].meta}")
        print(f"jobs of the guide's entries: {len(every) - len(jobs)} (unless one came due)")


if __name__ == "__main__":
    main()
