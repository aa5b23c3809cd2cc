"""The index that finds a run's follow-up jobs (migration 0007) must never make a job row
unwritable: its expression runs on every insert and update of the jobs table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, Job, Worker
from jobsaga.workflow.records import follow_up_jobs
from tests.jobs.conftest import param


class Note(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_follow_ups_are_found_by_their_run_and_odd_meta_is_harmless(
    make_app: Callable[..., App],
) -> None:
    app = make_app(Note)
    linked = app.insert(Note.new({}, meta={"enqueued_by_run": 7}))
    # a user's own meta may hold anything under that key: a cast in the index would refuse it
    odd = app.insert(Note.new({}, meta={"enqueued_by_run": "not-a-number"}))
    app.insert(Note.new({}, meta={"other": 1}))
    app.insert(Note.new({}, meta={"enqueued_by_run": "7"}))  # a string is not the run's id

    assert [j.id for j in follow_up_jobs(app, 7)] == [linked.id]
    assert follow_up_jobs(app, 8) == []
    assert app.cancel_job(odd.id)


def test_the_lookup_uses_the_partial_index(make_app: Callable[..., App]) -> None:
    app = make_app(Note)
    app.insert(Note.new({}, meta={"enqueued_by_run": 7}))
    explain = "EXPLAIN QUERY PLAN " if app.engine.dialect == "sqlite" else "EXPLAIN "
    with app.engine.transaction() as tx:
        if app.engine.dialect == "postgres":
            tx.execute("SET LOCAL enable_seqscan = off")  # a tiny table would be scanned
        plan = tx.execute(explain + app.engine.queries["follow_up_jobs"], {"run_id": 7})
    assert "jobsaga_jobs_enqueued_by_run_idx" in " ".join(str(dict(r)) for r in plan)


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)  # jsonb holds only JSON
def test_meta_that_is_not_json_still_updates_on_sqlite(make_app: Callable[..., App]) -> None:
    """SQLite stores meta as text, so a hand-made row can hold anything; json_extract in the
    index would raise on it and its outcome could never be written."""
    app = make_app(Note)
    job = app.insert(Note.new({}))
    with app.engine.transaction() as tx:
        tx.execute(
            f"UPDATE jobsaga_jobs SET meta = {param(app, 'v')} WHERE id = {param(app, 'id')}",
            {"v": '{"enqueued_by_run": 7', "id": job.id},
        )
    assert app.cancel_job(job.id)
    assert follow_up_jobs(app, 7) == []
