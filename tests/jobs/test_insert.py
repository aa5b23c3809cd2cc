"""insert, insert_all, ainsert: order kept, one round trip for many, the caller's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from jobsaga import App, ConfigError, Job, JobState, Worker
from jobsaga.engines.base import Engine
from tests.jobs.conftest import count_jobs, job, rows


class Noop(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


class UniqueNoop(Worker, unique={"period": None}):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_insert_returns_the_stored_job(app: App) -> None:
    stored = app.insert(Noop.new({"n": 1}))
    assert stored.id > 0
    assert stored.state is JobState.AVAILABLE
    assert stored.attempt == 0 and stored.errors == ()
    assert stored.conflict is False
    assert job(app, stored.id) == stored


def test_insert_all_keeps_the_order_given(app: App) -> None:
    specs = [
        Noop.new({"n": 0}),
        UniqueNoop.new({"n": 1}),
        Noop.new({"n": 2}, schedule_in=60),
        UniqueNoop.new({"n": 3}),
        Noop.new({"n": 4}, priority=5),
    ]
    jobs = app.insert_all(specs)
    assert [j.args["n"] for j in jobs] == [0, 1, 2, 3, 4]
    assert [j.state for j in jobs] == [
        JobState.AVAILABLE,
        JobState.AVAILABLE,
        JobState.SCHEDULED,
        JobState.AVAILABLE,
        JobState.AVAILABLE,
    ]
    assert len({j.id for j in jobs}) == 5
    assert [r["id"] for r in rows(app)] == sorted(j.id for j in jobs)
    assert app.insert_all([]) == []


class StatementCounter:
    """Counts the statements and transactions an engine runs (the database is real)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.transactions = 0
        self.statements: list[str] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = self.engine.transaction
        counter = self

        def transaction(conn: Any = None) -> Any:
            from contextlib import contextmanager

            @contextmanager
            def counted() -> Iterator[Any]:
                counter.transactions += 1
                with original(conn) as tx:
                    inner = tx.execute

                    def execute(sql: str, params: Any = None) -> Any:
                        counter.statements.append(sql)
                        return inner(sql, params)

                    tx.execute = execute  # type: ignore[method-assign]
                    yield tx

            return counted()

        monkeypatch.setattr(self.engine, "transaction", transaction)
        one_statement = self.engine.execute_one

        def execute_one(sql: str, params: Any = None) -> Any:
            """A statement that is its own (autocommitted) transaction."""
            counter.transactions += 1
            counter.statements.append(sql)
            return one_statement(sql, params)

        monkeypatch.setattr(self.engine, "execute_one", execute_one)


