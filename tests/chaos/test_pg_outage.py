"""PostgreSQL unreachable for a while (issue 9, fault 9): what the API does during the outage
and how soon it works again, on the throwaway cluster.

Before the fix, after a 15 s outage one insert blocked 29 s (psycopg_pool's reconnect
backoff: 1, 2, 4, 8, 16 s), calls during the outage waited out the 30 s pool timeout, and raw
psycopg errors (``AdminShutdown``, ``PoolTimeout``) reached the caller. Now a call during an
outage fails within a second with ``DatabaseUnavailable`` naming the reason, the first call
after the server's return succeeds, and a running node takes new jobs within about a second.
Each test prints its figures (``pytest -s``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import psycopg
import pytest

from jobsaga import App, DatabaseError, DatabaseUnavailable, Job, JobState, Worker
from jobsaga.errors import DataRejected
from jobsaga.operations.jobs import with_retries

from ..helpers import wait_until
from .pgcluster import PgCluster

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-cluster")]

OUTAGE = 2.0
"""Seconds the server stays down: long enough for psycopg_pool's backoff to reach 2 s."""
FAIL_FAST = 1.0
"""A call during the outage must fail within this (it waited 30 s for the pool before)."""
BACK = 1.0
"""The first insert after the server is back must succeed within this."""
RESUME = 2.0
"""A running node must complete a job inserted after the server's return within this."""

Outage = Literal["fast", "immediate", "kill"]


