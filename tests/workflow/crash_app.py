"""The app a killed worker process runs in the crash-recovery test (``python -m`` this module).

Each step writes a row to ``crash_effects`` through its own connection, so the test can
count, across processes, how often each step really ran. ``slow`` hangs on the first
attempt, which is where the test kills the process (but for order ``quick``). With
``JOBSAGA_CRASH_AFTER_SUCCESS`` set, the process kills itself the moment a run has been
committed ``succeeded``, before the node acknowledges the job: the window of issue 9's
fault 1.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any

import psycopg

from jobsaga import App, Job, StepContext, Worker, Workflow, WorkflowError, WorkflowWorker, step

ENV_URL = "JOBSAGA_CRASH_TEST_URL"
ENV_AFTER_SUCCESS = "JOBSAGA_CRASH_AFTER_SUCCESS"


def effect(name: str, ctx: StepContext[Any]) -> None:
    record(name, ctx.attempt)


def record(name: str, attempt: int) -> None:
    with psycopg.connect(os.environ[ENV_URL], autocommit=True) as conn:
        conn.execute("INSERT INTO crash_effects (step, attempt) VALUES (%s, %s)", (name, attempt))


class CrashSaga(Workflow, name="crash_saga", inputs=["order"]):
    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> dict[str, str]:
        effect("reserve", ctx)
        return {"reservation": f"r-{order}"}

    @reserve.undo
    def release(self, result: dict[str, str], ctx: StepContext[Any]) -> None:
        effect("release", ctx)

    @step
    def charge(self, reserve: dict[str, str], ctx: StepContext[Any]) -> str:
        effect("charge", ctx)
        return f"c-{reserve['reservation']}"

    @step
    def slow(self, charge: str, order: str, ctx: StepContext[Any]) -> str:
        effect("slow", ctx)
        if ctx.attempt == 1 and order != "quick":
            time.sleep(60)  # killed here
        return "shipped"

    @step
    def receipt(self, slow: str, charge: str, ctx: StepContext[Any]) -> str:
        effect("receipt", ctx)
        ctx.enqueue_after_success(Notice.new({"charge": charge}))
        return f"{charge}:{slow}"


class Notice(Worker, queue="notices", name="crash.notice"):
    """The saga's follow-up job; no node here serves its queue, so the test can count it."""

    def perform(self, job: Job[Any]) -> None:
        pass


class CrashWorker(WorkflowWorker, workflow=CrashSaga, queue="crash", name="crash.worker"):
    pass


class LastChanceWorker(
    WorkflowWorker, workflow=CrashSaga, queue="crash", name="crash.last_chance", max_attempts=1
):
    """Its only attempt dies with the node: the lifeline discards the job."""

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        cause = error.error if isinstance(error, WorkflowError) else error
        record(f"final {type(error).__name__} {type(cause).__name__}", job.attempt)


LIFELINE = {"heartbeat_interval": 0.1, "rescue_after": 0.5, "leader_lease": 0.5}
"""Short lifeline timings: a node's jobs are rescued half a second after its last beat."""


def build_app() -> App:
    return App(
        os.environ[ENV_URL],
        workers=[CrashWorker, LastChanceWorker, Notice],
        workflows=[CrashSaga],
    )


def die(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
    """``workflow.stop`` is emitted once the run is committed ``succeeded`` and before the
    perform returns, so the job's completion is never written."""
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    """A worker node on the ``crash`` queue, run until it is killed."""
    app = build_app()
    app.migrate()
    if os.environ.get(ENV_AFTER_SUCCESS):
        app.telemetry.attach("crash-after-success", "workflow.stop", die)
    app.node({"crash": 2}, poll_interval=0.1, **LIFELINE).run()


if __name__ == "__main__":
    main()
