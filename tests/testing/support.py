"""What the pytester suites share: the workers a user's test module imports, and a runner."""

from __future__ import annotations

import pytest

WORKERS = """
import time
from typing import Any
from pydantic import BaseModel
from jobsaga import Error, Job, Snooze, Worker

class Add(Worker):
    class Args(BaseModel):
        a: int
        b: int
    def perform(self, job: Job[Any]) -> Any:
        return job.args.a + job.args.b

class Slow(Worker, timeout=0.1):
    def perform(self, job: Job[Any]) -> None:
        time.sleep(1)

class Boom(Worker, max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise RuntimeError("boom")

class Bad(Worker):
    def perform(self, job: Job[Any]) -> Any:
        return Snooze  # the class, not an instance: a node refuses it too

class Nap(Worker):
    def perform(self, job: Job[Any]) -> Any:
        return Snooze(60)

class Fail(Worker):
    def perform(self, job: Job[Any]) -> Any:
        return Error("try later")

class Fan(Worker):
    def perform(self, job: Job[Any]) -> Any:
        from jobsaga import Complete
        n = job.args["n"]
        return Complete(enqueue=[Fan.new({"n": n - 1})]) if n > 0 else None

class Greet(Worker, queue="mailers"):
    async def perform(self, job: Job[Any]) -> Any:
        import asyncio
        LOOPS.append(asyncio.get_running_loop())
        return {"hello": job.args["name"]}

LOOPS: list = []

class Flaky(Worker, max_attempts=3):
    def perform(self, job: Job[Any]) -> Any:
        raise RuntimeError(f"flaky on attempt {job.attempt}")

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        FINAL.append((job.attempt, str(error)))

FINAL: list = []

# --- a saga run by a worker: a seat is held, then paid; a failed payment releases it -------
from jobsaga import StepContext, Workflow, WorkflowWorker, step

LEDGER: list = []

class Book(Workflow, inputs=["seat", "fail"]):
    @step
    def hold(self, seat: str) -> str:
        LEDGER.append(f"held {seat}")
        return seat

    @hold.undo
    def release(self, held: str) -> None:
        LEDGER.append(f"released {held}")

    @step
    def pay(self, hold: str, fail: bool, ctx: StepContext) -> str:
        if fail:
            raise RuntimeError("card declined")
        ctx.enqueue_after_success(Greet.new({"name": hold}))
        return f"paid {hold}"

class BookWorker(WorkflowWorker, workflow=Book, max_attempts=2):
    pass
"""


def run(pytester: pytest.Pytester, body: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(workers=WORKERS, test_user=body)
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)
