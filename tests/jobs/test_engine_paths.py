"""The engine's single-statement path (fetch, acknowledgement) leaves its connection as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Job, Worker
from tests.jobs.conftest import count_jobs


class Noop(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_execute_one_then_transactions_still_roll_back(make_app: Callable[..., App]) -> None:
    app = make_app(Noop, pool_size=1)  # one connection: the next transaction reuses it
    engine = app.engine
    assert engine.execute_one("SELECT 1 AS one") == [{"one": 1}]
    with pytest.raises(Exception, match="jobsaga_nope"):
        engine.execute_one("SELECT 1 / 0 AS boom FROM jobsaga_nope")
    assert engine.execute_one("SELECT 2 AS two") == [{"two": 2}]
    with pytest.raises(RuntimeError, match="undo"), engine.transaction() as tx:
        engine.insert_in(tx, [Noop.new()])
        raise RuntimeError("undo")
    assert count_jobs(app) == 0  # the insert was rolled back: not autocommitted
    app.insert(Noop.new())
    [fetched] = engine.fetch("default", 5, "n1")
    assert engine.fetch("default", 5, "n2") == []
    assert fetched.attempted_by == "n1"
