"""``Complete(enqueue=[...])``: follow-up jobs exist only once the completion is written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Complete, Job, JobState, Worker
from tests.helpers import wait_until


class FollowUp(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Parent(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> Complete:
        return Complete("done", enqueue=(FollowUp.new({"parent": job.id}),))


def test_follow_ups_are_inserted_with_the_completion(make_app: Callable[..., App]) -> None:
    app = make_app(Parent, FollowUp)
    parent = app.insert(Parent.new({}))
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.engine.queue_counts().get("default", {}).get("completed") == 2)
    assert app.get_job(parent.id).state is JobState.COMPLETED  # type: ignore[union-attr]
    with app.engine.transaction() as tx:
        rows = tx.execute("SELECT worker, args FROM jobsaga_jobs ORDER BY id")
    assert [r["worker"] for r in rows] == [Parent.name, FollowUp.name]
    assert app.engine.stored_json(rows[1]["args"]) == {"parent": parent.id}


def test_complete_rejects_anything_but_built_jobs() -> None:
    with pytest.raises(TypeError, match="Worker.new"):
        Complete(enqueue=({"not": "a job"},))  # type: ignore[arg-type]


class CancelledWhileRunning(Worker, queue="default"):
    """Stands in for an operator cancelling the job while it runs."""

    app: App | None = None

    def perform(self, job: Job[Any]) -> Complete:
        assert CancelledWhileRunning.app is not None
        with CancelledWhileRunning.app.engine.transaction() as tx:
            tx.execute(
                "UPDATE jobsaga_jobs SET state = 'cancelled' WHERE id = "
                + ("%(id)s" if CancelledWhileRunning.app.engine.dialect == "postgres" else ":id"),
                {"id": job.id},
            )
        return Complete(enqueue=(FollowUp.new({"parent": job.id}),))


def test_no_follow_ups_when_the_completion_is_not_written(make_app: Callable[..., App]) -> None:
    app = make_app(CancelledWhileRunning, FollowUp)
    CancelledWhileRunning.app = app
    job = app.insert(CancelledWhileRunning.new({}))
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.engine.queue_counts().get("default", {}).get("cancelled") == 1)
    assert app.get_job(job.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert app.engine.queue_counts() == {"default": {"cancelled": 1}}
