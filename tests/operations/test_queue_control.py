"""Pause, resume and scale queues at runtime, on every node or one, on both engines.

Two Apps on one database stand for two processes: on SQLite they share no listeners, so a
control reaches the second node only through the persisted state it polls.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, JobState
from tests.helpers import wait_until

from . import workers as w
from .conftest import NODE


def states(app: App, ids: list[int]) -> list[JobState]:
    return [app.get_job(i).state for i in ids]  # type: ignore[union-attr]


def stays(predicate: Callable[[], Any], seconds: float = 0.4) -> bool:
    """True if ``predicate`` holds for the whole (short) period."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not predicate():
            return False
        time.sleep(0.02)
    return True


def test_pause_stops_fetching_on_every_node_and_resume_restarts_it(
    make_app: Callable[..., App],
) -> None:
    first, second = make_app(w.Noop), make_app(w.Noop)
    with (
        first.node({"default": 2}, name="n1", **NODE).start_in_thread() as t1,
        second.node({"default": 2}, name="n2", **NODE).start_in_thread() as t2,
    ):
        first.pause_queue("default")
        producers = [t1.node.producers["default"], t2.node.producers["default"]]
        wait_until(lambda: all(p.paused for p in producers), timeout=5)
        ids = [job.id for job in first.insert_all([w.Noop.new({}) for _ in range(6)])]
        assert stays(lambda: states(first, ids) == [JobState.AVAILABLE] * 6)

        second.resume_queue("default")
        wait_until(lambda: not any(p.paused for p in producers), timeout=5)
        wait_until(lambda: states(first, ids) == [JobState.COMPLETED] * 6, timeout=10)


def test_a_fetch_under_way_when_the_pause_comes_ends_before_pause_queue_returns(
    make_app: Callable[..., App],
) -> None:
    """A fetch that began before the pause used to run on after ``pause_queue`` returned, and
    claimed a job inserted after it: the pause waits for that fetch, and a producer reports
    itself paused only once no fetch of it is under way."""
    app = make_app(w.Noop)
    with app.node({"default": 2}, **NODE).start_in_thread() as thread:
        node = thread.node
        real_fetch = node.fetch
        entered, gate = threading.Event(), threading.Event()

        async def gated(queue: str, limit: int) -> Any:
            entered.set()
            await asyncio.to_thread(gate.wait, 10)
            return await real_fetch(queue, limit)

        node.fetch = gated  # type: ignore[method-assign]
        node.producers["default"].wake()
        assert entered.wait(5)
        pausing = threading.Thread(target=app.pause_queue, args=("default",))
        pausing.start()
        pausing.join(0.5)
        returned_while_fetching = not pausing.is_alive()
        assert not node.producers["default"].paused  # the fetch is still under way
        gate.set()
        pausing.join(5)
        assert not pausing.is_alive() and not returned_while_fetching
        assert node.producers["default"].paused
        # the node's record says so at once, not at its next beat (5 s here)
        wait_until(
            lambda: [n.paused for q in app.list_queues() for n in q.nodes] == [True], timeout=2
        )
        job = app.insert(w.Noop.new({}))
        assert stays(lambda: states(app, [job.id]) == [JobState.AVAILABLE])


def test_a_pause_is_in_force_on_this_processs_nodes_when_it_returns(
    make_app: Callable[..., App],
) -> None:
    app = make_app(w.Noop)
    with app.node({"default": 2}, **NODE).start_in_thread():
        for _ in range(3):
            app.pause_queue("default")
            ids = [job.id for job in app.insert_all([w.Noop.new({}) for _ in range(4)])]
            assert stays(lambda ids=ids: set(states(app, ids)) == {JobState.AVAILABLE})
            app.resume_queue("default")
            wait_until(lambda ids=ids: set(states(app, ids)) == {JobState.COMPLETED})


def test_a_node_that_starts_picks_up_the_persisted_pause(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop)
    app.pause_queue("default")
    job = app.insert(w.Noop.new({}))
    with app.node({"default": 2, "other": 1}, **NODE).start_in_thread() as thread:
        producers = thread.node.producers
        assert producers["default"].paused and not producers["other"].paused
        assert stays(lambda: states(app, [job.id]) == [JobState.AVAILABLE])
        app.resume_queue("default")
        wait_until(lambda: states(app, [job.id]) == [JobState.COMPLETED])


