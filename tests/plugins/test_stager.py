"""The stager makes due jobs available when they are due, without polling per job."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import jobsaga
from jobsaga import App, JobState, Snooze, Worker
from tests.helpers import wait_until


class Once(Worker, name="tests.stager.Once"):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> Any:
        if job.args.get("snooze") and not job.meta.get("snoozed"):
            return Snooze(0.4)
        return None


def test_scheduled_job_runs_when_due_not_at_the_next_poll(make_app: Callable[..., App]) -> None:
    """With a 30s stage interval, a job due in 0.5s still runs about 0.5s later: the stager
    sleeps until the earliest due job, and an insert of a scheduled job wakes it."""
    app = make_app(Once)
    runs: list[int] = []
    app.telemetry.attach("t", "plugin.stager.stop", lambda e, m, md: runs.append(1))
    node = app.node(poll_interval=30, stage_interval=30)
    with node.start_in_thread():
        time.sleep(0.2)
        idle_runs = len(runs)
        inserted = time.monotonic()
        job = app.insert(Once.new(schedule_in=0.5))
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED, 5)  # type: ignore[union-attr]
        took = time.monotonic() - inserted
        snoozer = app.insert(Once.new({"snooze": True}))
        wait_until(lambda: app.get_job(snoozer.id).state is JobState.COMPLETED, 5)  # type: ignore[union-attr]
    assert 0.45 < took < 3.0  # far below the 30 s stage interval
    assert idle_runs <= 2  # idle: no polling beyond the stage interval
    done = app.get_job(snoozer.id)
    assert done is not None and done.meta["snoozed"] == 1
