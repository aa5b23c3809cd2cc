"""Batched acknowledgements: batched while more outcomes may come, written at once when not."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from jobsaga import App, DatabaseUnavailable, Job, JobState, Worker
from jobsaga.engines import Ack
from jobsaga.errors import DataRejected
from jobsaga.runtime.acker import Acker
from tests.jobs.conftest import wait_final


def completed(job_id: int) -> Ack:
    return Ack(job_id, 1, JobState.COMPLETED, datetime.now(UTC))


def run_acker(performing: Callable[[], int] | None, count: int) -> tuple[list[list[int]], float]:
    batches: list[list[int]] = []

    def write(acks: list[Ack]) -> set[int]:
        batches.append([a.id for a in acks])
        return {a.id for a in acks}

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def main() -> float:
        acker = Acker(write, run_in_db, max_delay=0.5, performing=performing)
        started = time.monotonic()
        results = await asyncio.gather(*(acker.ack(completed(i)) for i in range(count)))
        assert all(results)
        return time.monotonic() - started

    return batches, asyncio.run(main())


def test_waits_for_more_outcomes_while_jobs_still_run() -> None:
    batches, took = run_acker(lambda: 2, 3)  # 2 jobs still perform: their outcomes may join
    assert batches == [[0, 1, 2]]
    assert took >= 0.45


def test_writes_at_once_when_no_job_still_performs() -> None:
    batches, took = run_acker(lambda: 0, 3)
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


def run_refusing(
    refuse: Callable[[Ack], bool], count: int, **options: Any
) -> tuple[list[bool], list[list[int]], list[list[int]]]:
    """Acknowledge ``count`` outcomes in one batch through a writer that refuses (as bad
    data) every batch holding an outcome ``refuse`` picks; returns the results, every batch
    tried and the batches written."""
    tries: list[list[int]] = []
    written: list[list[int]] = []

    def write(acks: list[Ack]) -> set[int]:
        tries.append([a.id for a in acks])
        if any(refuse(a) for a in acks):
            raise DataRejected("refused")
        written.append([a.id for a in acks])
        return {a.id for a in acks}

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def main() -> list[bool]:
        acker = Acker(write, run_in_db, max_delay=0.01, retry_delay=0.001, **options)
        return list(await asyncio.gather(*(acker.ack(completed(i)) for i in range(count))))

    return asyncio.run(main()), tries, written


def test_a_refused_outcome_is_isolated_and_written_salvaged() -> None:
    """The refused outcome (id 5 of 16) is found by halving: its 15 batch-mates are written
    in 4 writes beside it, and its salvaged form (error reduced, meta dropped) in its turn."""
    results, tries, written = run_refusing(lambda a: a.id == 5 and a.error is None, 16)
    assert results == [True] * 16
    assert written == [[0, 1, 2, 3], [4], [5], [6, 7], [8, 9, 10, 11, 12, 13, 14, 15]]
    # refused: the batch, the half, quarter and eighth holding it, then it alone
    assert len(tries) == 5 + len(written)


def test_an_outcome_refused_for_good_is_given_up_after_bounded_tries() -> None:
    results, tries, _ = run_refusing(lambda a: a.id == 2, 4, bad_tries=3)
    assert results == [True, True, False, True]
    alone = [batch for batch in tries if batch == [2]]
    assert len(alone) == 1 + 3  # isolated once, then 3 tries of its salvaged form


def test_transient_errors_are_retried_and_never_split_the_batch() -> None:
    tries: list[list[int]] = []

    def write(acks: list[Ack]) -> set[int]:
        tries.append([a.id for a in acks])
        if len(tries) <= 5:
            raise DatabaseUnavailable("the server is restarting")
        return {a.id for a in acks}

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def main() -> list[bool]:
        acker = Acker(write, run_in_db, max_delay=0.01, retry_delay=0.001, max_retry_delay=0.004)
        return list(await asyncio.gather(*(acker.ack(completed(i)) for i in range(3))))

    started = time.monotonic()
    assert asyncio.run(main()) == [True, True, True]
    assert tries == [[0, 1, 2]] * 6  # the whole batch each time: nothing was given up
    assert time.monotonic() - started < 0.5  # 1 + 2 + 4 + 4 + 4 ms of backoff, capped


def test_drain_returns_at_its_deadline_when_nothing_can_be_written() -> None:
    def write(acks: list[Ack]) -> set[int]:
        raise DatabaseUnavailable("down")

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    async def main() -> tuple[bool, list[bool], float]:
        acker = Acker(write, run_in_db, max_delay=0.001, retry_delay=0.01)
        waiting = [asyncio.ensure_future(acker.ack(completed(i))) for i in range(3)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        drained = await acker.drain(deadline=0.2)
        return drained, list(await asyncio.gather(*waiting)), time.monotonic() - started

    drained, results, took = asyncio.run(main())
    assert (drained, results) == (False, [False, False, False])
    assert 0.2 <= took < 0.6
