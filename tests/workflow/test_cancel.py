"""A WorkflowWorker job cancelled mid-run rolls its run back; a node shutdown leaves the run to
the next attempt. On a real node, both engines; the cancel comes from this process or from
another App on the same database (NOTIFY on PostgreSQL, the node's poll on SQLite)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Job, JobState, Workflow, WorkflowWorker, step
from jobsaga.errors import JobCancelled, RecordedError
from jobsaga.workflow import RunRecord, RunStatus, get_run, list_runs, roll_back_run
from jobsaga.workflow.running import execute
from tests.helpers import wait_until
from tests.workflow.conftest import TRAIL

NODE = {"poll_interval": 0.05, "control_interval": 0.1, "stage_interval": 0.05}
"""Short timings: cancels seen by another SQLite process within 0.1 s."""

release_pack = threading.Event()


@pytest.fixture(autouse=True)
def _fresh() -> Any:
    release_pack.clear()
    yield
    release_pack.set()  # a sync step still held lets its thread end


class Shipment(Workflow, name="cancel.shipment", inputs=["order"]):
    @step
    def reserve(self, order: str) -> str:
        TRAIL.append("reserve")
        return f"r-{order}"

    @reserve.undo
    def release(self, result: str) -> None:
        TRAIL.append(f"release {result}")

    @step
    async def charge(self, reserve: str) -> str:
        TRAIL.append("charge")
        return "c-1"

    @charge.undo
    async def refund(self, result: str) -> None:
        TRAIL.append(f"refund {result}")

    @step
    async def pack(self, charge: str) -> str:
        TRAIL.append("pack")
        if TRAIL.count("pack") == 1:  # the first run of the step hangs: cut short here
            await asyncio.sleep(30)
        TRAIL.append("packed")
        return "p-1"

    @pack.undo
    async def unpack(self, result: str) -> None:
        TRAIL.append(f"unpack {result}")

    @step
    def ship(self, pack: str) -> str:
        TRAIL.append("ship")
        return f"shipped {pack}"


class ShipmentWorker(
    WorkflowWorker, workflow=Shipment, name="cancel.shipment_worker", rollback_timeout=5
):
    pass


def run_of(app: App, job_id: int) -> RunRecord:
    [brief] = list_runs(app, job_id=job_id)
    full = get_run(app, brief.id)  # type: ignore[arg-type]
    assert full is not None
    return full


def ended(app: App, job_id: int) -> bool:
    runs = list_runs(app, job_id=job_id)
    return bool(runs) and runs[0].status not in ("running", "rolling_back")


@pytest.mark.parametrize("operator_process", ["same", "other"])
def test_a_cancelled_job_rolls_its_run_back(
    make_app: Callable[..., App], operator_process: str
) -> None:
    app = make_app(ShipmentWorker)
    operator = app if operator_process == "same" else make_app(ShipmentWorker)
    job = app.insert(ShipmentWorker.new({"order": "o-1"}))
    with app.node({"default": 2}, **NODE).start_in_thread() as thread:
        wait_until(lambda: "pack" in TRAIL)
        assert operator.cancel_job(job.id, reason="customer changed their mind")
        wait_until(lambda: ended(app, job.id), timeout=5)
        wait_until(lambda: not thread.node.producers["default"].running)

    assert TRAIL == ["reserve", "charge", "pack", "refund c-1", "release r-o-1"]  # newest first
    stored = app.get_job(job.id)
    assert stored is not None and stored.state is JobState.CANCELLED and stored.attempt == 1
    run = run_of(app, job.id)
    assert run.status == "rolled_back"
    assert run.error is not None and run.error["step"] == "(cancelled)"
    assert run.error["type"] == "jobsaga.errors.JobCancelled"
    assert run.error["message"] == f"job {job.id} was cancelled: customer changed their mind"
    assert run.statuses() == {
        "reserve": "undone",
        "charge": "undone",
        "pack": "pending",  # cancelled while it ran: its outcome is unknown, so not undone
        "ship": "pending",
    }
    assert run.undo_order() == ["charge", "reserve"]
    [cancelled] = run.events_of("run.cancelled")
    assert cancelled.detail == {
        "reason": f"job {job.id} was cancelled: customer changed their mind",
        "type": "JobCancelled",
    }
    [interrupted] = run.events_of("step.interrupted")
    assert interrupted.step == "pack"
    assert interrupted.detail == {"previous_status": "running", "stopped": True}


def test_a_node_shutdown_leaves_the_run_to_the_next_attempt(
    make_app: Callable[..., App],
) -> None:
    app = make_app(ShipmentWorker)
    job = app.insert(ShipmentWorker.new({"order": "o-2"}))
    with app.node({"default": 2}, grace_period=0.1, **NODE).start_in_thread():
        wait_until(lambda: "pack" in TRAIL)
    # Past its grace period the node cut the attempt short and wrote the job back.
    stored = app.get_job(job.id)
    assert stored is not None and stored.state in (JobState.RETRYABLE, JobState.AVAILABLE)
    assert re.search(r"shut ?down", stored.errors[-1]["error"])
    [brief] = list_runs(app, job_id=job.id)
    assert brief.status == "running"
    assert TRAIL == ["reserve", "charge", "pack"]  # nothing undone

    with app.node({"default": 2}, **NODE).start_in_thread():  # the next node takes it over
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED)  # type: ignore[union-attr]

    # Completed steps were not run again; the step that was running was.
    assert TRAIL == ["reserve", "charge", "pack", "pack", "packed", "ship"]
    run = run_of(app, job.id)
    assert run.id == brief.id and run.status == "succeeded" and run.result == "shipped p-1"
    assert run.step("reserve").tries == 1 and run.step("pack").tries == 2
    kinds = [e.kind for e in run.events]
    assert "run.interrupted" in kinds and "run.resumed" in kinds
    assert "run.cancelled" not in kinds and not run.events_of("step.undone")


class SyncPack(Workflow, name="cancel.sync_pack", inputs=["order"]):
    @step
    def reserve(self, order: str) -> str:
        TRAIL.append("reserve")
        return f"r-{order}"

    @reserve.undo
    def release(self, result: str) -> None:
        TRAIL.append(f"release {result}")

    @step
    def pack(self, reserve: str) -> str:
        TRAIL.append("pack")
        release_pack.wait(10)  # a thread: Python cannot stop it
        TRAIL.append("packed")
        return "p-1"

    @pack.undo
    def unpack(self, result: str) -> None:
        TRAIL.append(f"unpack {result}")

    @step
    def ship(self, pack: str) -> str:
        TRAIL.append("ship")
        return "shipped"


class SyncPackWorker(
    WorkflowWorker, workflow=SyncPack, name="cancel.sync_pack", rollback_timeout=5
):
    pass


def test_a_step_in_a_thread_is_awaited_then_undone(make_app: Callable[..., App]) -> None:
    app = make_app(SyncPackWorker)
    job = app.insert(SyncPackWorker.new({"order": "o-3"}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: "pack" in TRAIL)
        assert app.cancel_job(job.id, reason="wrong address")
        # Nothing is undone while pack's thread runs (it may depend on reserve).
        with contextlib.suppress(AssertionError):
            wait_until(lambda: len(TRAIL) > 2, timeout=0.3)
        assert TRAIL == ["reserve", "pack"]
        release_pack.set()
        wait_until(lambda: ended(app, job.id), timeout=5)
    assert TRAIL == ["reserve", "pack", "packed", "unpack p-1", "release r-o-3"]
    run = run_of(app, job.id)
    assert run.status == "rolled_back"
    assert run.statuses() == {"reserve": "undone", "pack": "undone", "ship": "pending"}
    assert app.get_job(job.id).state is JobState.CANCELLED  # type: ignore[union-attr]


class SlowUndo(Workflow, name="cancel.slow_undo", inputs=["order"]):
    @step
    def reserve(self, order: str) -> str:
        TRAIL.append("reserve")
        return f"r-{order}"

    @reserve.undo
    async def release(self, result: str) -> None:
        TRAIL.append(f"release {result}")
        if TRAIL.count(f"release {result}") == 1:
            await asyncio.sleep(UNDO_SECONDS[0])
        TRAIL.append("released")

    @step
    async def wait(self, reserve: str) -> str:
        TRAIL.append("wait")
        await asyncio.sleep(30)
        return "never"


UNDO_SECONDS = [0.0]
"""How long the first run of ``release`` takes."""


class SlowUndoWorker(
    WorkflowWorker, workflow=SlowUndo, name="cancel.slow_undo", rollback_timeout=5
):
    pass


class HurriedUndoWorker(
    WorkflowWorker, workflow=SlowUndo, name="cancel.hurried_undo", rollback_timeout=0.4
):
    pass


def test_the_rollback_is_shielded_from_a_shutdown(make_app: Callable[..., App]) -> None:
    UNDO_SECONDS[0] = 0.3  # well within the rollback's 5 s, past the node's grace period
    app = make_app(SlowUndoWorker)
    job = app.insert(SlowUndoWorker.new({"order": "o-4"}))
    with app.node({"default": 1}, grace_period=0.01, **NODE).start_in_thread() as thread:
        wait_until(lambda: "wait" in TRAIL)
        assert app.cancel_job(job.id)
        wait_until(lambda: "release r-o-4" in TRAIL)
        thread.node.request_stop()  # cancels the job's task again: the undo goes on
        thread.stop()
    assert TRAIL == ["reserve", "wait", "release r-o-4", "released"]
    run = run_of(app, job.id)
    assert run.status == "rolled_back" and run.statuses()["reserve"] == "undone"
    assert run.error is not None and "cancelled by an operator" in run.error["message"]


def test_a_rollback_past_its_bound_is_left_to_the_operator(make_app: Callable[..., App]) -> None:
    UNDO_SECONDS[0] = 30.0  # longer than the rollback may take (0.4 s)
    app = make_app(HurriedUndoWorker)
    job = app.insert(HurriedUndoWorker.new({"order": "o-5"}))
    with app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: "wait" in TRAIL)
        assert app.cancel_job(job.id)
        wait_until(lambda: not thread.node.producers["default"].running, timeout=5)
    [brief] = list_runs(app, job_id=job.id)
    assert brief.status == "rolling_back"  # cut short after 0.4 s
    assert TRAIL == ["reserve", "wait", "release r-o-5"]

    result = roll_back_run(app, brief.id)  # type: ignore[arg-type]  # the job is cancelled
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL[-2:] == ["release r-o-5", "released"]  # the interrupted undo ran again
    cause = result.error.error if result.error is not None else None
    assert isinstance(cause, RecordedError)  # read back from the log of the cancelled attempt
    assert cause.type_name == "jobsaga.errors.JobCancelled"
    assert cause.message == f"job {job.id} was cancelled: cancelled by an operator"


def test_a_cancel_racing_a_shutdown_still_rolls_back(app: App) -> None:
    """The job's row decides, not who cancelled the task: cancelled means nobody resumes."""
    app.register(ShipmentWorker)
    job = app.insert(ShipmentWorker.new({"order": "o-6"}))

    async def scenario() -> None:
        task = asyncio.create_task(execute(app, Shipment, {"order": "o-6"}, job=job))
        while "pack" not in TRAIL:
            await asyncio.sleep(0.01)
        await asyncio.to_thread(app.cancel_job, job.id, reason="raced")  # no node to tell
        task.cancel()  # as a shutdown would
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert TRAIL == ["reserve", "charge", "pack", "refund c-1", "release r-o-6"]
    run = run_of(app, job.id)
    assert run.status == "rolled_back"
    assert run.error is not None and run.error["message"] == f"job {job.id} was cancelled: raced"


