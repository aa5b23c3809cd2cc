"""The lifeline rescues the jobs of dead nodes, never those of live ones."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import jobsaga
from jobsaga import App, JobState, Worker
from jobsaga.errors import ConfigError
from jobsaga.plugins.heartbeat import Heartbeat
from jobsaga.plugins.lifeline import rescue_orphans
from tests.helpers import wait_until

from .support import FakeClock, rows


class Noop(Worker, name="tests.lifeline.Noop", max_attempts=3):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        return None


class Slow(Worker, name="tests.lifeline.Slow", queue="slow", timeout=None):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        time.sleep(float(job.args["seconds"]))


HEARTS: dict[tuple[int, str], Heartbeat] = {}


def beat(app: App, name: str, rescue_after: float) -> None:
    """Write a heartbeat row for a node name without running a node (one process per name).
    Its row says it beats every 0.25 s: a process that later starts under the name watches it
    for two such intervals before taking the name over."""
    heart = HEARTS.get((id(app), name))
    if heart is None:
        node = app.node(name=name, rescue_after=rescue_after, heartbeat_interval=rescue_after / 2)
        heart = HEARTS[(id(app), name)] = Heartbeat(node, 0.25, rescue_after)
    assert heart.beat()


def claim(app: App, node: str, n: int, **spec: Any) -> list[int]:
    app.insert_all([Noop.new({"i": i}, **spec) for i in range(n)])
    return [j.id for j in app.engine.fetch("default", n, node)]


def test_dead_node_jobs_rescued_live_node_jobs_kept(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    beat(app, "dead", rescue_after=10)
    beat(app, "live", rescue_after=10)
    dead_ids = claim(app, "dead", 2)
    live_ids = claim(app, "live", 2)
    clock.advance(9)
    assert rescue_orphans(app, 10, "leader").jobs == []  # not silent long enough
    clock.advance(2)
    beat(app, "live", rescue_after=10)  # the live node keeps beating
    rescued = rescue_orphans(app, 10, "leader")
    assert sorted(j.id for j in rescued.available) == dead_ids and rescued.discarded == []
    for job_id in dead_ids:
        job = app.get_job(job_id)
        assert job is not None and job.state is JobState.AVAILABLE and job.attempt == 1
        (error,) = job.errors
        assert error["kind"] == "orphaned" and "node dead stopped heartbeating" in error["error"]
        assert "rescued by node leader" in error["error"]
    clock.advance(3600)  # however long they run, a beating node's jobs stay
    beat(app, "live", rescue_after=10)
    assert rescue_orphans(app, 10, "leader").jobs == []
    assert all(app.get_job(i).state is JobState.EXECUTING for i in live_ids)  # type: ignore[union-attr]


def test_exhausted_attempts_are_discarded(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    beat(app, "dead", rescue_after=5)
    (job_id,) = claim(app, "dead", 1, max_attempts=1)
    clock.advance(6)
    rescued = rescue_orphans(app, 5, "leader")
    assert [j.id for j in rescued.discarded] == [job_id]
    job = app.get_job(job_id)
    assert job is not None and job.state is JobState.DISCARDED and job.discarded_at == clock()
    assert job.errors[-1]["kind"] == "orphaned"


def test_a_shutdown_note_in_the_node_record_says_the_attempt_was_interrupted(
    make_app: Callable[..., App],
) -> None:
    """A node that stopped while a job's code still ran in a thread noted why in its record:
    the rescue says so (kind and counted attempt as for any orphan). The note names its
    attempt, so the next attempt's rescue (a crash, say) does not repeat it."""
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    beat(app, "stopped", rescue_after=5)
    heart = HEARTS[(id(app), "stopped")]
    app.insert(Noop.new())
    (claimed,) = app.engine.fetch("default", 1, "stopped")
    reason = "interrupted by shutdown: node stopped stopped while the job's code still ran"
    heart.note_held(claimed, reason)
    beat(app, "stopped", rescue_after=5)
    clock.advance(6)
    (rescued,) = rescue_orphans(app, 5, "leader").available
    (error,) = rescued.errors
    assert rescued.attempt == 1 and error["kind"] == "orphaned" and error["attempt"] == 1
    assert error["error"] == (
        f"{reason}; rescued by node leader after node stopped's heartbeat lapsed "
        f"(its last heartbeat was at {(clock() - timedelta(seconds=6)).isoformat()})"
    )
    (again,) = app.engine.fetch("default", 1, "stopped")  # attempt 2, the note still there
    beat(app, "stopped", rescue_after=5)
    clock.advance(6)
    (rescued,) = rescue_orphans(app, 5, "leader").available
    assert rescued.attempt == 2
    assert rescued.errors[-1]["error"].startswith("orphaned: node stopped stopped heartbeating")


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)  # only text holds non-JSON
def test_a_node_record_whose_meta_is_not_json_does_not_stop_the_rescue(
    make_app: Callable[..., App],
) -> None:
    """The meta is advisory (the shutdown notes a rescue quotes): one node row changed by
    hand must not make every rescue raise."""
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    beat(app, "dead", rescue_after=5)
    (job_id,) = claim(app, "dead", 1)
    with app.engine.transaction() as tx:
        tx.execute("UPDATE jobsaga_nodes SET meta = '{not json' WHERE name = 'dead'")
    clock.advance(6)
    assert [j.id for j in rescue_orphans(app, 5, "leader").available] == [job_id]
    job = app.get_job(job_id)
    assert job is not None and job.errors[-1]["error"].startswith("orphaned: node dead stopped")


