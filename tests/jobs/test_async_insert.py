"""``await app.ainsert(...)``: on PostgreSQL it runs on the caller's loop (no thread), takes
the caller's ``psycopg.AsyncConnection`` for an insert inside their transaction (the FastAPI /
async SQLAlchemy case), and keeps its connections per loop without leaking them. On SQLite it
runs in a thread, and an async connection is a clear error."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from jobsaga import App, DatabaseUnavailable, Job, JobState, Worker
from jobsaga.engines.postgres_copy import COPY_MIN
from jobsaga.errors import ConfigError
from tests.jobs.conftest import count_jobs, wait_final

BULK = COPY_MIN * 2


class Plain(Worker, name="tests.async_insert.plain"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Keyed(Worker, name="tests.async_insert.keyed", unique={"period": None}):
    def perform(self, job: Job[Any]) -> None:
        return None


postgres_only = pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)


@postgres_only
def test_ainsert_does_not_use_a_thread(app: App) -> None:
    """With the loop's default executor shut down, anything that hops to a thread
    (``asyncio.to_thread``, ``run_in_executor``) raises: ainsert, ainsert_all (one statement,
    COPY and unique jobs alike) work all the same."""

    async def main() -> list[Job[Any]]:
        await asyncio.get_running_loop().shutdown_default_executor()
        with pytest.raises(RuntimeError):  # the check itself: a thread hop fails here
            await asyncio.to_thread(lambda: None)
        one = await app.ainsert(Plain.new({"n": 0}))
        few = await app.ainsert_all([Plain.new({"n": i}) for i in range(1, 4)])
        many = await app.ainsert_all([Plain.new({"n": i}) for i in range(4, 4 + BULK)])
        keyed = await app.ainsert_all([Keyed.new({"k": i % 3}) for i in range(BULK)])
        return [one, *few, *many, *keyed]

    jobs = asyncio.run(main())
    assert count_jobs(app) == 4 + BULK + 3
    assert [job.args["n"] for job in jobs[: 4 + BULK]] == list(range(4 + BULK))
    for job in jobs:
        assert app.get_job(job.id) == dataclasses.replace(job, conflict=False)
    assert sum(not job.conflict for job in jobs[4 + BULK :]) == 3


def test_ainsert_returns_what_insert_does(app: App) -> None:
    specs = [Plain.new({"n": 1}, tags=["a"], meta={"m": 1}), Plain.new({"n": 2}, schedule_in=60)]

    async def main() -> tuple[Job[Any], list[Job[Any]], list[Job[Any]]]:
        return (
            await app.ainsert(specs[0]),
            await app.ainsert_all(specs),
            await app.ainsert_all([Keyed.new({"k": 1}), Keyed.new({"k": 1})]),
        )

    one, both, keyed = asyncio.run(main())
    for job in (one, *both, keyed[0]):
        assert app.get_job(job.id) == job
    assert both[1].state is JobState.SCHEDULED
    assert keyed[1].conflict and keyed[1].id == keyed[0].id
    assert asyncio.run(app.ainsert_all([])) == []


@postgres_only
@pytest.mark.parametrize("size", [1, 3, BULK])
def test_ainsert_in_the_callers_async_transaction(app: App, db_url: str, size: int) -> None:
    """The job exists only if the caller's transaction commits: invisible before, gone after
    a rollback or an exception in ``conn.transaction()``."""

    async def main() -> tuple[list[Job[Any]], list[Job[Any]], list[Job[Any]]]:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            committed = await app.ainsert_all([Plain.new({"n": i}) for i in range(size)], conn=conn)
            assert app.get_job(committed[0].id) is None  # another connection cannot see it
            assert await count_on(conn) == size  # the caller's own transaction can
            await conn.commit()
            rolled_back = await app.ainsert_all(
                [Plain.new({"n": i}) for i in range(size)], conn=conn
            )
            await conn.rollback()
            failed: list[Job[Any]] = []
            with pytest.raises(RuntimeError, match="boom"):
                async with conn.transaction():
                    failed = await app.ainsert_all(
                        [Keyed.new({"k": i}) for i in range(size)], conn=conn
                    )
                    raise RuntimeError("boom")
        return committed, rolled_back, failed

    committed, rolled_back, failed = asyncio.run(main())
    assert count_jobs(app) == size
    assert all(app.get_job(job.id) == job for job in committed)
    assert all(app.get_job(job.id) is None for job in rolled_back + failed)


async def count_on(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM jobsaga_jobs")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


@postgres_only
def test_the_wake_up_is_sent_in_the_callers_transaction(app: App, db_url: str) -> None:
    """The NOTIFY goes with the caller's transaction: delivered at its commit, after a
    notification committed meanwhile (delivery follows commit order), never before."""
    heard: list[dict[str, Any]] = []
    marker = threading.Event()
    got = threading.Event()

    def on_payload(payload: Any) -> None:
        if payload.get("marker"):
            marker.set()
        elif "queues" in payload:
            heard.append(dict(payload))
            got.set()

    def notify_marker() -> None:
        with app.engine.transaction() as tx:
            app.engine.notify(tx, {"marker": True})

    stop = app.engine.listen(on_payload)
    try:
        for _ in range(100):  # until the listener's connection hears the channel
            notify_marker()
            if marker.wait(0.1):
                break
        assert marker.is_set()

        async def main() -> None:
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                await app.ainsert(Plain.new(), conn=conn)
                marker.clear()
                notify_marker()  # committed after the insert's statements, before its commit
                assert marker.wait(10)
                assert heard == []  # the insert's NOTIFY was not sent on its own
                await conn.commit()
            assert got.wait(10)

        asyncio.run(main())
        assert heard == [{"queues": ["default"], "scheduled": False}]
    finally:
        stop()


@postgres_only
def test_a_job_inserted_in_an_async_transaction_runs_once_committed(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(Plain)
    with app.node({"default": 2}, poll_interval=5.0).start_in_thread():

        async def main() -> Job[Any]:
            async with await psycopg.AsyncConnection.connect(db_url) as conn:
                stored = await app.ainsert(Plain.new(), conn=conn)
                await conn.commit()
            return stored

        stored = asyncio.run(main())
        assert wait_final(app, stored.id, timeout=5).state is JobState.COMPLETED


@postgres_only
def test_a_sync_connection_still_works_with_ainsert(app: App, db_url: str) -> None:
    """A sync ``psycopg.Connection`` given to ``ainsert`` is used as before (in a thread)."""
    with psycopg.connect(db_url) as conn:
        stored = asyncio.run(app.ainsert(Plain.new(), conn=conn))
        assert app.get_job(stored.id) is None
        conn.commit()
    assert app.get_job(stored.id) == stored


@postgres_only
def test_an_async_connection_in_a_sync_call_is_refused(app: App, db_url: str) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            with pytest.raises(ConfigError, match="use `await app.ainsert"):
                app.insert(Plain.new(), conn=conn)  # type: ignore[arg-type]

    asyncio.run(main())
    with pytest.raises(ConfigError, match="takes a psycopg.Connection .* got object"):
        asyncio.run(app.ainsert(Plain.new(), conn=object()))  # type: ignore[arg-type]
    assert count_jobs(app) == 0


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_an_async_connection_on_sqlite_is_a_clear_error(app: App) -> None:
    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect("postgresql://postgres@127.0.0.1:5432/test")
        async with conn:
            with pytest.raises(ConfigError, match="caller's transaction needs PostgreSQL"):
                await app.ainsert(Plain.new(), conn=conn)

    asyncio.run(main())
    assert count_jobs(app) == 0


@postgres_only
def test_connections_are_kept_per_loop_and_closed(app: App) -> None:
    """Each loop gets its own connections (an async connection belongs to its loop); a loop
    that has ended leaves none open once another loop inserts; close() closes the rest, and
    the app works again afterwards."""
    engine: Any = app.engine
    kept: list[Any] = []

    async def insert_and_note() -> None:
        await asyncio.gather(*(app.ainsert(Plain.new()) for _ in range(3)))
        kept.extend(conn for mine in engine._async._loops.values() for conn in mine.idle)

    asyncio.run(insert_and_note())  # loop 1, now closed
    first = list(kept)
    assert first and all(not conn.closed for conn in first)
    assert len(first) <= app.engine.pool_size  # type: ignore[attr-defined]
    kept.clear()
    asyncio.run(insert_and_note())  # loop 2: loop 1's connections are closed on the way
    assert all(conn.closed for conn in first)
    assert engine._async.open_count == len(kept) > 0
    app.close()
    assert all(conn.closed for conn in kept) and engine._async.open_count == 0
    assert count_jobs(app) == 6
    asyncio.run(app.ainsert(Plain.new()))  # usable after close, as the sync API is
    asyncio.run(app.aclose())
    assert count_jobs(app) == 7


@postgres_only
def test_a_loop_in_another_thread_has_its_own_connections(app: App) -> None:
    done: list[Job[Any]] = []

    def other_thread() -> None:
        done.append(asyncio.run(app.ainsert(Plain.new({"t": 1}))))

    async def main() -> Job[Any]:
        thread = threading.Thread(target=other_thread)
        thread.start()
        mine = await app.ainsert(Plain.new({"t": 0}))
        while thread.is_alive():
            await asyncio.sleep(0.01)
        return mine

    mine = asyncio.run(main())
    assert done and done[0].id != mine.id
    assert count_jobs(app) == 2


@postgres_only
def test_a_cancelled_ainsert_leaves_no_broken_connection(app: App, db_url: str) -> None:
    """An insert cancelled while it waits (here on a table lock) gives its connection up
    rather than back: the next insert works."""

    async def main() -> None:
        await app.ainsert(Plain.new())  # a connection is open and idle
        with psycopg.connect(db_url) as blocker:
            blocker.execute("LOCK TABLE jobsaga_jobs IN EXCLUSIVE MODE")
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(app.ainsert(Plain.new({"cancelled": True})), 0.3)
            blocker.rollback()
        stored = await app.ainsert(Plain.new({"after": True}))
        assert app.get_job(stored.id) == stored

    asyncio.run(main())


@postgres_only
def test_an_async_connection_in_autocommit_gets_one_transaction(app: App, db_url: str) -> None:
    async def main() -> list[Job[Any]]:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            jobs = await app.ainsert_all([Keyed.new({"k": i}) for i in range(BULK)], conn=conn)
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            return jobs

    jobs = asyncio.run(main())
    assert count_jobs(app) == BULK and app.get_job(jobs[-1].id) == jobs[-1]


@postgres_only
def test_a_connection_in_use_when_the_app_closes_is_closed_when_given_back(
    app: App, db_url: str
) -> None:
    engine: Any = app.engine
    held: list[Any] = []

    async def main() -> None:
        await app.ainsert(Plain.new())
        async with engine._async.connection() as conn:  # in use while the app closes
            held.append(conn)
            app.close()
        assert conn.closed and engine._async.open_count == 0

    asyncio.run(main())
    assert held and held[0].closed


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:hunter2-very-secret%zz@127.0.0.1:5432/test",  # libpq quotes it back
        "postgresql://user:hunter2-very-secret@127.0.0.1:1/test",  # nothing listens there
    ],
)
def test_an_async_connect_error_masks_the_password(url: str) -> None:
    """As the sync probe's (tests/core/test_api_secrets.py): not in the message, nor in the
    chained driver error a traceback shows."""
    import traceback

    app = App(url)
    try:
        with pytest.raises(DatabaseUnavailable) as info:
            asyncio.run(app.ainsert(Plain.new()))
        shown = "".join(traceback.format_exception(info.value))
        assert "cannot connect to PostgreSQL" in shown
        assert "hunter2-very-secret" not in shown
    finally:
        app.close()
