"""One outcome that cannot be written stops nothing else (issue 9, fault 4).

The acker used to retry a failing batch for ever: an error text holding a NUL character
(PostgreSQL's jsonb refuses ``\\u0000``) or a follow-up scheduled absurdly far ahead blocked
every later acknowledgement, and the node could not shut down. Outcomes are now cleaned
before their first write, a refused one is isolated from its batch-mates and given up after
bounded tries, and ``drain()`` has a deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobsaga import App, Complete, Job, JobState, Worker
from jobsaga.engines import LATEST, Ack
from jobsaga.runtime.acker import Acker
from tests.jobs.conftest import job, rows, sqlite_write_locked, wait_final


class Quick(Worker):
    async def perform(self, job: Job[Any]) -> None:
        return None


class NulError(Worker, max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        raise ValueError("bad\x00byte, a lone \ud800 surrogate")


class FarFollowUp(Worker):
    def perform(self, job: Job[Any]) -> Complete:
        # built as a caller could (Worker.new may refuse the delay itself): past year 9999
        follow_up = dataclasses.replace(Quick.new({"after": job.id}), schedule_in=1e12)
        return Complete(enqueue=(follow_up,))


def test_an_error_text_with_nul_is_written_cleaned_and_blocks_nothing(
    make_app: Callable[..., App],
) -> None:
    app = make_app(Quick, NulError)
    bad = app.insert(NulError.new({}))
    good = app.insert_all([Quick.new({"n": i}) for i in range(5)])
    started = time.monotonic()
    with app.node({"default": 10}, poll_interval=0.05, ack_delay=0.05).start_in_thread():
        for j in good:
            assert wait_final(app, j.id, timeout=5).state is JobState.COMPLETED
        failed = wait_final(app, bad.id, timeout=5)
    assert time.monotonic() - started < 8  # the node stopped too
    assert failed.state is JobState.DISCARDED
    record = failed.errors[-1]
    assert record["error"] == "ValueError: badbyte, a lone \ufffd surrogate"
    assert "\x00" not in record["traceback"] and "badbyte" in record["traceback"]
    assert "NUL characters or lone surrogates removed" in record["cleaned"]


def test_a_follow_up_scheduled_past_year_9999_is_capped(make_app: Callable[..., App]) -> None:
    app = make_app(Quick, FarFollowUp)
    parent = app.insert(FarFollowUp.new({}))
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        done = wait_final(app, parent.id, timeout=5)
    assert done.state is JobState.COMPLETED
    assert "moved to 9999-01-01" in done.meta["cleaned"]
    [follow_up] = app.list_jobs(worker=Quick)
    assert follow_up.state is JobState.SCHEDULED and follow_up.scheduled_at == LATEST
    assert follow_up.args == {"after": parent.id}


def test_the_engine_cleans_an_outcome_before_writing_it(make_app: Callable[..., App]) -> None:
    app = make_app(Quick)
    inserted = app.insert(Quick.new({}))
    [claimed] = app.engine.fetch("default", 1, "n1")
    assert claimed.id == inserted.id
    now = datetime.now(UTC)
    ack = Ack(
        claimed.id,
        claimed.attempt,
        JobState.RETRYABLE,
        now,
        scheduled_at=datetime.max.replace(tzinfo=UTC),
        error={"error": "x\x00y", "kind": "error", "attempt": 1, "nan": float("nan")},
        meta={"note\x00": "z"},
    )
    assert app.engine.ack([ack]) == {claimed.id}
    stored = job(app, claimed.id)
    assert stored.state is JobState.RETRYABLE and stored.scheduled_at == LATEST
    record = stored.errors[-1]
    assert (record["error"], record["nan"]) == ("xy", "nan")
    assert stored.meta["note"] == "z"
    for reason in ("NUL characters", "nan written as text", "moved to 9999-01-01"):
        assert reason in record["cleaned"]


@contextmanager
def db_threads() -> Iterator[Callable[..., Any]]:
    """run_in_db on a pool of our own: a write blocked in a thread cannot hold up the loop's
    shutdown, and the test decides when that thread may finish."""
    pool = ThreadPoolExecutor(max_workers=2)

    async def run_in_db(fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    try:
        yield run_in_db
    finally:
        pool.shutdown(wait=True)


def test_an_outcome_refused_even_salvaged_is_given_up_alone(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    """A follow-up the database refuses (priority 99 breaks a CHECK constraint) fails its
    outcome however it is cleaned: it is given up after bounded tries, its batch-mates are
    written, and its job stays executing for the lifeline."""
    app = make_app(Quick)
    app.insert_all([Quick.new({"n": i}) for i in range(3)])
    first, bad, last = app.engine.fetch("default", 3, "n1")
    now = datetime.now(UTC)
    refused = dataclasses.replace(Quick.new({}), priority=99)

    def done(j: Job[Any], inserts: tuple[Any, ...] = ()) -> Ack:
        return Ack(j.id, j.attempt, JobState.COMPLETED, now, inserts=inserts)

    async def main(run_in_db: Callable[..., Any]) -> list[bool]:
        acker = Acker(app.engine.ack, run_in_db, max_delay=1.0, retry_delay=0.01, bad_tries=2)
        acks = [done(first), done(bad, (refused,)), done(last)]
        return list(await asyncio.gather(*(acker.ack(a) for a in acks)))

    caplog.set_level(logging.ERROR, "jobsaga.runtime.acker")
    started = time.monotonic()
    with db_threads() as run_in_db:
        assert asyncio.run(main(run_in_db)) == [True, False, True]
    assert time.monotonic() - started < 3
    states = {r["id"]: r["state"] for r in rows(app)}
    assert states == {first.id: "completed", bad.id: "executing", last.id: "completed"}
    assert f"job {bad.id}: giving up on its outcome after 2 tries" in caplog.text


@contextmanager
def database_blocked(app: App, url: str, job_id: int) -> Iterator[None]:
    """Another connection holds what the acknowledgement needs: SQLite's write lock (the
    engine's short busy timeout then raises DatabaseUnavailable) or the job's row lock on
    PostgreSQL (the UPDATE waits)."""
    if app.engine.dialect == "sqlite":
        with sqlite_write_locked(url):
            yield
        return
    with psycopg.connect(url) as conn:
        conn.execute("SELECT id FROM jobsaga_jobs WHERE id = %s FOR UPDATE", (job_id,))
        try:
            yield
        finally:
            conn.rollback()


def test_drain_gives_up_at_its_deadline_while_the_database_is_blocked(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = App(db_url, workers=[Quick])
    if app.engine.dialect == "sqlite":
        app.engine.busy_timeout = 0.05  # type: ignore[attr-defined]
    try:
        app.migrate()
        app.insert(Quick.new({}))
        [claimed] = app.engine.fetch("default", 1, "n1")
        ack = Ack(claimed.id, claimed.attempt, JobState.COMPLETED, datetime.now(UTC))
        caplog.set_level(logging.ERROR, "jobsaga.runtime.acker")

        async def main(run_in_db: Callable[..., Any]) -> tuple[bool, bool, float]:
            acker = Acker(app.engine.ack, run_in_db, max_delay=0.001, retry_delay=0.01)
            waiting = asyncio.ensure_future(acker.ack(ack))
            await asyncio.sleep(0.1)  # the write is under way, blocked
            started = time.monotonic()
            drained = await acker.drain(deadline=0.3)
            return drained, await waiting, time.monotonic() - started

        with db_threads() as run_in_db, database_blocked(app, db_url, claimed.id):
            drained, written, took = asyncio.run(main(run_in_db))
        assert (drained, written) == (False, False)
        assert took < 1.5
        assert "abandoned" in caplog.text and str(claimed.id) in caplog.text
    finally:
        app.close()


def test_transient_errors_resume_within_the_capped_backoff(tmp_path: Any) -> None:
    """SQLite locked by another process for 0.6 s: the outcome is written within about the
    backoff cap (0.2 s here) of the lock's release, not after an ever-growing wait."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    app = App(url, workers=[Quick])
    app.engine.busy_timeout = 0.01  # type: ignore[attr-defined]
    try:
        app.migrate()
        app.insert(Quick.new({}))
        [claimed] = app.engine.fetch("default", 1, "n1")
        ack = Ack(claimed.id, claimed.attempt, JobState.COMPLETED, datetime.now(UTC))
        released = threading.Event()
        released_at: list[float] = []

        def hold_lock() -> None:
            with database_blocked(app, url, claimed.id):
                released.wait(0.6)
            released_at.append(time.monotonic())

        async def main(run_in_db: Callable[..., Any]) -> tuple[bool, float]:
            holder = threading.Thread(target=hold_lock)
            holder.start()
            await asyncio.sleep(0.05)
            acker = Acker(
                app.engine.ack, run_in_db, retry_delay=0.01, max_retry_delay=0.2, max_delay=0
            )
            written = await acker.ack(ack)
            finished = time.monotonic()
            holder.join()
            return written, finished

        with db_threads() as run_in_db:
            written, finished = asyncio.run(main(run_in_db))
        assert written
        assert finished - released_at[0] < 0.5
        assert job(app, claimed.id).state is JobState.COMPLETED
    finally:
        app.close()


def test_an_absurd_schedule_is_refused_before_anything_is_written(
    make_app: Callable[..., App],
) -> None:
    from jobsaga import ArgsError

    app = make_app(Quick)
    for spec in (
        dataclasses.replace(Quick.new({}), schedule_in=1e12),
        dataclasses.replace(Quick.new({}), schedule_in=float("inf")),
        dataclasses.replace(Quick.new({}), scheduled_at=LATEST + timedelta(days=1)),
    ):
        with pytest.raises(ArgsError, match="past the latest time jobsaga stores"):
            app.insert_all([Quick.new({}), spec])
    assert rows(app) == []
