"""Queues: the guide's "Workflow Integration > Queue Configuration", and queue control.

Run it from the repository root: ``python examples/queue_configuration.py``

The guide's ``queues: [agents: 10, ...]`` is the mapping a node is started with (or
``jobsaga worker --queue agents=10 ...``): each queue runs at most that many jobs at once on
the node. At runtime, ``app.pause_queue`` / ``resume_queue`` / ``scale_queue`` change a queue
on every node (persisted, so a node started later applies them too), and ``app.list_queues``
shows counts, controls and each node's limit. Jobs sleep 0.2 s so the limits are visible.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from _support import settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import App, Job, Worker

QUEUES = {
    "agents": 10,  # agent processing
    "analytics": 5,  # analytics queries
    "modeling": 5,  # model editing and materialization
    "uploads": 3,  # file uploads
    "validations": 2,  # validation tasks
    "default": 5,  # catch-all
}

lock = threading.Lock()
running: Counter[str] = Counter()
peak: Counter[str] = Counter()


class Task(Worker, name="examples.task"):
    class Args(BaseModel):
        seconds: float = 0.2

    def perform(self, job: Job[Args]) -> None:
        with lock:
            running[job.queue] += 1
            peak[job.queue] = max(peak[job.queue], running[job.queue])
        time.sleep(job.args.seconds)
        with lock:
            running[job.queue] -= 1


def run_batch(app: App, queue: str, count: int) -> int:
    """Insert ``count`` jobs into ``queue``, wait for them, and return the most that ran at once."""
    peak[queue] = 0
    app.insert_all([Task.new({}, queue=queue) for _ in range(count)])
    wait_until(lambda: settled(app))
    return peak[queue]


def main() -> None:
    with temporary_app(Task) as app, app.node(QUEUES, poll_interval=0.05).start_in_thread():
        print(f"uploads: 6 jobs, at most {run_batch(app, 'uploads', 6)} at once (limit 3)")
        print(f"agents: 12 jobs, at most {run_batch(app, 'agents', 12)} at once (limit 10)")

        app.pause_queue("validations")  # in force on this process's nodes once it returns
        app.insert_all([Task.new({}, queue="validations") for _ in range(4)])
        time.sleep(0.5)
        info = next(q for q in app.list_queues() if q.queue == "validations")
        print(
            f"validations paused: available={info.available} executing={info.executing} after 0.5 s"
        )
        app.resume_queue("validations")
        wait_until(lambda: settled(app))
        print(f"validations resumed: 4 jobs done, at most {peak['validations']} at once (limit 2)")

        app.scale_queue("uploads", 6)
        print(f"uploads scaled to 6: 6 jobs, at most {run_batch(app, 'uploads', 6)} at once")

        print("queue        limit  completed")
        for queue in app.list_queues():
            done = app.count_jobs(queue=queue.queue).get("completed", 0)
            for node in queue.nodes:
                print(f"{queue.queue:<12} {node.concurrency:>5}  {done:>9}")


if __name__ == "__main__":
    main()
