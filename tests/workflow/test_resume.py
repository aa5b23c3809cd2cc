"""Resuming an unfinished run of the same job, on both engines, without killing processes:
the first attempt is cancelled mid-run (as a job timeout or a node shutdown does)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from jobsaga import App, Job, StepContext, Workflow, WorkflowWorker, step
from jobsaga.cli.main import cli
from jobsaga.errors import RecordedError, RunAbandoned, RunStateError
from jobsaga.workflow import RunStatus, get_run, list_runs, roll_back_run
from jobsaga.workflow.running import execute
from tests.workflow.conftest import TRAIL

gate: dict[str, asyncio.Event] = {}


class Reservation(BaseModel):
    reservation: str
    attempt: int


class Order(Workflow, inputs=["fail"]):
    @step
    def reserve(self, ctx: StepContext[Any]) -> Reservation:
        TRAIL.append(f"reserve@{ctx.attempt}")
        return Reservation(reservation="r-1", attempt=ctx.attempt)

    @reserve.undo
    def release(self, result: Reservation, ctx: StepContext[Any]) -> None:
        TRAIL.append(f"release {result.reservation}@{ctx.attempt}")

    @step
    async def charge(self, reserve: Reservation, ctx: StepContext[Any]) -> str:
        # On a resumed attempt, reserve comes back from the log re-typed by its annotation.
        assert isinstance(reserve, Reservation)
        TRAIL.append(f"charge@{ctx.attempt}")
        if ctx.attempt == 1 and "charge" in gate:
            await gate["charge"].wait()  # hangs: the attempt is cut short here
        return "c-1"

    @charge.undo
    async def refund(self, result: str, ctx: StepContext[Any]) -> None:
        TRAIL.append(f"refund {result}@{ctx.attempt}")
        if ctx.attempt == 1 and "refund" in gate:
            await gate["refund"].wait()

    @step
    def ship(self, charge: str, fail: bool, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"ship@{ctx.attempt}")
        if fail:
            raise RuntimeError("carrier rejected the parcel")
        return f"shipped {charge}"


class OrderWorker(WorkflowWorker, workflow=Order, name="order.worker"):
    pass


def attempt_of(job: Job[Any], attempt: int) -> Job[Any]:
    return dataclasses.replace(job, attempt=attempt)


async def cut_short(app: App, job: Job[Any], fail: bool, waiting_for: str) -> None:
    gate.clear()
    gate[waiting_for] = asyncio.Event()
    task = asyncio.create_task(execute(app, Order, {"fail": fail}, job=attempt_of(job, 1)))
    while f"{waiting_for}@1" not in TRAIL and not any(
        t.startswith(f"{waiting_for} ") for t in TRAIL
    ):
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # let the run log catch up, as a live node would
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gate.clear()


def test_an_interrupted_run_resumes_at_the_next_attempt(app: App) -> None:
    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": False}))

    async def scenario() -> Any:
        await cut_short(app, job, False, "charge")
        return await execute(app, Order, {"fail": False}, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.value == "shipped c-1"
    assert TRAIL == ["reserve@1", "charge@1", "charge@2", "ship@2"]  # reserve not re-run
    run = get_run(app, result.run_id)
    assert run is not None and run.status == "succeeded" and run.attempt == 2
    assert run.step("reserve").result == {"reservation": "r-1", "attempt": 1}
    kinds = [e.kind for e in run.events]
    assert "run.interrupted" in kinds and "run.resumed" in kinds
    assert run.step("charge").tries == 2


def test_an_interrupted_rollback_resumes_and_undoes_each_step_once(app: App) -> None:
    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": True}))

    async def scenario() -> Any:
        await cut_short(app, job, True, "refund")
        return await execute(app, Order, {"fail": True}, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert TRAIL == [
        "reserve@1",
        "charge@1",
        "ship@1",
        "refund c-1@1",  # cut short: its outcome is unknown, so it runs again
        "refund c-1@2",
        "release r-1@2",
    ]
    assert result.status is RunStatus.ROLLED_BACK
    error = result.error
    assert error is not None and error.step == "ship"
    assert isinstance(error.error, RecordedError)
    assert error.error.type_name == "builtins.RuntimeError"
    assert error.undone == ("charge", "reserve")
    run = get_run(app, result.run_id)
    assert run is not None and run.statuses() == {
        "reserve": "undone",
        "charge": "undone",
        "ship": "failed",
    }


def test_a_finished_run_is_not_resumed(app: App) -> None:
    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": True}))

    async def scenario() -> tuple[Any, Any]:
        first = await execute(app, Order, {"fail": True}, job=attempt_of(job, 1))
        second = await execute(app, Order, {"fail": True}, job=attempt_of(job, 2))
        return first, second

    first, second = asyncio.run(scenario())
    assert first.run_id != second.run_id  # a rolled-back run is over: the retry starts afresh
    assert TRAIL.count("reserve@1") == 1 and TRAIL.count("reserve@2") == 1


def test_an_abandoned_run_is_rolled_back_by_an_operator(app: App) -> None:
    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": False}))
    asyncio.run(cut_short(app, job, False, "charge"))
    [run] = list_runs(app, job_id=job.id)
    assert run.status == "running"

    with pytest.raises(RunStateError, match="which is available: its next attempt resumes"):
        roll_back_run(app, run.id)  # type: ignore[arg-type]
    param = "%(id)s" if app.engine.dialect == "postgres" else ":id"
    with app.engine.transaction() as tx:  # as the lifeline does after a crash on the last attempt
        tx.execute(
            f"UPDATE jobsaga_jobs SET state = 'discarded' WHERE id = {param}", {"id": job.id}
        )

    result = roll_back_run(app, run.id, reason="node died on the last attempt")  # type: ignore[arg-type]
    assert result.status is RunStatus.ROLLED_BACK
    assert result.error is not None and isinstance(result.error.error, RunAbandoned)
    assert result.error.undone == ("reserve",)  # charge was running: its outcome is unknown
    assert TRAIL[-1] == "release r-1@1"
    assert result.run is not None and result.run.statuses() == {
        "reserve": "undone",
        "charge": "pending",
        "ship": "pending",
    }
    [abandoned] = result.run.events_of("run.abandoned")
    assert abandoned.detail == {"reason": "node died on the last attempt", "type": "RunAbandoned"}
    with pytest.raises(RunStateError, match="has ended already"):
        roll_back_run(app, run.id)  # type: ignore[arg-type]


def test_rollback_from_the_cli(db_url: str, make_app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    app = make_app(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": False}))
    asyncio.run(cut_short(app, job, False, "charge"))
    [run] = list_runs(app, job_id=job.id)
    monkeypatch.setenv("JOBSAGA_TEST_APP_URL", db_url)
    runner = CliRunner()
    args = ["runs", "rollback", str(run.id), "--app", "tests.workflow.test_resume:env_app"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code != 0 and "Cancel the job first" in refused.output
    done = runner.invoke(cli, [*args, "--force", "--reason", "cleanup"])
    assert done.exit_code == 0, done.output
    assert done.output == f"run {run.id}: rolled_back; undone: reserve\n"


def env_app() -> App:
    import os

    return App(os.environ["JOBSAGA_TEST_APP_URL"], workers=[OrderWorker])
