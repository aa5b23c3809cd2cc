"""Fetch order (priority, then scheduled time, then id) and scheduled jobs' start times."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobsaga import App, ArgsError, Job, JobState, Worker
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, job, wait_final


class Records(Worker):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add(job.args["label"])


class Timed(Worker):
    def perform(self, job: Job[Any]) -> None:
        SEEN.add((job.args["label"], time.time()))


def test_fetch_order_is_priority_then_scheduled_time_then_id(
    make_app: Callable[..., App],
) -> None:
    app = make_app(Records)
    now = datetime.now(UTC)
    earlier, earliest = now - timedelta(minutes=1), now - timedelta(minutes=2)
    app.insert_all(
        [
            Records.new({"label": "p5"}, priority=5),
            Records.new({"label": "p0-now-a"}, priority=0),
            Records.new({"label": "p0-earlier"}, priority=0, scheduled_at=earlier),
            Records.new({"label": "p9"}, priority=9),
            Records.new({"label": "p0-now-b"}, priority=0),
            Records.new({"label": "p0-earliest"}, priority=0, scheduled_at=earliest),
            Records.new({"label": "p1-earliest"}, priority=1, scheduled_at=earliest),
        ]
    )
    # Same priority and time for the "now" pair: insertion (id) order decides.
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: len(SEEN.items()) == 7)
    assert SEEN.items() == [
        "p0-earliest",
        "p0-earlier",
        "p0-now-a",
        "p0-now-b",
        "p1-earliest",
        "p5",
        "p9",
    ]


def test_one_batch_fetch_also_runs_in_order(make_app: Callable[..., App]) -> None:
    """Jobs fetched together start in fetch order."""
    app = make_app(Records)
    app.insert_all([Records.new({"label": p}, priority=p) for p in (3, 1, 2, 0)])
    engine = app.engine
    fetched = engine.fetch("default", 10, "n1")
    assert [j.priority for j in fetched] == [0, 1, 2, 3]
    assert all(j.state is JobState.EXECUTING and j.attempt == 1 for j in fetched)
    assert all(j.attempted_by == "n1" for j in fetched)
    assert engine.fetch("default", 10, "n2") == []


def test_scheduled_job_starts_on_time(make_app: Callable[..., App]) -> None:
    app = make_app(Timed)
    with app.node({"default": 2}, poll_interval=0.05, stage_interval=1.0).start_in_thread():
        inserted = time.time()
        stored = app.insert(Timed.new({"label": "later"}, schedule_in=0.4))
        assert stored.state is JobState.SCHEDULED
        time.sleep(0.2)
        assert job(app, stored.id).state is JobState.SCHEDULED  # not before its time
        assert wait_final(app, stored.id).state is JobState.COMPLETED
    [(_, started)] = SEEN.items()
    assert started >= inserted + 0.4
    assert started - (inserted + 0.4) < 0.5, started - inserted  # promptly after


def test_scheduled_at_in_the_future(make_app: Callable[..., App]) -> None:
    app = make_app(Timed)
    at = datetime.now(UTC) + timedelta(seconds=0.3)
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        stored = app.insert(Timed.new({"label": "at"}, scheduled_at=at))
        assert stored.scheduled_at == at
        wait_final(app, stored.id)
    [(_, started)] = SEEN.items()
    assert at.timestamp() <= started < at.timestamp() + 0.5


def test_scheduled_jobs_wait_for_their_own_times(make_app: Callable[..., App]) -> None:
    """A job due later does not hold back one due sooner, nor start with it."""
    app = make_app(Records)
    with app.node({"default": 4}, poll_interval=0.05).start_in_thread():
        late = app.insert(Records.new({"label": "late"}, schedule_in=30))
        soon = app.insert(Records.new({"label": "soon"}, schedule_in=0.2))
        wait_final(app, soon.id)
        time.sleep(0.1)
        assert job(app, late.id).state is JobState.SCHEDULED
    assert SEEN.items() == ["soon"]


def test_schedule_options_are_checked() -> None:
    with pytest.raises(ArgsError, match="not both"):
        Records.new(schedule_in=1, scheduled_at=datetime.now(UTC))
    with pytest.raises(ArgsError, match="timezone"):
        Records.new(scheduled_at=datetime.now())
    with pytest.raises(ArgsError, match="schedule_in"):
        Records.new(schedule_in=-1)
    assert Records.new(schedule_in=timedelta(minutes=1)).schedule_in == 60.0
