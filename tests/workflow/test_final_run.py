"""A succeeded run is final for its job (issue 9, fault 1), both engines.

The run is committed ``succeeded`` by the run log; the job's completion (and the follow-up
jobs the steps registered) is written afterwards by the node's acker. A node that dies in
between leaves the job ``executing`` with a succeeded run: the lifeline rescues it and its
next attempt must complete it without running a step, inserting the follow-ups once.

The crash is reproduced faithfully: the attempt is run through the runtime's executor
(the same code a node runs) and its outcome is never written, as when the process dies
right after the run log's commit; the lifeline's own rescue then puts the job back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Job, JobState, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.errors import WorkflowError
from jobsaga.plugins.lifeline import rescue_own_orphans
from jobsaga.testing.runner import run_sync, runner
from jobsaga.workflow import get_run, list_runs
from tests.helpers import wait_until
from tests.workflow.conftest import TRAIL

DEAD = "node-that-died"


class Receipt(Worker, queue="later", name="final.receipt"):
    """A follow-up job; its queue is not served in these tests, so it stays available."""

    def perform(self, job: Job[Any]) -> None:
        raise AssertionError("never run here")


class Shipment(Workflow, name="final.shipment", inputs=["order"]):
    @step
    def reserve(self, order: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"reserve@{ctx.attempt}")
        return f"r-{order}"

    @reserve.undo
    def release(self, result: str, ctx: StepContext[Any]) -> None:
        TRAIL.append(f"release@{ctx.attempt}")

    @step
    def charge(self, reserve: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"charge@{ctx.attempt}")
        ctx.enqueue_after_success(Receipt.new({"what": "charge", "ref": reserve}))
        return f"c-{reserve}"

    @step
    def ship(self, charge: str, order: str, ctx: StepContext[Any]) -> dict[str, str]:
        TRAIL.append(f"ship@{ctx.attempt}")
        if order == "fails" and ctx.attempt == 1:
            raise RuntimeError("carrier refused the parcel")
        ctx.enqueue_after_success(Receipt.new({"what": "ship", "ref": charge}))
        return {"parcel": f"p-{charge}"}


class ShipmentWorker(WorkflowWorker, workflow=Shipment, queue="saga", name="final.worker"):
    pass


def die_after_the_run(app: App, job_id: int) -> Any:
    """Run attempt 1 as a node would, but never write its outcome (the node died right after
    the run log's last commit), then rescue the job as the lifeline does at restart."""
    claimed = app.engine.claim(job_id, DEAD, 1)
    assert claimed is not None
    with runner(app) as testing_runner:
        attempt = run_sync(testing_runner.attempt(claimed))
    stored = app.get_job(job_id)
    assert stored is not None and stored.state is JobState.EXECUTING  # its ack was lost
    rescued = rescue_own_orphans(app, DEAD, app.clock())
    assert [j.id for j in rescued.available] == [job_id]
    return attempt


def run_on_a_node(app: App, job_id: int) -> Job[Any]:
    with app.node({"saga": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job_id).state.is_final, timeout=20)  # type: ignore[union-attr]
    job = app.get_job(job_id)
    assert job is not None
    return job


def receipts(app: App) -> list[dict[str, Any]]:
    return sorted(
        (dict(j.args) for j in app.list_jobs(worker="final.receipt")), key=lambda a: a["what"]
    )


def test_a_succeeded_run_whose_completion_was_lost_is_not_run_again(
    make_app: Callable[..., App],
) -> None:
    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-1"}))
    first = die_after_the_run(app, job.id)
    assert first.outcome.state is JobState.COMPLETED
    assert receipts(app) == []  # the follow-ups went down with the lost acknowledgement

    finished = run_on_a_node(app, job.id)

    assert finished.state is JobState.COMPLETED and finished.attempt == 2
    assert TRAIL == ["reserve@1", "charge@1", "ship@1"]  # no step ran twice
    [run] = list_runs(app, job_id=job.id)
    assert run.status == "succeeded" and run.attempt == 1
    assert receipts(app) == [
        {"what": "charge", "ref": "r-o-1"},
        {"what": "ship", "ref": "c-r-o-1"},
    ]
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None
    [found] = full.events_of("run.already_succeeded")
    assert found.attempt == 2 and found.detail is not None
    assert found.detail["follow_ups"] == 2
    assert [e.kind for e in full.events if e.attempt == 2] == ["run.already_succeeded"]


def test_every_later_attempt_finds_the_run_final(make_app: Callable[..., App]) -> None:
    """The second attempt's completion is lost too: the third still runs nothing, and the
    follow-ups are inserted by the one completion that is written."""
    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-2"}))
    die_after_the_run(app, job.id)
    claimed = app.engine.claim(job.id, DEAD, 2)
    assert claimed is not None
    with runner(app) as testing_runner:
        second = run_sync(testing_runner.attempt(claimed))
    assert second.outcome.state is JobState.COMPLETED
    assert len(second.outcome.enqueue) == 2  # what the run registered, handed back again
    rescue_own_orphans(app, DEAD, app.clock())

    finished = run_on_a_node(app, job.id)

    assert finished.state is JobState.COMPLETED and finished.attempt == 3
    assert TRAIL == ["reserve@1", "charge@1", "ship@1"]
    assert len(receipts(app)) == 2
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None
    assert [e.attempt for e in full.events_of("run.already_succeeded")] == [2, 3]


def test_a_rolled_back_run_whose_failure_was_lost_is_retried_with_a_new_run(
    make_app: Callable[..., App],
) -> None:
    """The rule's other half: a run that ended in failure was rolled back, so the job's next
    attempt (its failure acknowledgement lost or not) is a new run from scratch."""
    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "fails"}))
    first = die_after_the_run(app, job.id)
    assert isinstance(first.outcome.error, WorkflowError)

    finished = run_on_a_node(app, job.id)

    assert finished.state is JobState.COMPLETED and finished.attempt == 2
    assert TRAIL == [
        "reserve@1",
        "charge@1",
        "ship@1",
        "release@1",
        "reserve@2",
        "charge@2",
        "ship@2",
    ]
    runs = list_runs(app, job_id=job.id)
    assert [(r.attempt, r.status) for r in runs] == [(2, "succeeded"), (1, "rolled_back")]
    assert len(receipts(app)) == 2