class Quick(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Busy(Worker, queue="default"):
    """Still executing when the server goes down, so its outcome is written after."""

    def perform(self, job: Job[Any]) -> None:
        time.sleep(1.0)


@pytest.fixture
def app(chaos_pg_url: str) -> Iterator[App]:
    app = App(chaos_pg_url, workers=[Quick, Busy])
    app.migrate()
    yield app
    app.close()


def take_down(cluster: PgCluster, how: Outage) -> None:
    if how == "kill":
        cluster.kill()
    else:
        cluster.stop(how)


def driver_reason(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def assert_unavailable(call: Callable[[], object], label: str) -> float:
    """``call`` raises DatabaseUnavailable quickly, the psycopg error chained and its reason
    in the message; never a raw driver error. Returns the seconds it took."""
    started = time.monotonic()
    with pytest.raises(DatabaseError) as raised:
        call()
    took = time.monotonic() - started
    exc = raised.value
    assert isinstance(exc, DatabaseUnavailable), f"{label}: {type(exc).__name__}: {exc}"
    assert type(exc).__module__ == "jobsaga.errors", label
    assert isinstance(exc.__cause__, psycopg.Error), f"{label}: cause {exc.__cause__!r}"
    assert driver_reason(exc.__cause__) in str(exc), f"{label}: reason missing from {exc}"
    assert took < FAIL_FAST, f"{label} took {took:.2f} s to fail"
    return took


@pytest.mark.parametrize("how", ["fast", "immediate", "kill"])
def test_calls_during_an_outage_fail_fast_and_the_first_after_it_succeeds(
    app: App, pg_cluster: PgCluster, how: Outage
) -> None:
    job = app.insert(Quick.new({}))
    warm_pool(app)
    take_down(pg_cluster, how)
    calls: dict[str, Callable[[], object]] = {
        "insert": lambda: app.insert(Quick.new({})),
        "insert_all": lambda: app.insert_all([Quick.new({}), Quick.new({})]),
        "insert unique": lambda: app.insert(Quick.new({}, unique={"period": 60})),
        "get_job": lambda: app.get_job(job.id),
        "list_jobs": lambda: app.list_jobs(),
        "cancel_job": lambda: app.cancel_job(job.id),
        "migrate": app.migrate,
    }
    took = {label: assert_unavailable(call, label) for label, call in calls.items()}
    # several threads at once each get their answer quickly too
    for took_in_thread, error in concurrently(calls["insert"], threads=8):
        assert isinstance(error, DatabaseUnavailable), repr(error)
        assert took_in_thread < FAIL_FAST
    time.sleep(OUTAGE)
    assert_unavailable(calls["insert"], "insert at the end of the outage")

    pg_cluster.start()
    up = time.monotonic()
    back = app.insert(Quick.new({}))  # the very first call after the return: no error
    first = time.monotonic() - up
    assert back.id > job.id
    assert app.get_job(back.id) is not None
    figures = ", ".join(f"{label} {t * 1000:.0f} ms" for label, t in took.items())
    print(f"\n[{how}] failing during the outage: {figures}")
    print(f"[{how}] first insert after the server's return: {first * 1000:.0f} ms")
    assert first < BACK


@pytest.mark.parametrize("how", ["terminate", "fast", "immediate", "kill"])
def test_the_first_call_after_an_idle_restart_succeeds(
    app: App, pg_cluster: PgCluster, chaos_pg_url: str, how: Outage | Literal["terminate"]
) -> None:
    """Pooled connections the server dropped while idle (a restart, or its sessions ended)
    are found before use: the first call neither fails nor waits."""
    job = app.insert(Quick.new({}))
    warm_pool(app)
    if how == "terminate":
        terminate_sessions(pg_cluster, chaos_pg_url)
    else:
        take_down(pg_cluster, how)
        pg_cluster.start()
    started = time.monotonic()
    back = app.insert(Quick.new({}))
    took = time.monotonic() - started
    assert app.get_job(job.id) is not None
    assert {j.id for j in app.list_jobs()} == {job.id, back.id}
    print(f"\n[{how}] first insert after an idle restart: {took * 1000:.0f} ms")
    assert took < BACK


def test_a_caller_waiting_for_a_pooled_connection_is_answered_at_once_too(
    chaos_pg_url: str, pg_cluster: PgCluster
) -> None:
    """Its pool's only connection is busy when the server goes down: the waiting caller is
    released with DatabaseUnavailable, not left to the 30 s pool timeout."""
    app = App(chaos_pg_url, workers=[Quick], pool_size=1)
    try:
        app.migrate()
        holder = threading.Thread(target=lambda: concurrently(slow_statement(app), threads=1))
        holder.start()
        wait_until(lambda: sessions_running(pg_cluster, "pg_sleep") == 1, timeout=10)
        waiter = threading.Thread(
            target=lambda: waited.extend(concurrently(lambda: app.list_jobs(), threads=1))
        )
        waited: list[tuple[float, Exception | None]] = []
        waiter.start()
        time.sleep(0.3)  # the waiter is queued for the busy connection
        pg_cluster.stop("fast")
        stopped = time.monotonic()
        waiter.join(60)
        released = time.monotonic() - stopped
        holder.join(60)
        [(_, error)] = waited
        print(f"\nwaiting caller released {released * 1000:.0f} ms after the stop: {error}")
        assert isinstance(error, DatabaseUnavailable), repr(error)
        assert released < FAIL_FAST + 0.5  # pg_ctl stop itself takes a moment
    finally:
        app.close()


@pytest.mark.parametrize(("how", "busy"), [("fast", True), ("immediate", True), ("fast", False)])
def test_a_running_node_resumes_within_a_second_or_two_of_the_return(
    app: App, pg_cluster: PgCluster, how: Outage, busy: bool
) -> None:
    """The node keeps running through the outage: busy (its jobs' outcomes are written back
    after the return) or idle (its fetches fail all along); a new job starts at once after."""
    running = app.insert_all([Busy.new({}), Busy.new({})]) if busy else []
    with app.node({"default": 2}, poll_interval=0.2).start_in_thread():
        wait_until(lambda: all(state(app, j.id) is JobState.EXECUTING for j in running), 10)
        take_down(pg_cluster, how)
        time.sleep(OUTAGE if busy else OUTAGE * 2)
        pg_cluster.start()
        up = time.monotonic()
        fresh = app.insert(Quick.new({}))
        inserted = time.monotonic() - up
        wait_until(lambda: state(app, fresh.id) is JobState.COMPLETED, timeout=30, interval=0.01)
        resumed = time.monotonic() - up
        wait_until(lambda: all(state(app, j.id) is JobState.COMPLETED for j in running), 30)
        settled = time.monotonic() - up
    print(
        f"\n[{how}, {'busy' if busy else 'idle'}] insert ok {inserted * 1000:.0f} ms after the "
        f"return, new job completed at {resumed:.2f} s"
        + (f", jobs running at the outage written back by {settled:.2f} s" if busy else "")
    )
    assert inserted < BACK
    assert resumed < RESUME


def test_a_database_error_is_sorted_by_what_retrying_can_do(app: App) -> None:
    """Driver errors that are not about the connection come out of every engine entry point
    as jobsaga's too: bad data is DataRejected, a transient failure DatabaseUnavailable,
    anything else DatabaseError, each with the driver's error chained."""
    engine = app.engine
    cases: list[tuple[str, dict[str, Any] | None, type[DatabaseError], type[psycopg.Error]]] = [
        ("SELECT 'x'::int", None, DataRejected, psycopg.errors.InvalidTextRepresentation),
        ("SELECT 99999999999::int", None, DataRejected, psycopg.errors.NumericValueOutOfRange),
        (
            "SELECT '\"a\\u0000\"'::jsonb",
            None,
            DataRejected,
            psycopg.errors.UntranslatableCharacter,
        ),
        ("SELECT '294277-01-01'::timestamptz", None, DataRejected, psycopg.errors.DataError),
        ("SELECT %(v)s::text", {"v": "a\x00b"}, DataRejected, psycopg.DataError),  # client-side
        (raising("57P01"), None, DatabaseUnavailable, psycopg.errors.AdminShutdown),
        (raising("40P01"), None, DatabaseUnavailable, psycopg.errors.DeadlockDetected),
        (raising("25006"), None, DatabaseUnavailable, psycopg.errors.ReadOnlySqlTransaction),
        (raising("54000"), None, DataRejected, psycopg.errors.ProgramLimitExceeded),
        (raising("57014"), None, DatabaseError, psycopg.errors.QueryCanceled),
        ("SELECT * FROM no_such_table", None, DatabaseError, psycopg.errors.UndefinedTable),
    ]
    for sql, params, expected, cause in cases:
        for path in ("transaction", "execute_one"):
            with pytest.raises(DatabaseError) as raised:
                if path == "transaction":
                    in_transaction(app, sql, params)
                else:
                    engine.execute_one(sql, params)
            exc = raised.value
            assert type(exc) is expected, f"{path} {sql}: {type(exc).__name__}: {exc}"
            assert isinstance(exc.__cause__, cause), f"{path} {sql}: {exc.__cause__!r}"
    assert app.insert(Quick.new({})).id  # the pool is fine after all that


def test_callers_transaction_errors_are_jobsagas_too(app: App, chaos_pg_url: str) -> None:
    with psycopg.connect(chaos_pg_url) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1/0")  # the caller's own statement: the caller's error
        with pytest.raises(DatabaseError) as raised:
            app.insert(Quick.new({}), conn=conn)  # ours, in the aborted transaction
        assert isinstance(raised.value.__cause__, psycopg.errors.InFailedSqlTransaction)
        conn.rollback()
        assert app.insert(Quick.new({}), conn=conn).id


def test_a_deadlock_is_still_retried_through_the_wrapped_error(app: App) -> None:
    """Job operations rerun a transaction PostgreSQL picked as a deadlock victim: the engine's
    wrapping must not hide the SQLSTATE from that retry."""
    tries = []

    def operation() -> str:
        tries.append(1)
        if len(tries) == 1:
            in_transaction(app, raising("40P01"), None)
        return "done"

    assert with_retries(operation) == "done"
    assert len(tries) == 2


# --- helpers -----------------------------------------------------------------------------


def raising(sqlstate: str) -> str:
    """A statement that fails with the given SQLSTATE, as PostgreSQL itself would."""
    return f"DO $$ BEGIN RAISE EXCEPTION 'raised {sqlstate}' USING ERRCODE = '{sqlstate}'; END $$"


def in_transaction(app: App, sql: str, params: dict[str, Any] | None) -> None:
    with app.engine.transaction() as tx:
        tx.execute(sql, params)


def state(app: App, job_id: int) -> JobState | None:
    job = app.get_job(job_id)
    return None if job is None else job.state


def warm_pool(app: App, threads: int = 4) -> None:
    """Several idle pooled connections, as an app that has been busy has."""
    results = concurrently(lambda: app.engine.execute_one("SELECT pg_sleep(0.05)"), threads)  # type: ignore[attr-defined]
    assert [error for _, error in results] == [None] * threads


def concurrently(call: Callable[[], object], threads: int) -> list[tuple[float, Exception | None]]:
    """Run ``call`` in ``threads`` threads at once: the seconds each took and what it raised."""
    results: list[tuple[float, Exception | None]] = []
    gate = threading.Barrier(threads)

    def one() -> None:
        gate.wait()
        started = time.monotonic()
        error: Exception | None = None
        try:
            call()
        except Exception as exc:
            error = exc
        results.append((time.monotonic() - started, error))

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return results


def slow_statement(app: App) -> Callable[[], object]:
    return lambda: app.engine.execute_one("SELECT pg_sleep(30)")  # type: ignore[attr-defined]


def sessions_running(cluster: PgCluster, text: str) -> int:
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND pid <> pg_backend_pid()",
            [f"%{text}%"],
        ).fetchone()
    return int(row[0]) if row else 0


def terminate_sessions(cluster: PgCluster, url: str) -> None:
    """End every session on the app's database, as an administrator (or a failover) would."""
    database = url.rsplit("/", 1)[1]
    with psycopg.connect(cluster.url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )
        wait_until(
            lambda: (
                not admin.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE datname = %s", [database]
                ).fetchall()
            )
        )
