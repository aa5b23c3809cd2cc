"""A worker node in its own process, for the multi-node tests (run with ``python -m``).

``python -m tests.plugins.node_proc URL NAME [--cron] [--queue q=N ...]``: prints ``ready``
once started and runs until SIGTERM (or kill -9, which is the point).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import jobsaga
from jobsaga import App, CronEntry, Worker


class CronTick(Worker, name="tests.multi.CronTick", queue="cron"):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        return None


class Work(Worker, name="tests.multi.Work", queue="work", timeout=None, max_attempts=5):
    """Hangs on its first attempt on a node named 'victim-*' (which is then killed)."""

    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> dict[str, Any]:
        if job.attempt == 1 and (job.attempted_by or "").startswith("victim"):
            time.sleep(600)
        time.sleep(0.05)
        return {"by": job.attempted_by}


class Long(Worker, name="tests.multi.Long", queue="long", timeout=None):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        time.sleep(float(job.args["seconds"]))


CRONTAB = [
    CronEntry("* * * * * *", CronTick, name="every-second"),
    CronEntry("* * * * * */2", CronTick, name="every-2s", args={"k": "two"}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("name")
    parser.add_argument("--cron", action="store_true")
    parser.add_argument("--queue", action="append", default=[])
    parser.add_argument("--lease", type=float, default=2.0)
    parser.add_argument("--heartbeat", type=float, default=0.25)
    parser.add_argument("--rescue-after", type=float, default=2.0)
    opts = parser.parse_args()
    queues = {q.split("=")[0]: int(q.split("=")[1]) for q in opts.queue} or {"cron": 2}
    app = App(opts.url, workers=[CronTick, Work, Long])
    node = app.node(
        queues,
        name=opts.name,
        poll_interval=0.1,
        grace_period=1.0,
        crontab=CRONTAB if opts.cron else (),
        leader_lease=opts.lease,
        heartbeat_interval=opts.heartbeat,
        rescue_after=opts.rescue_after,
    )

    async def run() -> None:
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        await node.start()
        loop.add_signal_handler(signal.SIGTERM, node.request_stop)
        print("ready", flush=True)
        try:
            await node.wait_stopped()
        finally:
            await node.stop()

    import asyncio

    asyncio.run(run())
    app.close()
    sys.exit(0)


if __name__ == "__main__":
    main()
