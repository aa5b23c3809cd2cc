"""The pruner deletes finished jobs older than the configured age, and nothing else."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import jobsaga
from jobsaga import App, Worker
from jobsaga.plugins.pruner import prune_jobs
from tests.helpers import wait_until

from .support import FINISHED_AT, FakeClock, job_reached, param, rows, update_job


class Noop(Worker, name="tests.pruner.Noop"):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        return None


MAX_AGE = 3600.0


def job_in(app: App, state: str, at_age: float, clock: FakeClock) -> int:
    return job_reached(app, Noop.new(), state, clock() - timedelta(seconds=at_age))


def ids(app: App) -> set[int]:
    return {int(r["id"]) for r in rows(app, "SELECT id FROM jobsaga_jobs")}


@pytest.mark.parametrize("state", sorted(FINISHED_AT))
def test_boundary_per_final_state(make_app: Callable[..., App], state: str) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    older = job_in(app, state, MAX_AGE + 0.5, clock)
    younger = job_in(app, state, MAX_AGE - 0.5, clock)
    assert prune_jobs(app, MAX_AGE, 100) == 1
    assert ids(app) == {younger} and older not in ids(app)
    clock.advance(1)  # now the other one is just older
    assert prune_jobs(app, MAX_AGE, 100) == 1
    assert ids(app) == set()


@pytest.mark.parametrize("state", ["available", "scheduled", "executing", "retryable"])
def test_other_states_are_never_pruned(make_app: Callable[..., App], state: str) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    job_id = job_in(app, state, 365 * 86400, clock)
    if state == "executing":
        update_job(app, job_id, attempted_at=clock() - timedelta(days=365), attempted_by="x")
    assert prune_jobs(app, 1.0, 100) == 0
    assert ids(app) == {job_id}


def test_the_time_that_counts_is_the_current_final_state(make_app: Callable[..., App]) -> None:
    """A job retried after it was discarded long ago, then cancelled just now, is young."""
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    job_id = job_in(app, "cancelled", 10, clock)
    update_job(app, job_id, discarded_at=clock() - timedelta(days=300))
    assert prune_jobs(app, MAX_AGE, 100) == 0


def test_bounded_batches_and_workflow_runs_go_with_their_job(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    old = [job_in(app, "completed", MAX_AGE * 2, clock) for _ in range(7)]
    keep = job_in(app, "completed", 1, clock)
    now = app.engine.time_param(clock())
    with app.engine.transaction() as tx:
        tx.execute(
            "INSERT INTO jobsaga_workflow_runs (workflow, job_id, status, started_at, updated_at)"
            f" VALUES ('w', {param(app, 'job')}, 'succeeded', {param(app, 'now')},"
            f" {param(app, 'now')})",
            {"job": old[0], "now": now},
        )
    assert prune_jobs(app, MAX_AGE, 3) == 3
    assert prune_jobs(app, MAX_AGE, 3) == 3
    assert prune_jobs(app, MAX_AGE, 3) == 1
    assert ids(app) == {keep}
    assert rows(app, "SELECT id FROM jobsaga_workflow_runs") == []


def test_node_prunes_as_leader(make_app: Callable[..., App]) -> None:
    app = make_app(Noop)
    events: list[dict[str, Any]] = []
    app.telemetry.attach("t", "plugin.pruner.stop", lambda e, m, md: events.append(dict(m)))
    done = app.insert(Noop.new())
    node = app.node(poll_interval=0.05, prune_after=0.3, prune_interval=0.1, prune_limit=2)
    with node.start_in_thread():
        wait_until(lambda: done.id not in ids(app), 10)
    assert sum(m["deleted"] for m in events) == 1
