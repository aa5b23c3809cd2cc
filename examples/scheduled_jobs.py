"""Delayed and scheduled jobs: the guide's "Job Enqueueing > Delayed Execution" and
"Scheduling > Delayed Jobs / Scheduled Jobs".

Run it from the repository root: ``python examples/scheduled_jobs.py``

``schedule_in`` is how long to wait, in seconds (or a ``timedelta``); ``scheduled_at`` an absolute,
timezone-aware time. Either way the job is stored ``scheduled`` and becomes ``available``
when due: the node's stager sleeps exactly until the next job is due, so a job never starts
early and starts promptly. The delays here are a second or two so the example is quick; the
five-minute and 2030 jobs show what waits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from _support import temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Job, JobState, Worker

RAN_AT: dict[int, datetime] = {}


class NotificationWorker(Worker, name="examples.notification"):
    class Args(BaseModel):
        notification_id: str

    def perform(self, job: Job[Args]) -> None:
        RAN_AT[job.id] = datetime.now(UTC)


class ReportWorker(Worker, name="examples.report"):
    class Args(BaseModel):
        report_type: str

    def perform(self, job: Job[Args]) -> None:
        RAN_AT[job.id] = datetime.now(UTC)


def main() -> None:
    with temporary_app(NotificationWorker, ReportWorker) as app:
        start = datetime.now(UTC)
        jobs = [
            # relative (seconds): the guide's schedule_in: 300, and a short one
            app.insert(NotificationWorker.new({"notification_id": "n-1"}, schedule_in=300)),
            app.insert(NotificationWorker.new({"notification_id": "n-2"}, schedule_in=1.0)),
            # absolute time (an aware datetime): a far one, and one 1.5 s from now
            app.insert(
                ReportWorker.new(
                    {"report_type": "yearly"}, scheduled_at=datetime(2030, 1, 1, 9, tzinfo=UTC)
                )
            ),
            app.insert(
                ReportWorker.new(
                    {"report_type": "daily"}, scheduled_at=start + timedelta(seconds=1.5)
                )
            ),
        ]
        for job in jobs:
            due = (job.scheduled_at - start).total_seconds()
            when = f"{due:.1f}s" if due < 86400 else f"{due / 86400:.0f} days"
            print(
                f"job {job.id} {job.worker}: state={job.state.value} "
                f"scheduled_at={job.scheduled_at:%Y-%m-%d %H:%M:%S} UTC (in {when})"
            )

        short = [jobs[1], jobs[3]]
        with app.node({"default": 5}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: all(job.id in RAN_AT for job in short))
        for job in short:
            due = (job.scheduled_at - start).total_seconds()
            ran = (RAN_AT[job.id] - start).total_seconds()
            print(f"job {job.id} was due at +{due:.1f}s and ran at +{ran:.1f}s: not before")
            assert RAN_AT[job.id] >= job.scheduled_at
        for job in (jobs[0], jobs[2]):
            stored = app.get_job(job.id)
            assert stored is not None and stored.state is JobState.SCHEDULED
            print(f"job {job.id} is still {stored.state.value}, as it should be")


if __name__ == "__main__":
    main()
