"""A node: concurrency limits, several nodes on one database, bad jobs, sync vs async, telemetry."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from jobsaga import App, Job, JobSpec, JobState, Worker
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, job, wait_final, wait_state


class Gauge:
    """Counts simultaneous performs and remembers the most seen at once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


GAUGES: dict[str, Gauge] = {}


@pytest.fixture(autouse=True)
def gauges() -> None:
    GAUGES.clear()
    GAUGES.update(default=Gauge(), slow=Gauge())


class Measured(Worker):
    async def perform(self, job: Job[Any]) -> None:
        gauge = GAUGES[job.queue]
        gauge.enter()
        try:
            await asyncio.sleep(0.02)
        finally:
            gauge.leave()


class MeasuredSync(Worker):
    def perform(self, job: Job[Any]) -> None:
        gauge = GAUGES[job.queue]
        gauge.enter()
        try:
            time.sleep(0.02)
        finally:
            gauge.leave()


@pytest.mark.parametrize("worker", [Measured, MeasuredSync])
def test_concurrency_limit_per_queue(make_app: Callable[..., App], worker: type[Worker]) -> None:
    app = make_app(worker)
    jobs = app.insert_all(
        [worker.new({"n": i}) for i in range(40)]
        + [worker.new({"n": i}, queue="slow") for i in range(20)]
    )
    with app.node({"default": 3, "slow": 2}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: all(job(app, j.id).state is JobState.COMPLETED for j in jobs), 20)
    assert GAUGES["default"].peak == 3
    assert GAUGES["slow"].peak == 2


class RecordsId(Worker):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add((job.id, job.attempted_by))
        await asyncio.sleep(0.001)


def test_several_nodes_run_each_job_exactly_once(make_app: Callable[..., App]) -> None:
    apps = [make_app(RecordsId) for _ in range(3)]
    jobs = apps[0].insert_all([RecordsId.new({"n": i}) for i in range(500)])
    nodes = [
        a.node({"default": 10}, name=f"node-{i}", poll_interval=0.02).start_in_thread()
        for i, a in enumerate(apps)
    ]
    try:
        wait_until(lambda: len(SEEN.items()) >= 500, 60)
        time.sleep(0.2)  # a duplicate run would show up now
    finally:
        for running in nodes:
            running.stop()
    runs = Counter(job_id for job_id, _ in SEEN.items())
    assert set(runs) == {j.id for j in jobs}
    assert set(runs.values()) == {1}
    counts = apps[0].engine.queue_counts()
    assert counts == {"default": {"completed": 500}}


class Fine(Worker):
    async def perform(self, job: Job[Any]) -> str:
        return "ok"


def test_unknown_worker_is_a_recorded_failure_and_the_node_keeps_running(
    make_app: Callable[..., App],
) -> None:
    app = make_app(Fine)
    ghost = app.insert(
        JobSpec(worker="gone.Worker", queue="default", args={}, priority=0, max_attempts=3)
    )
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread() as running:
        failed = wait_state(app, ghost.id, JobState.RETRYABLE)
        later = app.insert(Fine.new())
        assert wait_final(app, later.id).state is JobState.COMPLETED
        assert running.alive
    assert failed.attempt == 1
    [record] = failed.errors
    assert record["error"].startswith("UnknownWorkerError:")
    assert "gone.Worker" in record["error"]
    delay = (failed.scheduled_at - failed.attempted_at).total_seconds()  # type: ignore[operator]
    assert 10 < delay < 20  # retried like any failure, on the default backoff


def test_a_known_worker_on_another_node_picks_it_up(make_app: Callable[..., App]) -> None:
    """Deploy the worker and the retry runs: the failure was not final."""
    bare = make_app()
    stored = bare.insert(Fine.new())
    with bare.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_state(bare, stored.id, JobState.RETRYABLE)
    deployed = make_app(Fine)
    with deployed.engine.transaction() as tx:  # skip the 15 s backoff
        tx.execute("UPDATE jobsaga_jobs SET state = 'available', scheduled_at = inserted_at")
    with deployed.node({"default": 1}, poll_interval=0.05).start_in_thread():
        done = wait_final(deployed, stored.id)
    assert done.state is JobState.COMPLETED and done.attempt == 2


class BlocksThread(Worker, timeout=None):
    def perform(self, job: Job[Any]) -> None:
        SEEN.add("sync started")
        SEEN.gate.wait(10)  # a blocking call, as sync user code does


