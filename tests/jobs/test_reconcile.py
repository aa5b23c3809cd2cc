"""A live node gives back the jobs it claimed without knowing it (issue 9, fault 2).

A fetch commits its claim before its reply reaches the node; when the connection dies in
between, the jobs are ``executing`` under a live node that never got them, and the lifeline
(which rescues the jobs of dead nodes) never touches them. The node's reconciler finds them
and gives them back, the attempt not counted, within the rescue window.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from jobsaga import App, DatabaseUnavailable, Job, JobState, Worker
from tests.helpers import wait_until
from tests.jobs.conftest import SEEN, job, wait_final, wait_state

RESCUE_AFTER = 2.0
FAST = {
    "poll_interval": 0.05,
    "heartbeat_interval": 0.25,
    "rescue_after": RESCUE_AFTER,
    "rescue_interval": 0.1,
    "control_interval": 0.1,
}


class Records(Worker, max_attempts=3):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add((job.id, job.attempt))


class LosesReplies:
    """Wraps the engine's fetch (on the loop or in a thread, whichever the engine's node
    uses): the claim commits, then the reply is lost (``lose`` times), or arrives ``delay``
    seconds late, as over a dying or slow connection."""

    def __init__(self, app: App, *, lose: int = 0, delay: float = 0.0) -> None:
        self.fetch = app.engine.fetch
        self.afetch = app.engine.afetch
        self.lose = lose
        self.delay = delay
        self.lost: list[int] = []
        self.delayed: list[int] = []
        self.lock = threading.Lock()
        app.engine.fetch = self  # type: ignore[method-assign]
        app.engine.afetch = self.on_loop  # type: ignore[method-assign]

    def __call__(self, queue: str, limit: int, node: str) -> list[Job[Any]]:
        jobs = self.fetch(queue, limit, node)
        if self.lost_or_late(jobs):
            time.sleep(self.delay)
        return jobs

    async def on_loop(self, queue: str, limit: int, node: str) -> list[Job[Any]]:
        jobs = await self.afetch(queue, limit, node)
        if self.lost_or_late(jobs):
            await asyncio.sleep(self.delay)
        return jobs

    def lost_or_late(self, jobs: list[Job[Any]]) -> bool:
        """Raises for a lost reply; True when this reply is to arrive late."""
        if not jobs:
            return False
        with self.lock:
            if self.lose > 0:
                self.lose -= 1
                self.lost += [j.id for j in jobs]
                raise DatabaseUnavailable("server closed the connection unexpectedly")
            late = self.delay > 0 and not self.delayed
            if late:
                self.delayed += [j.id for j in jobs]
        return late


def runs() -> dict[int, list[int]]:
    found: dict[int, list[int]] = {}
    for job_id, attempt in SEEN.items():
        found.setdefault(job_id, []).append(attempt)
    return found


def test_a_claim_whose_reply_was_lost_is_given_back_and_runs(
    make_app: Callable[..., App],
) -> None:
    app = make_app(Records)
    lossy = LosesReplies(app, lose=1)
    stored = app.insert_all([Records.new({"n": n}) for n in range(3)])
    started = time.monotonic()
    with app.node({"default": 5}, **FAST).start_in_thread():
        done = [wait_final(app, j.id, timeout=2 * RESCUE_AFTER) for j in stored]
    assert time.monotonic() - started < RESCUE_AFTER + 1  # within the rescue window
    assert sorted(lossy.lost) == [j.id for j in stored]  # the fault really happened
    assert [j.state for j in done] == [JobState.COMPLETED] * 3
    assert [j.attempt for j in done] == [1, 1, 1]  # the lost claim was not counted
    assert all(not j.errors for j in done)
    assert runs() == {j.id: [1] for j in stored}  # each ran once


def test_jobs_claimed_under_the_nodes_name_without_it_knowing_are_given_back(
    make_app: Callable[..., App],
) -> None:
    """The same fault seen from the database: rows claimed for the running node, as its
    fetch would, while the node knows nothing of them."""
    app = make_app(Records)
    with app.node({"default": 5}, **FAST).start_in_thread() as thread:
        app.pause_queue("default")
        stored = app.insert_all([Records.new({"n": n}) for n in range(2)])
        claimed = app.engine.fetch("default", 10, thread.node.name)
        assert sorted(j.id for j in claimed) == [j.id for j in stored]
        back = [wait_state(app, j.id, JobState.AVAILABLE, timeout=RESCUE_AFTER) for j in stored]
        assert [j.attempt for j in back] == [0, 0]  # never started: not counted
        assert all(not j.errors for j in back)
        assert SEEN.items() == []
        app.resume_queue("default")
        done = [wait_final(app, j.id) for j in stored]
    assert [(j.state, j.attempt) for j in done] == [(JobState.COMPLETED, 1)] * 2
    assert runs() == {j.id: [1] for j in stored}


def test_a_fetch_whose_reply_is_late_is_not_given_back_under_it(
    make_app: Callable[..., App],
) -> None:
    """Claims of a fetch still under way are left alone, however many reconciler rounds
    pass: giving them back would let them run twice when the reply arrives."""
    app = make_app(Records)
    slow = LosesReplies(app, delay=1.0)  # ten rounds of the reconciler
    events: list[tuple[str, Mapping[str, Any]]] = []
    app.telemetry.attach("rounds", "plugin.reconciler.stop", lambda e, m, _: events.append((e, m)))
    stored = app.insert_all([Records.new({"n": n}) for n in range(3)])
    with app.node({"default": 5}, **FAST).start_in_thread():
        done = [wait_final(app, j.id) for j in stored]
        wait_until(lambda: len(events) >= 3)
    assert sorted(slow.delayed) == [j.id for j in stored]
    assert len(events) >= 8  # the reconciler ran while the reply was late
    assert sum(m["given_back"] for _, m in events) == 0
    assert [(j.state, j.attempt) for j in done] == [(JobState.COMPLETED, 1)] * 3
    assert runs() == {j.id: [1] for j in stored}


class Unwritable(Worker, max_attempts=3):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add((job.id, job.attempt))


def test_a_job_that_ran_but_whose_outcome_was_not_written_is_rescued_counted(
    make_app: Callable[..., App],
) -> None:
    """The acker gave an outcome up (it could not be written): the job ran, so the node
    rescues it with the attempt counted, rather than giving it back as never started."""
    app = make_app(Unwritable)
    stored = app.insert(Unwritable.new())
    write, awrite = app.engine.ack, app.engine.aack
    refused: list[int] = []

    def refuse(acks: Sequence[Any]) -> bool:
        if any(a.id == stored.id and a.attempt == 1 for a in acks):
            refused.append(stored.id)
            return True  # as if the job had moved on: nothing written
        return False

    def ack(acks: Sequence[Any], conn: Any = None) -> set[int]:
        return set() if refuse(acks) else write(acks, conn)

    async def aack(acks: Sequence[Any]) -> set[int]:
        return set() if refuse(acks) else await awrite(acks)

    app.engine.ack = ack  # type: ignore[method-assign]
    app.engine.aack = aack  # type: ignore[method-assign]
    with app.node({"default": 5}, **FAST).start_in_thread():
        done = wait_final(app, stored.id, timeout=2 * RESCUE_AFTER)
    assert refused == [stored.id]
    assert done.state is JobState.COMPLETED and done.attempt == 2
    assert [e["kind"] for e in done.errors] == ["orphaned"]
    assert "could not write its outcome" in done.errors[0]["error"]
    assert runs() == {stored.id: [1, 2]}
    assert job(app, stored.id).state is JobState.COMPLETED
