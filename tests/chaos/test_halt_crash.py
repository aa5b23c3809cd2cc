"""Halt, kill -9, resume (issue 13, item 7), with real ``jobsaga worker`` processes on both
engines: a halted run is durable, a resume from another process sets it going, and no step
the log recorded runs twice, whichever moment of the halt the node died in.

The steps note each execution in the chaos log (see :mod:`.halt_app`): counting side effects
outside the database is how "ran once" is told from "ran twice"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from jobsaga import App
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.resuming import resume_run

from .chaos_app import Record, read_log
from .halt_app import HaltSaga, HaltSagaWorker
from .nodes import Nodes
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-nodes")]

APP = "tests.chaos.halt_app:app"


def steps_run(nodes: Nodes) -> dict[str, int]:
    return dict(Counter(line[2] for line in read_log(nodes.chaos_log) if line[0] == "step"))


def run_status(app: App, job_id: int) -> str | None:
    runs = list_runs(app, job_id=job_id, top_level=True, limit=1)
    return runs[0].status if runs else None


def parked(app: App, job_id: int) -> bool:
    job = app.get_job(job_id)
    return job is not None and job.state.value == "scheduled" and "halted_run" in job.meta


def finish_after_resume(
    app: App, probe: Probe, nodes: Nodes, job_id: int, run_id: int, name: str
) -> None:
    """Resume from the test (another process than any node), start a fresh node, wait until
    the saga's job and its follow-up completed."""
    resume_run(app, run_id, {"approved": True}, reason="approved")
    nodes.start(name, {"saga": 2, "work": 2})
    probe.wait_for(
        lambda: probe.states(HaltSagaWorker.name) == {"completed": 1}, 30, "saga job completed"
    )
    probe.wait_for(lambda: probe.states(Record.name) == {"completed": 1}, 15, "follow-up ran")


def test_halt_kill_then_resume_in_a_new_process(
    db_url: str, make_app: Callable[..., App], make_nodes: Callable[..., Nodes], engine_name: str
) -> None:
    app = make_app(HaltSagaWorker, Record, workflows=[HaltSaga])
    probe = Probe(db_url)
    nodes = make_nodes(db_url, app=APP)
    probe.context = lambda: nodes.log("first")
    job = app.insert(HaltSagaWorker.new({"order": "o-1"}))
    nodes.start("first", {"saga": 2, "work": 2})
    probe.wait_for(lambda: parked(app, job.id), 30, "saga job parked")
    assert run_status(app, job.id) == "halted"
    nodes.kill9("first")
    [run] = list_runs(app, job_id=job.id, top_level=True)
    assert run.id is not None

    finish_after_resume(app, probe, nodes, job.id, run.id, "second")
    record = get_run(app, run.id)
    assert record is not None and record.status == "succeeded"
    assert record.step("approve").result == {"ticket": "t-r-o-1"}
    shipped = [line for line in read_log(nodes.chaos_log) if line[0] == "shipped"]
    report("halt_kill_resume", engine=engine_name, steps_run=steps_run(nodes))
    assert steps_run(nodes) == {"reserve": 1, "approve": 1, "audit": 1, "ship": 1}
    assert shipped == [["shipped", str(job.id), "t-r-o-1"]]  # ship got the halt value


def test_kill_between_the_run_halting_and_the_job_parking(
    db_url: str, make_app: Callable[..., App], make_nodes: Callable[..., Nodes], engine_name: str
) -> None:
    """The node dies after the run log says ``halted``, before the job's parking is
    written: the lifeline gives the job another attempt, which must park it again (no step
    runs, the run stays halted) rather than resume a run nobody resumed."""
    app = make_app(HaltSagaWorker, Record, workflows=[HaltSaga])
    probe = Probe(db_url)
    nodes = make_nodes(db_url, app=APP)
    probe.context = lambda: nodes.log("victim") + nodes.log("rescuer")
    job = app.insert(HaltSagaWorker.new({"order": "o-2"}))
    # not waited for ready: it may halt the run and kill itself before its heartbeat lands
    victim = nodes.start(
        "victim", {"saga": 2, "work": 2}, env={"JOBSAGA_HALT_KILL": "1"}, wait=None
    )
    victim.process.wait(30)  # it kills itself once the run has halted
    assert ["killed", str(job.id)] == read_log(nodes.chaos_log)[-1][:2]
    assert run_status(app, job.id) == "halted"
    assert probe.jobs(HaltSagaWorker.name)[0]["state"] == "executing"  # not parked

    nodes.start("rescuer", {"saga": 2, "work": 2})
    probe.wait_for(lambda: parked(app, job.id), 30, "saga job parked again after the rescue")
    assert run_status(app, job.id) == "halted"
    assert steps_run(nodes) == {"reserve": 1, "approve": 1, "audit": 1}, "a step ran again"
    assert not [line for line in read_log(nodes.chaos_log) if line[0] == "shipped"]
    nodes.kill9("rescuer")

    [run] = list_runs(app, job_id=job.id, top_level=True)
    assert run.id is not None
    finish_after_resume(app, probe, nodes, job.id, run.id, "finisher")
    report("kill_between_halt_and_park", engine=engine_name, steps_run=steps_run(nodes))
    assert steps_run(nodes) == {"reserve": 1, "approve": 1, "audit": 1, "ship": 1}


def test_kill_while_a_sibling_is_awaited_after_the_halt(
    db_url: str,
    make_app: Callable[..., App],
    make_nodes: Callable[..., Nodes],
    engine_name: str,
    tmp_path: Path,
) -> None:
    """The node dies after ``approve`` halted, while ``audit`` (its sibling) still runs: the
    lifeline rescues the job, whose next attempt halts again without re-running a recorded
    step (``audit``, whose outcome the crash left unknown, may run again)."""
    app = make_app(HaltSagaWorker, Record, workflows=[HaltSaga])
    probe = Probe(db_url)
    nodes = make_nodes(db_url, app=APP)
    probe.context = lambda: nodes.log("victim") + nodes.log("rescuer")
    hold = tmp_path / "release-audit"
    job = app.insert(HaltSagaWorker.new({"order": "o-3", "hold": str(hold)}))
    nodes.start("victim", {"saga": 2, "work": 2})

    def approve_halted() -> bool:
        runs = list_runs(app, job_id=job.id, top_level=True, limit=1)
        if not runs or runs[0].id is None:
            return False
        record = get_run(app, runs[0].id)
        return record is not None and bool(record.events_of("step.halted"))

    probe.wait_for(approve_halted, 30, "approve halted, audit in flight")
    assert run_status(app, job.id) == "running"  # the halt waits for audit
    assert steps_run(nodes) == {"reserve": 1, "approve": 1, "audit": 1}
    nodes.kill9("victim")
    hold.touch()  # audit ends at once when it runs again

    nodes.start("rescuer", {"saga": 2, "work": 2})
    probe.wait_for(lambda: parked(app, job.id), 30, "saga job parked after the rescue")
    assert run_status(app, job.id) == "halted"
    counts = steps_run(nodes)
    assert counts["reserve"] == 1 and counts["approve"] == 1, counts
    assert "ship" not in counts
    nodes.kill9("rescuer")

    [run] = list_runs(app, job_id=job.id, top_level=True)
    assert run.id is not None
    finish_after_resume(app, probe, nodes, job.id, run.id, "finisher")
    final = steps_run(nodes)
    report("kill_while_sibling_awaited_after_halt", engine=engine_name, steps_run=final)
    assert final["reserve"] == 1 and final["approve"] == 1 and final["ship"] == 1, final
    assert final["audit"] <= 2, final  # interrupted once at most, never after it completed
