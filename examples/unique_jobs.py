"""Unique jobs: the guide's "Job Enqueueing > Job Uniqueness".

Run it from the repository root: ``python examples/unique_jobs.py``

``unique={"period": ..., "keys": [...], "states": [...]}`` makes an insert return the existing
job, marked ``conflict=True``, instead of storing a duplicate: same worker, queue and values
of ``keys``, inserted within ``period`` seconds, while the existing job is in one of
``states``. The database enforces it (a unique index), so it holds across processes too.
"""

from __future__ import annotations

import time

from _support import settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Job, Worker

UNIQUE = {
    "period": 60,  # seconds
    "keys": ["resource_id"],  # only these args are compared
    "states": ["available", "scheduled", "executing"],  # existing jobs in these states block
}


class UniqueWorker(Worker, queue="default", unique=UNIQUE, name="examples.unique"):
    class Args(BaseModel):
        resource_id: str
        requested_by: str = "api"  # not a key: differs between duplicates

    def perform(self, job: Job[Args]) -> None:
        pass


class ShortPeriodWorker(Worker, unique={"period": 1}, name="examples.unique_1s"):
    def perform(self, job: Job[dict[str, str]]) -> None:
        pass


def show(label: str, job: Job[object]) -> None:
    print(f"{label:<32} -> job {job.id} state={job.state.value} conflict={job.conflict}")


def main() -> None:
    with temporary_app(UniqueWorker, ShortPeriodWorker) as app:
        first = app.insert(UniqueWorker.new({"resource_id": "res-123"}))
        show("first insert (res-123)", first)
        again = app.insert(UniqueWorker.new({"resource_id": "res-123", "requested_by": "cron"}))
        show("second insert (res-123, by cron)", again)
        other = app.insert(UniqueWorker.new({"resource_id": "res-999"}))
        show("another resource (res-999)", other)
        print(f"jobs stored: {sum(app.count_jobs().values())}")

        # Once the job completes it leaves the protected states: the same args insert anew.
        with app.node({"default": 5}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        later = app.insert(UniqueWorker.new({"resource_id": "res-123"}))
        show("after res-123 completed", later)

        # The period: a duplicate inserted after it has passed is a new job.
        early = app.insert(ShortPeriodWorker.new({"report": "daily"}))
        repeat = app.insert(ShortPeriodWorker.new({"report": "daily"}))
        show("period 1s, first", early)
        show("period 1s, at once", repeat)
        time.sleep(1.1)
        past = app.insert(ShortPeriodWorker.new({"report": "daily"}))
        show("period 1s, 1.1s later", past)


if __name__ == "__main__":
    main()
