"""The toolkit runs what a node runs and selects what the operations select: what perform
returned comes from the executor (whatever the method's name), a built job is the one an
insert stores, the assertions match with the operations' job filter on both engines, and a
drain's follow-ups are announced as a node announces them."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from jobsaga import App, Complete, Job, JobState, Worker, Workflow, step
from jobsaga.testing import (
    all_enqueued,
    arun_workflow,
    assert_enqueued,
    build_job,
    drain_queue,
    perform_job,
    refute_enqueued,
    run_workflow,
)


def _total(self: Worker, job: Job[Any]) -> Any:
    return {"total": job.args["a"] + job.args["b"]}


class Aliased(Worker):
    """Its perform is a function of another name."""

    perform = _total


def logged(fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(self: Worker, job: Job[Any]) -> Any:  # no functools.wraps: named "wrapper"
        return fn(self, job)

    return wrapper


class Decorated(Worker):
    @logged
    def perform(self, job: Job[Any]) -> Any:
        return [job.args["x"], "done"]


class Partial(Worker):
    perform = functools.partialmethod(_total)  # type: ignore[assignment]


class FanOut(Worker):
    def perform(self, job: Job[Any]) -> Any:
        return Complete(enqueue=(Aliased.new({"a": 1, "b": 2}, queue="elsewhere"),))


class Actor(BaseModel):
    id: int
    role: str


class Share(Worker, queue="reports"):
    class Args(BaseModel):
        report: int
        actor: Actor

    def perform(self, job: Job[Any]) -> None:
        return None


def test_what_perform_returned_whatever_its_name(app: App) -> None:
    assert perform_job(Aliased, {"a": 1, "b": 2}) == {"total": 3}
    assert perform_job(Decorated, {"x": 1}) == [1, "done"]
    assert perform_job(Partial, {"a": 2, "b": 2}) == {"total": 4}
    assert perform_job(Decorated, {"x": 2}, app=app) == [2, "done"]
    (job,) = app.list_jobs(worker=Decorated)
    assert (job.state, job.attempt) == (JobState.COMPLETED, 1)


def test_a_built_job_is_the_one_an_insert_stores_claimed_for_its_attempt() -> None:
    job = build_job(Aliased, {"a": 1, "b": (2,)}, attempt=2, schedule_in=60, meta={"k": [1]})
    assert (job.state, job.attempt, job.attempted_by) == (JobState.EXECUTING, 2, "jobsaga.testing")
    assert job.scheduled_at == job.inserted_at + timedelta(seconds=60)
    assert job.attempted_at == job.inserted_at
    assert job.args == {"a": 1, "b": [2]} and job.meta == {"k": [1]}  # as stored: JSON
    assert build_job(Aliased, {"a": 1, "b": 2}).id != job.id


def test_assertions_take_the_filters_criteria(app: App) -> None:
    app.register(Aliased, Share)
    actor = Actor(id=5, role="admin")
    first = app.insert(Aliased.new({"a": 1, "b": [1, 2]}, priority=2, meta={"by": {"id": 5}}))
    second = app.insert(Share.new({"report": 10, "actor": actor}, schedule_in=300))
    assert all_enqueued(app, priority=[2, 3]) == [first]
    assert all_enqueued(app, worker=[Aliased, Share]) == [second, first]
    assert all_enqueued(app, queue=["reports", "mailers"]) == [second]
    assert assert_enqueued(app, args={"actor": actor}) == second  # a model, as it is stored
    assert assert_enqueued(app, args={"b": [1, 2]}, meta={"by": {}}) == first
    refute_enqueued(app, args={"b": [1]})  # arrays are equal whole
    refute_enqueued(app, priority=5)
    # the scheduled window is inclusive, to the microsecond, on both engines
    assert assert_enqueued(app, scheduled_at=second.scheduled_at, delta=0) == second
    refute_enqueued(app, scheduled_at=second.scheduled_at + timedelta(microseconds=1), delta=0)
    assert assert_enqueued(app, schedule_in=300, delta=5) == second
    with pytest.raises(AssertionError, match=r"(?s)found none.*#1 .*Aliased.*priority=2"):
        assert_enqueued(app, priority=7)
    with pytest.raises(TypeError, match="unknown enqueued-job criteria: prio"):
        all_enqueued(app, prio=1)


class Fails(Worker, max_attempts=3):
    def perform(self, job: Job[Any]) -> None:
        raise RuntimeError("again")


def test_all_enqueued_lists_the_newest_first_and_only_jobs_waiting_to_run(app: App) -> None:
    app.register(Aliased, Fails)
    older = app.insert(Aliased.new({"a": 1, "b": 1}, schedule_in=60))  # scheduled
    failed = app.insert(Fails.new())
    done = app.insert(Aliased.new({"a": 2, "b": 2}))
    cancelled = app.insert(Aliased.new({"a": 3, "b": 3}))
    newer = app.insert(Aliased.new({"a": 4, "b": 4}))  # available
    assert drain_queue(app, with_limit=2) == {
        "completed": 1,
        "retryable": 1,
        "snoozed": 0,
        "cancelled": 0,
        "discarded": 0,
    }  # the failed job is retryable, the done one completed
    assert app.cancel_job(cancelled.id)
    # newest first, as Oban's: the retryable job waits to run again, so it is enqueued too
    assert [job.id for job in all_enqueued(app)] == [newer.id, failed.id, older.id]
    assert [job.id for job in all_enqueued(app, worker=Aliased)] == [newer.id, older.id]
    assert assert_enqueued(app, worker=Aliased).id == newer.id  # the first all_enqueued lists
    refute_enqueued(app, args={"a": 2})  # completed: not waiting
    with pytest.raises(AssertionError, match=rf"(?s)#{newer.id} .*#{failed.id} .*#{older.id} "):
        assert_enqueued(app, priority=7)  # the failure lists them in the same order
    assert done.id not in {job.id for job in all_enqueued(app)}


def test_a_drain_announces_follow_ups_as_a_node_does(app: App) -> None:
    app.register(FanOut, Aliased)
    heard: list[Mapping[str, Any]] = []
    app.add_listener(heard.append)
    app.insert(FanOut.new())
    heard.clear()  # the insert's own wake-up
    assert drain_queue(app)["completed"] == 1
    assert heard == [{"queues": ["elsewhere"], "scheduled": True}]
    assert_enqueued(app, worker=Aliased, queue="elsewhere")


class Pair(Workflow, inputs=["n"]):
    @step
    async def double(self, n: int) -> int:
        await asyncio.sleep(0)
        return n * 2

    @step
    def report(self, double: int) -> str:
        return f"got {double}"


def test_run_workflow_from_sync_and_async_tests(app: App) -> None:
    assert run_workflow(Pair, {"n": 2}).value == "got 4"
    persisted = run_workflow(Pair, {"n": 3}, app=app)
    assert persisted.run is not None and persisted.run.id is not None

    async def main() -> None:
        result = await arun_workflow(Pair, {"n": 4})
        assert result.value == "got 8" and result.run is not None and result.run.id is None
        assert run_workflow(Pair, {"n": 5}).value == "got 10"  # a private loop, as perform_job

    asyncio.run(main())
