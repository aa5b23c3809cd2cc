"""A user's app for the shutdown tests of ``jobsaga worker`` (run in a subprocess): work that
outlives the grace period in each place user code can run, noting what it does in the file
named by ``JOBSAGA_TEST_LOG`` (see :mod:`tests.jobs.sample_app`)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobsaga import App, Job, Worker, Workflow, WorkflowWorker, step
from tests.jobs.sample_app import Sleeps, SleepsSync, note


class SlowStep(Workflow, inputs=["seconds"]):
    """A saga whose only step is a plain ``def`` (it runs in a thread)."""

    @step
    def wait(self, seconds: float) -> None:
        note("step start")
        time.sleep(seconds)
        note("step end")


class SlowSaga(WorkflowWorker, workflow=SlowStep, name="shutdown.slow_saga", timeout=None):
    pass


class InAThread(Worker, name="shutdown.in_a_thread", timeout=None):
    """An async perform that hands blocking work to ``asyncio.to_thread``."""

    async def perform(self, job: Job[Any]) -> None:
        note(f"start {job.id}")
        await asyncio.to_thread(time.sleep, float(job.args["seconds"]))
        note(f"end {job.id}")


class Stubborn(Worker, name="shutdown.stubborn", timeout=None):
    """An async perform that goes on after it is cancelled (a cleanup that takes long)."""

    async def perform(self, job: Job[Any]) -> None:
        note(f"start {job.id}")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            note(f"cancelled {job.id}")
            await asyncio.sleep(60)


app = App(workers=[SlowSaga, InAThread, Stubborn, Sleeps, SleepsSync])
