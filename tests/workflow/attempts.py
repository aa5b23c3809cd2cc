"""Running a saga attempt by attempt in a test, as a job's attempts run it: attempt 1 cut
short at a chosen point (as a timeout or a shutdown cuts it), the next one resuming it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

from jobsaga import App, Job, Workflow
from jobsaga.workflow.running import execute
from tests.workflow.conftest import TRAIL


def attempt_of(job: Job[Any], attempt: int) -> Job[Any]:
    return dataclasses.replace(job, attempt=attempt)


async def cut_short(
    app: App, workflow: type[Workflow], job: Job[Any], inputs: Any, at: str
) -> None:
    """Run attempt 1 until ``at`` is in the trail, then cancel it."""
    task = asyncio.create_task(execute(app, workflow, inputs, job=attempt_of(job, 1)))
    while at not in TRAIL:
        await asyncio.sleep(0.005)
    await asyncio.sleep(0.1)  # let the run log catch up, as a live node would
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
