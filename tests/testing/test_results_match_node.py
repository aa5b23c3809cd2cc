"""What ``perform_job`` does with a return value is what a node does with it: the toolkit
classifies with the runtime's own rule, so a test is neither stricter nor looser than
production. Each value of the table is returned once through a real node and once through
``perform_job`` (with and without an app), on both engines, and must end the same way."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel

from jobsaga import App, Cancel, Complete, Discard, Error, Job, JobState, Snooze, Worker
from jobsaga.errors import InvalidResult
from jobsaga.testing import perform_job
from tests.helpers import wait_until


class Point(BaseModel):
    x: int


RETURNS: dict[str, tuple[Any, str]] = {
    # case: (what perform returns, the state a node leaves the job in)
    "none": (None, "completed"),
    "int": (3, "completed"),
    "text": ("done", "completed"),
    "list": ([1, "a"], "completed"),
    "dict": ({"k": [1, None]}, "completed"),
    "set": ({1, 2}, "completed"),
    "datetime": (datetime(2030, 1, 1, tzinfo=UTC), "completed"),
    "model": (Point(x=1), "completed"),
    "object": (object(), "completed"),
    "other class": (int, "completed"),
    "complete": (Complete(value={"id": 1}), "completed"),
    "snooze": (Snooze(600), "scheduled"),
    "discard": (Discard("gone"), "discarded"),
    "cancel": (Cancel("stop"), "cancelled"),
    "error": (Error("try later"), "retryable"),
    "the Snooze class": (Snooze, "retryable"),
    "the Complete class": (Complete, "retryable"),
}
"""Every kind of value a perform may return: results, JSON values, values that are not JSON,
and classes (a result class instead of an instance is the one thing refused)."""


class Returns(Worker, max_attempts=5):
    class Args(BaseModel):
        case: str

    def perform(self, job: Job[Any]) -> Any:
        return RETURNS[job.args.case][0]


Outcome = tuple[str, str | None, bool]
"""The job's state, the kind of error its attempt recorded (if any), and whether the test
sees the return value refused."""


def outcome(job: Job[Any] | None, refused: bool | None = None) -> Outcome:
    """The job's outcome; ``refused`` is, unless given, what the node says: an attempt that
    failed with ``InvalidResult``."""
    assert job is not None
    error = job.errors[-1]["error"].split(":")[0] if job.errors else None
    return job.state.value, error, error == "InvalidResult" if refused is None else refused


def through_a_node(app: App) -> dict[str, Outcome]:
    ids = {case: app.insert(Returns.new({"case": case})).id for case in RETURNS}
    waiting = (JobState.AVAILABLE, JobState.EXECUTING)

    def settled() -> bool:
        jobs = [app.get_job(job_id) for job_id in ids.values()]
        return all(job is not None and job.state not in waiting for job in jobs)

    with app.node({"default": 4}, poll_interval=0.05).start_in_thread():
        wait_until(settled)
    return {case: outcome(app.get_job(job_id)) for case, job_id in ids.items()}


def through_perform_job(app: App, case: str) -> Outcome:
    """``perform_job`` with the app (the job's row shows the outcome), checked against
    ``perform_job`` without one: both return what perform returned, or both raise."""
    value = RETURNS[case][0]
    raised: list[type[BaseException]] = []
    for on in (app, None):
        try:
            assert perform_job(Returns, {"case": case}, app=on) is value
        except InvalidResult:
            raised.append(InvalidResult)
    assert raised in ([], [InvalidResult, InvalidResult]), case
    (job,) = app.list_jobs(limit=1)  # the newest: the one perform_job stored just now
    assert job.raw_args == {"case": case}
    return outcome(job, refused=bool(raised))


def test_perform_job_ends_each_return_value_as_a_node_does(app: App) -> None:
    app.register(Returns)
    # the toolkit's jobs first: none of them is left available for the node to run again
    by_toolkit = {case: through_perform_job(app, case) for case in RETURNS}
    by_node = through_a_node(app)
    assert by_toolkit == by_node
    assert {case: state for case, (state, _error, _refused) in by_node.items()} == {
        case: state for case, (_value, state) in RETURNS.items()
    }
    refused = {case for case, (_state, _error, refused) in by_toolkit.items() if refused}
    assert refused == {"the Snooze class", "the Complete class"}
