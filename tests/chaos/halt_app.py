"""The app the halt-and-resume chaos scenarios run in real ``jobsaga worker`` processes.

Run as ``jobsaga worker --app tests.chaos.halt_app:app``. Each step notes its execution in
the chaos log (``step JOB_ID STEP ATTEMPT PID``, see :mod:`.chaos_app`), so a test counts
what really ran across processes that are killed.

``HaltSaga``: ``reserve``, then ``approve`` (halts with ``{"ticket": ...}`` unless the input
``approved`` is true) beside ``audit`` (which, given ``hold`` (a file path), waits until that
file exists: a sibling still in flight when the run halts), then ``ship`` (a follow-up job).

``$JOBSAGA_HALT_KILL=1``: the process SIGKILLs itself when a run ends ``halted`` on its
job's first attempt (``workflow.halt``), after the run log says halted and before the job's
parking is written.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from jobsaga import App, StepContext, Workflow, WorkflowWorker, step
from jobsaga.workflow.results import Halt

from .chaos_app import Record, note


def _job(ctx: StepContext[Any]) -> int:
    return ctx.job.id if ctx.job else 0


class HaltSaga(Workflow, name="chaos.halt_saga"):
    class Inputs(BaseModel):
        order: str
        approved: bool = False
        hold: str | None = None

    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> str:
        note("step", _job(ctx), "reserve", ctx.attempt, os.getpid())
        return f"r-{order}"

    @step
    def approve(self, reserve: str, approved: bool, ctx: StepContext[Any]) -> Any:
        note("step", _job(ctx), "approve", ctx.attempt, os.getpid())
        if not approved:
            return Halt({"ticket": f"t-{reserve}"}, reason="waiting for approval")
        return {"ticket": "auto"}

    @step
    async def audit(self, reserve: str, hold: str | None, ctx: StepContext[Any]) -> str:
        note("step", _job(ctx), "audit", ctx.attempt, os.getpid())
        deadline = time.monotonic() + 60
        while hold and not os.path.exists(hold) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return f"a-{reserve}"

    @step
    def ship(self, approve: Any, audit: str, order: str, ctx: StepContext[Any]) -> str:
        job_id = _job(ctx)
        note("step", job_id, "ship", ctx.attempt, os.getpid())
        note("shipped", job_id, approve.get("ticket"))
        ctx.enqueue_after_success(Record.new({"follow_up_of": job_id}))
        return f"s-{order}"


class HaltSagaWorker(
    WorkflowWorker, workflow=HaltSaga, queue="saga", name="chaos.halt_saga_worker", max_attempts=5
):
    pass


def kill_on_halt(event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """SIGKILL this process when a HaltSaga run ends halted on its first attempt."""
    if (
        meta.get("workflow") == HaltSaga.name
        and meta.get("status") == "halted"
        and meta.get("attempt") == 1
    ):
        note("killed", meta.get("job_id"), os.getpid())
        os.kill(os.getpid(), signal.SIGKILL)


app = App(workers=[HaltSagaWorker, Record], workflows=[HaltSaga])
if os.environ.get("JOBSAGA_HALT_KILL") == "1":
    app.telemetry.attach("chaos.kill_on_halt", "workflow.halt", kill_on_halt)
