"""Enqueueing jobs: the guide's "Job Enqueueing > Basic Enqueueing" (simple, and with options).

Run it from the repository root: ``python examples/enqueueing.py``

``Worker.new(args, **options)`` builds a validated job and ``app.insert`` stores it (the
guide's ``MyWorker.new() |> Oban.insert()``); options given to ``new`` override the worker's
class options for that one job. ``app.insert_all`` stores many jobs in one round trip. A queue
runs its available jobs by priority (0 first), then scheduled time, then insertion order.
For the actor context see actor_worker.py; for ``schedule_in``/``scheduled_at``,
scheduled_jobs.py; for uniqueness, unique_jobs.py.
"""

from __future__ import annotations

from _support import settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Job, Worker

RAN: list[str] = []


class MyWorker(Worker, name="examples.my_worker"):  # defaults: queue default, priority 0
    class Args(BaseModel):
        task_id: str

    def perform(self, job: Job[Args]) -> None:
        RAN.append(f"{job.args.task_id} ({job.queue}, priority {job.priority})")


def main() -> None:
    with temporary_app(MyWorker) as app:
        # insert_all: one round trip for many jobs; these are low priority (3)
        batch = app.insert_all([MyWorker.new({"task_id": f"bulk-{i}"}, priority=3) for i in (1, 2)])
        # simple job: the worker's own options
        simple = app.insert(MyWorker.new({"task_id": "task-123"}))
        # with options: another queue, top priority, more attempts
        urgent = app.insert(
            MyWorker.new({"task_id": "task-456"}, queue="high_priority", priority=0, max_attempts=5)
        )
        for job in [*batch, simple, urgent]:
            print(
                f"inserted job {job.id} {job.raw_args['task_id']}: queue={job.queue} "
                f"priority={job.priority} max_attempts={job.max_attempts} state={job.state.value}"
            )

        # One job at a time per queue, so the order is visible: priority 0 before priority 3.
        with app.node({"default": 1, "high_priority": 1}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        default_order = [line for line in RAN if "(default" in line]
        print("default queue ran, in order:", "; ".join(default_order))
        print(
            "high_priority queue ran:", "; ".join(line for line in RAN if "high_priority" in line)
        )
        print(f"job counts: {app.count_jobs()}")


if __name__ == "__main__":
    main()