final_hook_calls: list[str] = []


class LastChance(
    WorkflowWorker, workflow=Shipment, queue="saga", name="final.last", max_attempts=1
):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        final_hook_calls.append(type(error).__name__)


def test_a_succeeded_run_on_the_last_attempt_is_not_reported_as_a_failure(
    make_app: Callable[..., App],
) -> None:
    """No attempt is left to complete the job: the lifeline discards it as orphaned. The saga
    succeeded all the same, so the final-failure hook is not told otherwise (nothing is
    undone), and the follow-ups are inserted once."""
    final_hook_calls.clear()
    app = make_app(LastChance, Receipt)
    job = app.insert(LastChance.new({"order": "o-3"}))
    claimed = app.engine.claim(job.id, DEAD, 1)
    assert claimed is not None
    with runner(app) as testing_runner:
        run_sync(testing_runner.attempt(claimed))

    # A node under the dead one's name rescues what it left at start (the lifeline's path).
    with app.node({"saga": 1}, poll_interval=0.05, name=DEAD).start_in_thread():
        wait_until(lambda: final_hook_calls or len(receipts(app)) == 2, timeout=20)

    discarded = app.get_job(job.id)
    assert discarded is not None and discarded.state is JobState.DISCARDED
    assert final_hook_calls == []
    assert TRAIL == ["reserve@1", "charge@1", "ship@1"]  # nothing undone, nothing rerun
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "succeeded"
    [event] = full.events_of("run.already_succeeded")
    assert event.detail is not None and event.detail["follow_ups"] == 2


def test_a_completed_job_retried_by_hand_runs_its_saga_again(
    make_app: Callable[..., App],
) -> None:
    """The rule covers lost completions, not an operator's wish: ``retry_job`` on a completed
    saga job runs the saga again, as a retried job runs again in Oban."""
    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-4"}))
    assert run_on_a_node(app, job.id).state is JobState.COMPLETED

    app.retry_job(job.id)
    finished = run_on_a_node(app, job.id)

    assert finished.state is JobState.COMPLETED and finished.attempt == 2
    assert TRAIL == ["reserve@1", "charge@1", "ship@1", "reserve@2", "charge@2", "ship@2"]
    runs = list_runs(app, job_id=job.id)
    assert [(r.attempt, r.status) for r in runs] == [(2, "succeeded"), (1, "succeeded")]
    assert len(receipts(app)) == 4  # each run's follow-ups, once each


def test_retrying_a_retryable_job_by_hand_keeps_its_succeeded_run_final(
    make_app: Callable[..., App],
) -> None:
    """A retryable job's retry only brings its next attempt forward; its saga had succeeded
    (the attempt then failed writing, say), so that attempt still runs no step."""
    from tests.plugins.support import update_job

    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-5"}))
    die_after_the_run(app, job.id)
    update_job(app, job.id, state="retryable")

    assert app.retry_job(job.id)
    stored = app.get_job(job.id)
    assert stored is not None and "retried_after_attempt" not in stored.meta
    finished = run_on_a_node(app, job.id)

    assert finished.state is JobState.COMPLETED
    assert TRAIL == ["reserve@1", "charge@1", "ship@1"]
    assert len(receipts(app)) == 2


def test_after_a_retry_by_hand_the_old_succeeded_run_does_not_settle_an_orphan(
    make_app: Callable[..., App],
) -> None:
    """The last attempt after a retry by hand dies: its own run is the one to settle (roll
    back, hook), not the run that succeeded before the retry (its follow-ups were inserted
    when it completed; inserting them again would duplicate them)."""
    import asyncio

    from jobsaga import _context

    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-6"}))
    assert run_on_a_node(app, job.id).state is JobState.COMPLETED
    assert app.retry_job(job.id)
    retried = app.get_job(job.id)
    assert retried is not None and retried.meta["retried_after_attempt"] == 1

    async def settle() -> bool:
        _context.current_app.set(app)
        return await ShipmentWorker().finish_succeeded_orphan(retried)

    assert asyncio.run(settle()) is False
    assert len(receipts(app)) == 2  # only the first run's, inserted at its completion


def test_a_succeeded_run_completes_its_job_even_when_its_event_cannot_be_written(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run.already_succeeded`` only explains: an events table refusing it must not fail
    the attempt of a saga that succeeded (nor keep it waiting on the log's retries, which
    go on for 30 s: the flush is cut at the interrupt bound, shortened here from 5 s)."""
    from jobsaga.workflow import executor
    from tests.workflow.test_runlog_faults import refuse_step_writes

    monkeypatch.setattr(executor, "INTERRUPT_FLUSH_TIMEOUT", 0.5)
    app = make_app(ShipmentWorker, Receipt)
    job = app.insert(ShipmentWorker.new({"order": "o-7"}))
    die_after_the_run(app, job.id)
    restore = refuse_step_writes(db_url, "jobsaga_workflow_events")
    try:
        finished = run_on_a_node(app, job.id)
    finally:
        restore()

    assert finished.state is JobState.COMPLETED and finished.attempt == 2
    assert TRAIL == ["reserve@1", "charge@1", "ship@1"]
    assert len(receipts(app)) == 2
