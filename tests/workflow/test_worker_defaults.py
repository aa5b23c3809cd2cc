"""A ``WorkflowWorker``'s defaults suit sagas: a run that rolled back is run again at most
twice (``max_attempts=3``), not nineteen more times as a plain worker's 20 would; the spare
attempts are for runs a crash, a shutdown or a timeout interrupted. Both engines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jobsaga import App, Job, JobState, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.workflow import list_runs
from jobsaga.workflow.worker import MAX_ATTEMPTS
from tests.helpers import wait_until

calls: list[str] = []


class Doomed(Workflow, inputs=["order_id"]):
    @step
    def reserve(self, order_id: str, ctx: StepContext) -> str:
        calls.append("reserve")
        return order_id

    @reserve.undo
    def release(self, result: str, ctx: StepContext) -> None:
        calls.append("release")

    @step
    def charge(self, reserve: str, ctx: StepContext) -> None:
        calls.append("charge")
        raise RuntimeError("card declined")


class DoomedWorker(WorkflowWorker, workflow=Doomed, name="defaults.doomed", backoff=lambda a: 0.01):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        calls.append("final")


class Plain(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_a_workflow_worker_defaults_to_three_attempts_and_a_plain_worker_to_twenty() -> None:
    assert MAX_ATTEMPTS == 3
    assert WorkflowWorker.options.max_attempts == DoomedWorker.options.max_attempts == 3
    assert DoomedWorker.new({"order_id": "o-1"}).max_attempts == 3
    assert Plain.options.max_attempts == 20

    class Patient(WorkflowWorker, workflow=Doomed, name="defaults.patient", max_attempts=8):
        pass

    assert Patient.new({"order_id": "o-1"}).max_attempts == 8


def test_a_saga_that_rolls_back_runs_three_times_not_twenty(
    make_app: Callable[..., App],
) -> None:
    calls.clear()
    app = make_app(DoomedWorker)
    stored = app.insert(DoomedWorker.new({"order_id": "o-1"}))
    with app.node({"default": 2}, poll_interval=0.05, stage_interval=0.02).start_in_thread():
        wait_until(lambda: app.get_job(stored.id).state.is_final, timeout=20)  # type: ignore[union-attr]
    job = app.get_job(stored.id)
    assert job is not None and job.state is JobState.DISCARDED and job.attempt == 3
    assert calls == ["reserve", "charge", "release"] * 3 + ["final"]
    runs = list_runs(app, job_id=stored.id)
    assert [(r.attempt, r.status) for r in runs] == [
        (3, "rolled_back"),
        (2, "rolled_back"),
        (1, "rolled_back"),
    ]