class QuickAsync(Worker):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add("async ran")


def test_a_sync_perform_does_not_block_async_jobs(make_app: Callable[..., App]) -> None:
    app = make_app(BlocksThread, QuickAsync)
    with app.node({"default": 5}, poll_interval=0.05).start_in_thread():
        blocker = app.insert(BlocksThread.new())
        wait_until(lambda: "sync started" in SEEN.items())
        quick = [app.insert(QuickAsync.new({"n": i})) for i in range(3)]
        for q in quick:
            assert wait_final(app, q.id, timeout=3).state is JobState.COMPLETED
        assert job(app, blocker.id).state is JobState.EXECUTING
        SEEN.gate.set()
        assert wait_final(app, blocker.id).state is JobState.COMPLETED


class Flaky(Worker, max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("nope")


def test_telemetry_start_stop_exception(make_app: Callable[..., App]) -> None:
    app = make_app(Fine, Flaky)
    events: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def handler(event: str, measures: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        events.append((event, dict(measures), dict(meta)))

    app.telemetry.attach("test", "job.*", handler)
    good, bad = app.insert_all([Fine.new(), Flaky.new()])
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        wait_final(app, good.id)
        wait_final(app, bad.id)
        wait_until(lambda: len(events) == 4)
    by_job = {(e, meta["job"].id): (measures, meta) for e, measures, meta in events}
    assert set(by_job) == {
        ("job.start", good.id),
        ("job.stop", good.id),
        ("job.start", bad.id),
        ("job.exception", bad.id),
    }
    measures, meta = by_job[("job.stop", good.id)]
    assert meta["state"] == "completed" and meta["result"] == "ok"
    assert meta["worker"] == Fine.name and meta["queue"] == "default" and meta["attempt"] == 1
    assert measures["duration"] >= 0 and measures["queue_wait"] >= 0
    measures, meta = by_job[("job.exception", bad.id)]
    assert meta["state"] == "discarded" and isinstance(meta["error"], ValueError)
    assert "system_time" in by_job[("job.start", good.id)][0]
    assert app.telemetry.detach("test") is True


def test_a_failing_telemetry_handler_does_not_fail_jobs(make_app: Callable[..., App]) -> None:
    app = make_app(Fine)

    def broken(event: str, measures: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        raise RuntimeError("handler bug")

    app.telemetry.attach("broken", "job.*", broken)
    stored = app.insert(Fine.new())
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        assert wait_final(app, stored.id).state is JobState.COMPLETED


def test_node_options_are_checked(app: App) -> None:
    from jobsaga.runtime import Node

    with pytest.raises(ValueError, match="at least one queue"):
        Node(app, {})
    with pytest.raises(ValueError, match="at least one queue"):
        app.node({})  # not a silent fallback to the default queue
    assert app.node().queue_limits == {"default": 10}
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="concurrency limit"):
            app.node({"default": 10, "other": bad})  # type: ignore[dict-item]
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(ValueError):
        app.node({"default": 0}).start_in_thread()
    # refused before anything started: no listener or pool thread is left behind
    assert {t.name for t in threading.enumerate()} <= before


def test_a_failed_fetch_is_tried_again_without_waiting_for_the_poll(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fetch that a wake-up (an insert, a start) asked for fails (the database away a
    moment, say): the producer tries again within its backoff, not at its next poll, which
    may be far off (30 s here) while no further wake-up comes for the waiting jobs."""
    from jobsaga import DatabaseUnavailable

    app = make_app(Measured)
    stored = app.insert(Measured.new())
    engine = app.engine
    real_fetch, real_afetch = engine.fetch, engine.afetch
    failures = [1]

    def fail(queue: str) -> None:
        if failures and queue == "default":
            failures.pop()
            raise DatabaseUnavailable("injected: the server is restarting")

    def failing_once(queue: str, limit: int, node: str) -> list[Job[Any]]:
        fail(queue)
        return real_fetch(queue, limit, node)

    async def afailing_once(queue: str, limit: int, node: str) -> list[Job[Any]]:
        fail(queue)
        return await real_afetch(queue, limit, node)

    monkeypatch.setattr(engine, "fetch", failing_once)
    monkeypatch.setattr(engine, "afetch", afailing_once)
    with app.node({"default": 1}, poll_interval=30.0).start_in_thread():
        done = wait_final(app, stored.id, timeout=5)
    assert done.state is JobState.COMPLETED and failures == []