def test_node_without_a_row_uses_the_claim_time(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    (job_id,) = claim(app, "gone", 1)
    clock.advance(59)
    assert rescue_orphans(app, 60, "leader").jobs == []
    clock.advance(2)
    assert [j.id for j in rescue_orphans(app, 60, "leader").available] == [job_id]
    assert "no heartbeat row" in app.get_job(job_id).errors[-1]["error"]  # type: ignore[union-attr]


def test_late_ack_of_a_rescued_job_is_ignored(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(Noop, clock=clock)
    beat(app, "dead", rescue_after=5)
    (job_id,) = claim(app, "dead", 1)
    clock.advance(6)
    rescue_orphans(app, 5, "leader")
    (again,) = app.engine.fetch("default", 1, "other")
    assert again.id == job_id and again.attempt == 2
    from jobsaga.engines import Ack

    assert app.engine.ack([Ack(job_id, 1, JobState.COMPLETED, clock())]) == set()
    assert app.engine.ack([Ack(job_id, 2, JobState.COMPLETED, clock())]) == {job_id}


def test_node_heartbeats_and_rescues_a_crashed_nodes_jobs(make_app: Callable[..., App]) -> None:
    """A node that 'crashed' (its row expired) loses its jobs to the live node, which runs them;
    the live node's own long job is never rescued."""
    app = make_app(Noop, Slow)
    beat(app, "crashed", rescue_after=0.5)
    orphan_ids = claim(app, "crashed", 3)
    events: list[dict[str, Any]] = []
    app.telemetry.attach("t", "plugin.lifeline.stop", lambda e, m, md: events.append(dict(m)))
    long_job = app.insert(Slow.new({"seconds": 1.0}))  # two rescue windows, five lookups
    node = app.node(
        {"default": 5, "slow": 1}, poll_interval=0.05, heartbeat_interval=0.1, rescue_after=0.5
    )
    started = time.monotonic()
    with node.start_in_thread():
        for job_id in orphan_ids:
            wait_until(lambda i=job_id: app.get_job(i).state is JobState.COMPLETED, 10)  # type: ignore[union-attr]
        rescue_time = time.monotonic() - started
        wait_until(lambda: app.get_job(long_job.id).state is JobState.COMPLETED, 10)  # type: ignore[union-attr]
        names = [r["name"] for r in rows(app, "SELECT name FROM jobsaga_nodes")]
        assert node.name in names
    final = app.get_job(long_job.id)
    assert final is not None and final.attempt == 1 and final.errors == ()
    assert rescue_time < 5
    assert sum(m["rescued"] for m in events) == 3
    assert node.name not in [r["name"] for r in rows(app, "SELECT name FROM jobsaga_nodes")]
    for job_id in orphan_ids:
        job = app.get_job(job_id)
        assert job is not None and job.attempt == 2 and job.errors[0]["kind"] == "orphaned"
    assert timedelta(0) <= timedelta(seconds=rescue_time)


FINAL_FAILURES: list[tuple[int, str]] = []


class LastTry(Worker, name="tests.lifeline.LastTry", max_attempts=1, queue="never"):
    def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        return None

    def on_final_failure(self, job: jobsaga.Job[Any], error: BaseException) -> None:
        FINAL_FAILURES.append((job.id, type(error).__name__))


def test_orphan_discarded_runs_on_final_failure_once(make_app: Callable[..., App]) -> None:
    FINAL_FAILURES.clear()
    app = make_app(LastTry)
    beat(app, "crashed", rescue_after=0.5)
    app.insert(LastTry.new())
    (job,) = app.engine.fetch("never", 1, "crashed")
    node = app.node(poll_interval=0.05, heartbeat_interval=0.1, rescue_after=0.5)
    with node.start_in_thread():
        wait_until(lambda: (job.id, "JobOrphaned") in FINAL_FAILURES, 5)
        time.sleep(0.3)
    assert FINAL_FAILURES.count((job.id, "JobOrphaned")) == 1
    final = app.get_job(job.id)
    assert final is not None and final.state is JobState.DISCARDED


class LoopHog(Worker, name="tests.lifeline.LoopHog", queue="hog", timeout=None):
    async def perform(self, job: jobsaga.Job[dict[str, Any]]) -> None:
        time.sleep(2.5)  # blocks the node's event loop: the heartbeat thread still beats


def test_a_job_that_blocks_the_event_loop_is_not_rescued(make_app: Callable[..., App]) -> None:
    hog_app, rescuer_app = make_app(LoopHog), make_app(LoopHog)
    options: dict[str, Any] = {
        "poll_interval": 0.05,
        "heartbeat_interval": 0.1,
        "rescue_after": 1.0,  # ten beats: a loaded CI machine may delay one or two
    }
    rescuer = rescuer_app.node({"other": 1}, name="rescuer", leader_lease=0.5, **options)
    hog = hog_app.node({"hog": 1}, name="hog", leadership=False, **options)
    job = hog_app.insert(LoopHog.new())
    with rescuer.start_in_thread():
        wait_until(lambda: rescuer.plugins.is_leader, 5)
        with hog.start_in_thread():
            wait_until(lambda: hog_app.get_job(job.id).state is JobState.COMPLETED, 10)  # type: ignore[union-attr]
    done = hog_app.get_job(job.id)
    assert done is not None and done.attempt == 1 and done.errors == ()
    assert rescuer.plugins.lifeline.runs >= 3  # the lifeline looked, several times, and left it


def test_restart_under_a_fixed_name_rescues_the_dead_process_jobs(
    make_app: Callable[..., App],
) -> None:
    """A process killed under a fixed name (a StatefulSet pod) comes back under that name: its
    heartbeats would vouch for the dead process's jobs, so it rescues them at start."""
    app = make_app(Noop)
    beat(app, "worker-0", rescue_after=60)
    orphan_ids = claim(app, "worker-0", 2)
    node = app.node(name="worker-0", poll_interval=0.05, leadership=False)
    with node.start_in_thread():
        for job_id in orphan_ids:
            wait_until(lambda i=job_id: app.get_job(i).state is JobState.COMPLETED, 5)  # type: ignore[union-attr]
    for job_id in orphan_ids:
        job = app.get_job(job_id)
        assert job is not None and job.attempt == 2
        assert "same name started" in job.errors[0]["error"]


def test_two_live_processes_cannot_share_a_node_name(make_app: Callable[..., App]) -> None:
    first, second = make_app(Noop), make_app(Noop)
    options: dict[str, Any] = {"poll_interval": 0.05, "heartbeat_interval": 0.1}
    with first.node(name="dup", **options).start_in_thread():
        started = time.monotonic()
        with pytest.raises(ConfigError, match="node name 'dup' is in use by a live process"):
            second.node(name="dup", **options).start_in_thread()
        assert time.monotonic() - started < 2.0
    # once the first one stopped (its row is gone), the name is free again
    with second.node(name="dup", **options).start_in_thread():
        pass
