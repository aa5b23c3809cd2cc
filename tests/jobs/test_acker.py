"""Batched acknowledgements: batched while more outcomes may come, written at once when not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobsaga import App, Job, JobState, Worker
from jobsaga.engines import Ack
from jobsaga.runtime.acker import Acker
from tests.jobs.conftest import wait_final


def completed(job_id: int) -> Ack:
    return Ack(job_id, 1, JobState.COMPLETED, datetime.now(UTC))


def run_acker(in_flight: Callable[[], int] | None, count: int) -> tuple[list[list[int]], float]:
    batches: list[list[int]] = []

    def write(acks: list[Ack]) -> set[int]:
        batches.append([a.id for a in acks])
        return {a.id for a in acks}

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def main() -> float:
        acker = Acker(write, run_in_db, max_delay=0.5, in_flight=in_flight)
        started = time.monotonic()
        results = await asyncio.gather(*(acker.ack(completed(i)) for i in range(count)))
        assert all(results)
        return time.monotonic() - started

    return batches, asyncio.run(main())


def test_waits_for_more_outcomes_while_jobs_still_run() -> None:
    batches, took = run_acker(lambda: 5, 3)  # 5 jobs running, 3 outcomes: 2 may still come
    assert batches == [[0, 1, 2]]
    assert took >= 0.45


def test_writes_at_once_when_every_running_job_waits_for_it() -> None:
    batches, took = run_acker(lambda: 3, 3)
    assert batches == [[0, 1, 2]]
    assert took < 0.2


class Quick(Worker):
    async def perform(self, job: Job[Any]) -> None:
        return None


def test_a_node_does_not_idle_out_the_ack_delay(make_app: Callable[..., App]) -> None:
    """With a (silly) 5 s ack delay, jobs still complete at once: nothing else was running."""
    app = make_app(Quick)
    jobs = app.insert_all([Quick.new({"n": i}) for i in range(6)])
    started = time.monotonic()
    with app.node({"default": 2}, poll_interval=0.05, ack_delay=5.0).start_in_thread():
        for j in jobs:
            assert wait_final(app, j.id, timeout=4).state is JobState.COMPLETED
    assert time.monotonic() - started < 4
