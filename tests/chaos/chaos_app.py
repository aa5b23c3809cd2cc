"""The user's app that real ``jobsaga worker`` processes run in the chaos scenarios.

Run as ``jobsaga worker --app tests.chaos.chaos_app:app --url URL ...``. What jobs and steps
really do is appended to the file named by ``$JOBSAGA_CHAOS_LOG``, one line per execution
(``O_APPEND`` writes of a short line are atomic, so several processes share the file), because
counting side effects outside the database is the only honest way to tell "ran once" from
"ran twice" when processes and the server are killed. See :func:`read_log`.

Line formats (space separated)::

    run JOB_ID ATTEMPT PID               a Record job performed (at its start)
    step JOB_ID STEP ATTEMPT PID         a KillSaga step ran
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobsaga import App, Complete, Job, StepContext, Worker, Workflow, WorkflowWorker, step

LOG_ENV = "JOBSAGA_CHAOS_LOG"


def note(*fields: object) -> None:
    """Append one line to the chaos log (a no-op without ``$JOBSAGA_CHAOS_LOG``)."""
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = (" ".join(str(f) for f in fields) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_log(path: Path | str) -> list[list[str]]:
    """The chaos log's lines, split in fields (a torn last line of a killed writer is kept)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.split() for line in text.splitlines() if line.strip()]


class Record(Worker, name="chaos.record", queue="work", max_attempts=10, timeout=None):
    """Notes its run, then sleeps ``args["seconds"]`` (default 0), and, given
    ``args["until"]`` (a file path), waits until that file exists (at most a minute): a test
    holds jobs in flight for exactly as long as it needs, however loaded the machine is."""

    async def perform(self, job: Job[dict[str, Any]]) -> None:
        note("run", job.id, job.attempt, os.getpid())
        seconds = float(job.args.get("seconds", 0))
        if seconds:
            await asyncio.sleep(seconds)
        until = job.args.get("until")
        deadline = time.monotonic() + 60
        while until and not os.path.exists(until) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)


class RecordSync(Worker, name="chaos.record_sync", queue="work", max_attempts=10, timeout=None):
    """Like :class:`Record`, in a thread (sync perform)."""

    def perform(self, job: Job[dict[str, Any]]) -> None:
        note("run", job.id, job.attempt, os.getpid())
        seconds = float(job.args.get("seconds", 0))
        if seconds:
            time.sleep(seconds)


FAST_RETRY = {"backoff": lambda attempt: 0.05}
"""Retries at once, so a test sees every attempt in a second."""


class FailsWithNul(Worker, name="chaos.fails_with_nul", queue="work", max_attempts=2, **FAST_RETRY):
    """Its error text holds a NUL character, which a PostgreSQL jsonb column refuses."""

    def perform(self, job: Job[dict[str, Any]]) -> None:
        note("run", job.id, job.attempt, os.getpid())
        raise ValueError("bad byte \x00 in the error text")


class FarFollowUp(Worker, name="chaos.far_follow_up", queue="work", max_attempts=2, **FAST_RETRY):
    """Completes with a follow-up job scheduled absurdly far ahead (past year 9999), built as
    a caller could build it (``Worker.new`` itself refuses such a delay)."""

    def perform(self, job: Job[dict[str, Any]]) -> Complete:
        note("run", job.id, job.attempt, os.getpid())
        far = dataclasses.replace(Record.new({"far": True}), schedule_in=1e12)
        return Complete(enqueue=(far,))


class UniqueJob(Worker, name="chaos.unique", queue="unique", unique={"period": None}):
    """One job per args, ever: what racing inserters must not duplicate."""

    def perform(self, job: Job[dict[str, Any]]) -> None:
        return None


class KillSaga(Workflow, name="chaos.kill_saga", inputs=["order"]):
    """Three steps with side effects, a follow-up job on success. On its first attempt the
    node is SIGKILLed right after the run is recorded ``succeeded`` (see :func:`kill_on_stop`),
    before the job's completion is written."""

    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> str:
        note("step", ctx.job.id if ctx.job else 0, "reserve", ctx.attempt, os.getpid())
        return f"r-{order}"

    @step
    def charge(self, reserve: str, ctx: StepContext[Any]) -> str:
        note("step", ctx.job.id if ctx.job else 0, "charge", ctx.attempt, os.getpid())
        return f"c-{reserve}"

    @step
    def ship(self, charge: str, ctx: StepContext[Any]) -> str:
        job_id = ctx.job.id if ctx.job else 0
        note("step", job_id, "ship", ctx.attempt, os.getpid())
        ctx.enqueue_after_success(Record.new({"follow_up_of": job_id}))
        return f"s-{charge}"


class KillSagaWorker(
    WorkflowWorker, workflow=KillSaga, queue="saga", name="chaos.kill_saga_worker", max_attempts=5
):
    pass


def kill_on_stop(event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """SIGKILL this process when a KillSaga run stops successfully on its first attempt: the
    window between the run's success and its job's completion (fault 1 of issue 9)."""
    if meta.get("workflow") == KillSaga.name and meta.get("attempt") == 1:
        note("killed", meta.get("job_id"), os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


app = App(
    workers=[Record, RecordSync, FailsWithNul, FarFollowUp, UniqueJob, KillSagaWorker],
    workflows=[KillSaga],
)
if os.environ.get("JOBSAGA_CHAOS_KILL_ON_STOP") == "1":
    app.telemetry.attach("chaos.kill_on_stop", "workflow.stop", kill_on_stop)
