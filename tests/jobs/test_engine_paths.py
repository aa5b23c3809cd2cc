"""The engine's transactions: the single-statement path (fetch, acknowledgement) leaves its
connection as it was, polled reads take no write lock, a failed COMMIT leaves nothing open,
and driver errors arrive as jobsaga's own."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from jobsaga import App, DatabaseError, DatabaseUnavailable, Job, Worker
from jobsaga.errors import DataRejected
from tests.jobs.conftest import count_jobs, sqlite_write_locked


class Noop(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_execute_one_then_transactions_still_roll_back(make_app: Callable[..., App]) -> None:
    app = make_app(Noop, pool_size=1)  # one connection: the next transaction reuses it
    engine = app.engine
    assert engine.execute_one("SELECT 1 AS one") == [{"one": 1}]
    with pytest.raises(Exception, match="jobsaga_nope"):
        engine.execute_one("SELECT 1 / 0 AS boom FROM jobsaga_nope")
    assert engine.execute_one("SELECT 2 AS two") == [{"two": 2}]
    with pytest.raises(RuntimeError, match="undo"), engine.transaction() as tx:
        engine.insert_in(tx, [Noop.new()])
        raise RuntimeError("undo")
    assert count_jobs(app) == 0  # the insert was rolled back: not autocommitted
    app.insert(Noop.new())
    [fetched] = engine.fetch("default", 5, "n1")
    assert engine.fetch("default", 5, "n2") == []
    assert fetched.attempted_by == "n1"


@contextmanager
def writes_blocked(app: App, url: str) -> Iterator[None]:
    """Another connection holds what writers need: SQLite's write lock, or on PostgreSQL an
    EXCLUSIVE lock on the job table (it blocks writers, not plain readers)."""
    if app.engine.dialect == "sqlite":
        with sqlite_write_locked(url):
            yield
        return
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE jobsaga_jobs IN EXCLUSIVE MODE")
        try:
            yield
        finally:
            conn.rollback()


def test_polled_reads_do_not_wait_for_writers(make_app: Callable[..., App], db_url: str) -> None:
    """The stager's next_due, get_job and queue_counts are polls: on SQLite they took the
    write lock (BEGIN IMMEDIATE) and so queued behind another process's writes (issue 9,
    fault 14)."""
    app = make_app(Noop)
    job = app.insert(Noop.new({}, schedule_in=60))
    engine = app.engine
    got: dict[str, Any] = {}

    def poll() -> None:
        got["next_due"] = engine.next_due()
        found = engine.get_job(job.id)
        got["job"] = found.id if found else None
        got["counts"] = engine.queue_counts()

    with writes_blocked(app, db_url):
        reader = threading.Thread(target=poll, daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "a polled read waited for the write lock"
    assert got == {
        "next_due": job.scheduled_at,
        "job": job.id,
        "counts": {"default": {"scheduled": 1}},
    }


DEFERRED_FK = """
CREATE TABLE b1_parent (id INTEGER PRIMARY KEY);
CREATE TABLE b1_child (parent INTEGER REFERENCES b1_parent (id) DEFERRABLE INITIALLY DEFERRED)
"""


def test_a_failed_commit_is_rolled_back_never_joined(
    make_app: Callable[..., App], db_url: str
) -> None:
    """A COMMIT that fails (here a deferred foreign key, checked only at COMMIT) left SQLite's
    transaction open, and the engine took every later caller for a re-entry into it: their
    writes joined the stale transaction and were never committed (issue 9, fault 14)."""
    app = make_app(Noop)
    engine = app.engine
    with engine.transaction() as tx:
        for statement in DEFERRED_FK.split(";"):
            tx.execute(statement)
    with pytest.raises(DataRejected, match=r"(?i)foreign key"), engine.transaction() as tx:
        tx.execute("INSERT INTO b1_child (parent) VALUES (42)")
    job = app.insert(Noop.new({}))  # must commit on its own
    other = App(db_url, workers=[Noop])  # another connection sees only what was committed
    try:
        assert other.get_job(job.id) is not None
        with other.engine.read() as tx:
            assert tx.execute("SELECT count(*) AS n FROM b1_child")[0]["n"] == 0
    finally:
        other.close()
    with engine.transaction() as outer:  # re-entry still joins the caller's transaction
        with engine.transaction() as inner:
            inner.execute("INSERT INTO b1_parent (id) VALUES (1)")
        outer.execute("INSERT INTO b1_child (parent) VALUES (1)")
    with engine.read() as tx:
        assert tx.execute("SELECT count(*) AS n FROM b1_child")[0]["n"] == 1


def test_driver_errors_arrive_as_jobsaga_errors(make_app: Callable[..., App]) -> None:
    app = make_app(Noop)
    engine = app.engine
    with pytest.raises(DatabaseError, match="jobsaga_nope") as missing:
        engine.execute_one("SELECT * FROM jobsaga_nope")
    assert not isinstance(missing.value, (DataRejected, DatabaseUnavailable))
    assert isinstance(missing.value.__cause__, (sqlite3.Error, psycopg.Error))
    refused = dataclasses.replace(Noop.new({}), priority=99)  # breaks a CHECK constraint
    with pytest.raises(DataRejected):
        engine.insert([refused])
    assert count_jobs(app) == 0
    assert engine.insert([Noop.new({})])[0].id > 0  # the engine is still usable


def test_the_loops_fetch_and_ack_claim_and_write_as_the_threads_do(
    make_app: Callable[..., App],
) -> None:
    """Where the node fetches and acknowledges on its loop (PostgreSQL), those calls claim
    in fetch order, once, and write only the attempt that ran; elsewhere the node uses the
    threaded calls, and the loop's are refused rather than half there."""
    import asyncio
    from datetime import UTC, datetime

    from jobsaga import JobState
    from jobsaga.engines import Ack

    app = make_app(Noop)
    engine = app.engine
    stored = app.insert_all([Noop.new(priority=p) for p in (2, 0, 1)])
    if not engine.hot_path_on_loop:
        with pytest.raises(NotImplementedError):
            asyncio.run(engine.afetch("default", 5, "n1"))
        return

    async def main() -> tuple[list[Job[Any]], list[Job[Any]], set[int], set[int]]:
        fetched = await engine.afetch("default", 5, "n1")
        again = await engine.afetch("default", 5, "n2")
        now = datetime.now(UTC)
        first = fetched[0]
        stale = await engine.aack([Ack(first.id, first.attempt + 1, JobState.COMPLETED, now)])
        written = await engine.aack(
            [Ack(j.id, j.attempt, JobState.COMPLETED, now) for j in fetched]
        )
        return fetched, again, stale, written

    fetched, again, stale, written = asyncio.run(main())
    assert [j.priority for j in fetched] == [0, 1, 2]
    assert {j.attempted_by for j in fetched} == {"n1"}
    assert again == []
    assert stale == set()  # not this attempt's to write
    assert written == {j.id for j in stored}
    assert {app.get_job(j.id).state for j in stored} == {JobState.COMPLETED}


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)  # SQLite has no JIT
def test_the_pools_sessions_run_without_jit(make_app: Callable[..., App]) -> None:
    """PostgreSQL JIT-compiled the args/meta filter's recursive walk even over a few rows
    (0.2-0.4 s a call): jobsaga's own sessions turn it off."""
    app = make_app(Noop)
    with app.engine.read() as tx:
        [row] = tx.execute("SHOW jit")
    assert dict(row) == {"jit": "off"}
