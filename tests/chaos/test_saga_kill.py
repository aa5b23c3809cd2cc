"""kill -9 between a saga's success and its job's completion (issue 9, fault 1).

The worker process SIGKILLs itself from a ``workflow.stop`` telemetry handler on the saga's
first attempt: the run is recorded ``succeeded``, the job's completion is not written yet.
After the rescue, no step may run again, the job completes, and the follow-up job the saga
registered (``enqueue_after_success``) is inserted exactly once."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from jobsaga import App

from .chaos_app import KillSaga, KillSagaWorker, Record, read_log
from .chaos_app import app as chaos_app
from .nodes import Nodes
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-nodes")]


def test_kill_between_saga_success_and_job_completion_runs_no_step_twice(
    db_url: str, make_app: Callable[..., App], make_nodes: Callable[..., Nodes], engine_name: str
) -> None:
    app = make_app(*chaos_app.workers.values(), workflows=[KillSaga])
    probe = Probe(db_url)
    nodes = make_nodes(db_url)
    probe.context = nodes.logs
    saga = app.insert(KillSagaWorker.new({"order": "o-1"}))
    victim = nodes.start("victim", {"saga": 1}, env={"JOBSAGA_CHAOS_KILL_ON_STOP": "1"}, wait=None)
    victim.process.wait(20)  # it kills itself once the run has succeeded
    died = time.monotonic()
    log = read_log(nodes.chaos_log)
    assert ["killed", str(saga.id)] == log[-1][:2], log
    assert probe.jobs(KillSagaWorker.name)[0]["state"] == "executing"

    nodes.start("survivor", {"saga": 1, "work": 2})
    probe.wait_for(
        lambda: probe.states(KillSagaWorker.name) == {"completed": 1}, 20, "saga job completed"
    )
    completed_in = time.monotonic() - died
    probe.wait_for(lambda: probe.states(Record.name) == {"completed": 1}, 10, "follow-up ran")

    steps = Counter(line[2] for line in read_log(nodes.chaos_log) if line[0] == "step")
    follow_ups = [j for j in probe.jobs(Record.name) if j["args"].get("follow_up_of") == saga.id]
    runs = probe.query(
        "SELECT status FROM jobsaga_workflow_runs WHERE job_id = %s ORDER BY id", [saga.id]
    )
    job = probe.jobs(KillSagaWorker.name)[0]
    report(
        "kill_between_saga_success_and_completion",
        engine=engine_name,
        steps_run=dict(steps),
        runs=[r[0] for r in runs],
        follow_ups=len(follow_ups),
        attempts=job["attempt"],
        completed_seconds_after_kill=round(completed_in, 2),
    )
    assert dict(steps) == {"reserve": 1, "charge": 1, "ship": 1}, "a step ran twice"
    assert [r[0] for r in runs] == ["succeeded"]
    assert len(follow_ups) == 1
    assert job["state"] == "completed"