def test_a_cancel_with_nothing_to_undo_ends_the_run_failed(app: App) -> None:
    class Bare(Workflow, name="cancel.bare"):
        @step
        async def wait(self) -> None:
            await asyncio.sleep(30)

    job: Job[Any] = app.insert(ShipmentWorker.new({"order": "o-7"}))

    async def scenario() -> None:
        task = asyncio.create_task(execute(app, Bare, job=job))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(app.cancel_job, job.id)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    [brief] = list_runs(app, job_id=job.id)
    assert brief.status == "failed"  # nothing completed that needed undoing


def test_job_cancelled_is_a_run_abandoned_and_copies() -> None:
    import copy

    from jobsaga.errors import RunAbandoned

    error = JobCancelled(7, "no longer needed")
    assert isinstance(error, RunAbandoned)
    again = copy.deepcopy(error)
    assert (again.job_id, again.reason, str(again)) == (7, "no longer needed", str(error))


def test_rollback_timeout_is_validated() -> None:
    from jobsaga.errors import ConfigError

    for bad in (0, -1, float("nan"), float("inf"), "10", True):
        with pytest.raises(ConfigError, match="rollback_timeout"):

            class Bad(WorkflowWorker, workflow=Shipment, rollback_timeout=bad):  # type: ignore[arg-type]
                pass
