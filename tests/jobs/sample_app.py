"""A user's app module for tests that run jobsaga in other processes (the CLI, racing inserts).

The database comes from ``JOBSAGA_DATABASE_URL`` (or ``--url``); what performs see is written
to the file named by ``JOBSAGA_TEST_LOG``, one line each, so the test can read it back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from jobsaga import App, Cancel, Discard, Error, Job, Snooze, Worker

FAST = {"backoff": lambda attempt: 0.05}


def note(line: str) -> None:
    path = os.environ.get("JOBSAGA_TEST_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(line + "\n")


class Completes(Worker, name="sample.completes"):
    async def perform(self, job: Job[Any]) -> str:
        return "done"


class FailsOnce(Worker, name="sample.fails_once", max_attempts=3, **FAST):
    def perform(self, job: Job[Any]) -> None:
        if job.attempt == 1:
            raise ConnectionError("gateway timed out")


class AlwaysFails(Worker, name="sample.always_fails", max_attempts=2, **FAST):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("bad record")

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        note(f"final {job.id}")


class ErrorResult(Worker, name="sample.error_result", max_attempts=1):
    async def perform(self, job: Job[Any]) -> Error:
        return Error("quota exceeded")


class Snoozes(Worker, name="sample.snoozes", max_attempts=1):
    async def perform(self, job: Job[Any]) -> Snooze | None:
        return Snooze(0.1) if job.meta.get("snoozed", 0) < 2 else None


class Discards(Worker, name="sample.discards"):
    def perform(self, job: Job[Any]) -> Discard:
        return Discard("not_found")


class Cancels(Worker, name="sample.cancels"):
    def perform(self, job: Job[Any]) -> Cancel:
        return Cancel("order deleted")


class TimesOut(Worker, name="sample.times_out", max_attempts=1, timeout=0.2):
    async def perform(self, job: Job[Any]) -> None:
        await asyncio.sleep(10)


class Sleeps(Worker, name="sample.sleeps", timeout=None):
    """Runs for ``seconds``; notes when it starts and ends."""

    async def perform(self, job: Job[Any]) -> None:
        note(f"start {job.id}")
        await asyncio.sleep(float(job.args["seconds"]))
        note(f"end {job.id}")


class SleepsSync(Worker, name="sample.sleeps_sync", timeout=None):
    def perform(self, job: Job[Any]) -> None:
        note(f"start {job.id}")
        time.sleep(float(job.args["seconds"]))
        note(f"end {job.id}")


class StopsTheNode(Worker, name="sample.stops_the_node"):
    """Sends SIGTERM to its own node, which should then stop gracefully (the job completes)."""

    async def perform(self, job: Job[Any]) -> None:
        note(f"start {job.id}")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)
        note(f"end {job.id}")


class Unique(Worker, name="sample.unique", unique={"period": None}):
    def perform(self, job: Job[Any]) -> None:
        return None


app = App(
    workers=[
        Completes,
        FailsOnce,
        AlwaysFails,
        ErrorResult,
        Snoozes,
        Discards,
        Cancels,
        TimesOut,
        Sleeps,
        SleepsSync,
        StopsTheNode,
        Unique,
    ]
)