def test_insert_all_is_one_round_trip(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    app.insert(Noop.new())  # warm up: the PostgreSQL engine looks up its NOTIFY channel once
    counter = StatementCounter(app.engine)
    counter.install(monkeypatch)
    jobs = app.insert_all([Noop.new({"n": i}) for i in range(1000)])
    assert len(jobs) == 1000 and [j.args["n"] for j in jobs] == list(range(1000))
    assert counter.transactions == 1
    inserts = [s for s in counter.statements if "INSERT INTO jobsaga_jobs" in s]
    assert len(inserts) == 1
    # at most the one NOTIFY beside the insert
    assert len(counter.statements) <= 2
    assert count_jobs(app) == 1001


def test_ainsert_and_ainsert_all(app: App) -> None:
    async def main() -> tuple[Job[Any], list[Job[Any]]]:
        one = await app.ainsert(Noop.new({"n": "one"}))
        many = await app.ainsert_all([Noop.new({"n": i}) for i in range(3)])
        return one, many

    one, many = asyncio.run(main())
    assert one.args == {"n": "one"}
    assert [j.args["n"] for j in many] == [0, 1, 2]
    assert count_jobs(app) == 4


def test_insert_rejects_what_new_did_not_build(app: App) -> None:
    with pytest.raises(TypeError, match=r"Worker\.new"):
        app.insert({"worker": "x"})  # type: ignore[arg-type]
    assert count_jobs(app) == 0


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_insert_in_the_callers_transaction(app: App, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        inside = app.insert(Noop.new({"order": 1}), conn=conn)
        assert app.get_job(inside.id) is None  # not visible before the caller commits
        conn.commit()
    assert job(app, inside.id).args == {"order": 1}

    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT 1")
        rolled_back = app.insert_all([Noop.new({"order": 2}), Noop.new({"order": 3})], conn=conn)
        conn.rollback()
    assert all(app.get_job(j.id) is None for j in rolled_back)
    assert count_jobs(app) == 1

    with (
        pytest.raises(RuntimeError, match="boom"),
        psycopg.connect(db_url) as conn,
        conn.transaction(),
    ):
        failed = app.insert(Noop.new({"order": 4}), conn=conn)
        raise RuntimeError("boom")
    assert app.get_job(failed.id) is None
    assert count_jobs(app) == 1


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_a_job_inserted_in_a_transaction_runs_once_committed(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(Noop)
    with app.node({"default": 2}, poll_interval=5.0).start_in_thread():
        with psycopg.connect(db_url) as conn:
            stored = app.insert(Noop.new(), conn=conn)
            conn.commit()
        from tests.jobs.conftest import wait_final

        assert wait_final(app, stored.id, timeout=3).state is JobState.COMPLETED


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_callers_transaction_needs_postgres(app: App) -> None:
    with pytest.raises(ConfigError, match="PostgreSQL"):
        app.insert(Noop.new(), conn=object())


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_the_callers_connection_must_be_a_sync_psycopg_connection(app: App, db_url: str) -> None:
    async def insert_on_an_async_connection() -> None:
        async with await psycopg.AsyncConnection.connect(db_url) as conn:
            await app.ainsert(Noop.new(), conn=conn)

    with pytest.raises(ConfigError, match="sync psycopg.Connection"):
        asyncio.run(insert_on_an_async_connection())
    with pytest.raises(ConfigError, match="takes a psycopg.Connection, got object"):
        app.insert(Noop.new(), conn=object())
    assert count_jobs(app) == 0


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_callers_connection_with_another_search_path_still_wakes_nodes(
    make_app: Callable[..., App], db_url: str, pg_admin: psycopg.Connection[Any]
) -> None:
    """The NOTIFY channel follows the app's schema, not the caller's current_schema()."""
    import re
    from urllib.parse import quote, unquote

    from tests.jobs.conftest import wait_final

    schema = re.search(r"search_path=([a-z0-9_]+)", unquote(db_url))
    assert schema is not None
    decoy = f"{schema.group(1)}_decoy"
    pg_admin.execute(f'CREATE SCHEMA "{decoy}"')
    try:
        caller_url = (
            db_url.split("?")[0] + "?options=" + quote(f"-csearch_path={decoy},{schema.group(1)}")
        )
        web = make_app()  # a process that only inserts: its engine has no channel yet
        worker_app = make_app(Noop)
        with worker_app.node({"default": 2}, poll_interval=5.0).start_in_thread():
            with psycopg.connect(caller_url) as conn:
                assert conn.execute("SELECT current_schema()").fetchone() == (decoy,)
                stored = web.insert(Noop.new(), conn=conn)
                conn.commit()
            assert wait_final(worker_app, stored.id, timeout=3).state is JobState.COMPLETED
    finally:
        pg_admin.execute(f'DROP SCHEMA "{decoy}" CASCADE')


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_a_plain_insert_is_one_statement_that_wakes_listeners(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    heard: list[dict[str, Any]] = []
    got = threading.Event()

    def on_payload(payload: Any) -> None:
        if "queues" in payload:
            heard.append(dict(payload))
            got.set()

    stop = app.engine.listen(on_payload)
    try:
        for _ in range(25):  # warm up until the listener's connection hears an insert
            app.insert(Noop.new())
            if got.wait(0.2):
                break
        assert got.is_set()
        time.sleep(0.2)  # let any late echo of the warm-up arrive before clearing
        heard.clear()
        got.clear()
        counter = StatementCounter(app.engine)
        counter.install(monkeypatch)
        app.insert_all([Noop.new(), Noop.new(queue="mailers"), Noop.new(schedule_in=60)])
        assert (counter.transactions, len(counter.statements)) == (1, 1)
        assert "pg_notify" in counter.statements[0]
        assert got.wait(5)
        assert heard == [{"queues": ["default", "mailers"], "scheduled": True}]
    finally:
        stop()


def test_the_returned_jobs_are_what_was_stored(app: App) -> None:
    from datetime import UTC, datetime, timedelta

    at = datetime.now(UTC) + timedelta(hours=1)
    specs = [
        Noop.new({"n": 1, "nested": {"b": [1, 2], "a": None}}, tags=["x", "y"], meta={"k": "v"}),
        Noop.new({"n": 2}, queue="mailers", priority=3, max_attempts=4, schedule_in=30),
        Noop.new({"n": 3}, scheduled_at=at),
    ]
    for returned in (app.insert_all(specs), [app.insert(spec) for spec in specs]):
        stored = [app.get_job(job.id) for job in returned]
        assert returned == stored
        assert [job.state for job in returned] == [JobState.AVAILABLE, *[JobState.SCHEDULED] * 2]
        assert returned[2].scheduled_at == at
