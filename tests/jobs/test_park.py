"""``Park``: a job waits, without using up an attempt, until something outside sets it going
(a halted saga's resume); both engines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from jobsaga import App, ArgsError, Job, JobState, Worker
from jobsaga.plugins.pruner import prune_batch
from jobsaga.results import Park
from jobsaga.testing import perform_job
from tests.helpers import wait_until

RUNS: list[int] = []


class Parks(Worker, name="tests.park.parks", max_attempts=1):
    def perform(self, job: Job[Any]) -> Park:
        RUNS.append(job.attempt)
        return Park({"waiting_for": "approval", "ticket": 7})


def test_a_parked_job_waits_unfinished_with_its_attempt_given_back(
    make_app: Callable[..., App],
) -> None:
    RUNS.clear()
    app = make_app(Parks)
    inserted = app.insert(Parks.new({}, meta={"kept": True}))
    with app.node({"default": 1}, poll_interval=0.05, stage_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(inserted.id).state is JobState.SCHEDULED)  # type: ignore[union-attr]
        assert app.engine.stage() == set()  # never due by itself
    job = app.get_job(inserted.id)
    assert job is not None
    assert job.attempt == 0 and not job.errors  # max_attempts=1: still one attempt left
    assert job.meta == {"kept": True, "waiting_for": "approval", "ticket": 7}
    assert job.scheduled_at > app.clock() + timedelta(days=365 * 99)
    assert prune_batch(app, app.clock() + timedelta(days=1), 100) == []  # not finished
    assert RUNS == [1]


def test_perform_job_shows_a_park(make_app: Callable[..., App]) -> None:
    assert perform_job(Parks) == Park({"waiting_for": "approval", "ticket": 7})


def test_park_meta_must_be_json() -> None:
    with pytest.raises(ArgsError, match="Park: meta"):
        Park({"when": object()})