def test_pause_one_node_leaves_the_others_running(make_app: Callable[..., App]) -> None:
    first, second = make_app(w.Noop), make_app(w.Noop)
    with (
        first.node({"default": 2}, name="n1", **NODE).start_in_thread() as t1,
        second.node({"default": 2}, name="n2", **NODE).start_in_thread() as t2,
    ):
        first.pause_queue("default", node="n2")
        wait_until(lambda: t2.node.producers["default"].paused, timeout=5)
        assert not t1.node.producers["default"].paused
        ids = [job.id for job in first.insert_all([w.Noop.new({}) for _ in range(4)])]
        wait_until(lambda: states(first, ids) == [JobState.COMPLETED] * 4)
        assert {first.get_job(i).attempted_by for i in ids} == {"n1"}  # type: ignore[union-attr]

        # A control for every node is the last word: it clears the per-node pause.
        first.pause_queue("default")
        first.resume_queue("default")
        wait_until(lambda: not t2.node.producers["default"].paused, timeout=5)


def test_scale_changes_how_many_jobs_run_at_once(make_app: Callable[..., App]) -> None:
    app = make_app(w.Hold)
    events: list[tuple[str, dict[str, Any]]] = []
    app.telemetry.attach("t", "queue.*", lambda e, m, meta: events.append((e, dict(m))))
    app.insert_all([w.Hold.new({}) for _ in range(6)])
    with app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: w.concurrent_now == 1)
        assert stays(lambda: w.concurrent_now == 1, 0.3)
        app.scale_queue("default", 4)
        wait_until(lambda: w.concurrent_now == 4, timeout=5)
        assert thread.node.producers["default"].limit == 4
        assert stays(lambda: w.concurrent_now == 4, 0.3)
        app.scale_queue("default", None)  # back to the node's own limit
        wait_until(lambda: thread.node.producers["default"].limit == 1, timeout=5)
        w.release.set()
        wait_until(lambda: len(w.finished) == 6, timeout=10)
    assert w.concurrent_peak == 4
    assert ("queue.scale", {"limit": 4, "previous": 1}) in events
    assert ("queue.scale", {"limit": 1, "previous": 4}) in events


def test_scaling_beyond_the_thread_pool_runs_that_many_sync_jobs(
    make_app: Callable[..., App],
) -> None:
    app = make_app(w.SyncCount)
    app.insert_all([w.SyncCount.new({}) for _ in range(9)])
    with app.node({"default": 2}, **NODE).start_in_thread() as thread:
        assert thread.node.max_threads == 4  # sized at start: max(4, sum of limits)
        wait_until(lambda: w.concurrent_now == 2)
        app.scale_queue("default", 7)
        wait_until(lambda: w.concurrent_now == 7, timeout=5)
        assert stays(lambda: w.concurrent_now == 7, 0.3)
        w.release.set()
        wait_until(lambda: len(w.finished) == 9, timeout=10)
    assert w.concurrent_peak == 7


def test_scale_one_node_and_validation(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop)
    with app.node({"default": 2}, name="solo", **NODE).start_in_thread() as thread:
        app.scale_queue("default", 7, node="solo")
        wait_until(lambda: thread.node.producers["default"].limit == 7, timeout=5)
    with pytest.raises(ValueError, match="limit must be an integer >= 1"):
        app.scale_queue("default", 0)
    with pytest.raises(ValueError, match="invalid queue name"):
        app.pause_queue("no spaces allowed")
    with pytest.raises(ValueError, match="node must be a node name"):
        app.pause_queue("default", node="  ")


def test_list_queues_shows_limits_running_and_available_per_node(
    make_app: Callable[..., App],
) -> None:
    first, second = make_app(w.Hold), make_app(w.Hold)
    first.insert_all([w.Hold.new({}) for _ in range(5)])
    first.insert(w.Hold.new({}, queue="idle", schedule_in=3600))
    with (
        first.node({"default": 2}, name="n1", **NODE).start_in_thread(),
        second.node({"default": 1, "idle": 3}, name="n2", **NODE).start_in_thread(),
    ):
        wait_until(lambda: w.concurrent_now == 3)
        first.pause_queue("idle")
        info = {q.queue: q for q in first.list_queues()}
        default = info["default"]
        assert (default.available, default.executing) == (2, 3)
        per_node = {n.node: (n.concurrency, n.paused, n.running) for n in default.nodes}
        assert per_node == {"n1": (2, False, 2), "n2": (1, False, 1)}
        assert info["idle"].paused is True and info["idle"].scheduled == 1
        wait_until(
            lambda: (
                [n.paused for q in first.list_queues() if q.queue == "idle" for n in q.nodes]
                == [True]
            ),
            timeout=5,
        )
        w.release.set()
    # Stopped nodes withdraw their status.
    assert all(not q.nodes for q in first.list_queues())
