"""Bulk inserts: what COPY writes (PostgreSQL, from COPY_MIN jobs on) is what was asked, ids
in order, uniqueness held within a batch, against stored rows and between racing batches,
the caller's transaction kept, and one wake-up per insert whatever its size. Both engines
(on SQLite the same batches take its one statement)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from jobsaga import App, Job, JobState, Worker
from jobsaga.engines.postgres_copy import COPY_MIN
from tests.jobs.conftest import count_jobs, rows

BULK = COPY_MIN * 3


class Plain(Worker, name="tests.fast.plain"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Keyed(Worker, name="tests.fast.keyed", unique={"period": None, "keys": ["key"]}):
    def perform(self, job: Job[Any]) -> None:
        return None


class OddName(Worker, name="tests.fast\todd\nname\\N"):
    """A worker name holding what COPY's text format gives meaning to."""

    def perform(self, job: Job[Any]) -> None:
        return None


class ScheduledOnly(
    Worker, name="tests.fast.scheduled_only", unique={"period": None, "states": ["scheduled"]}
):
    def perform(self, job: Job[Any]) -> None:
        return None


ODD_TEXT = ["tab\there", "new\nline", "cr\rx", "back\\slash", '"quoted"', "\\N", "\\.", "é😀", ""]


def test_a_bulk_insert_stores_what_was_asked(make_app: Callable[..., App]) -> None:
    """Text COPY must escape what its format gives meaning to (tab, newline, backslash, \\N)
    in args, meta, tags and worker names alike; times, options and the order hold."""
    app = make_app(Plain, OddName)
    at = datetime.now(UTC).replace(microsecond=250001) + timedelta(days=2)
    specs = []
    for i in range(BULK):
        odd = ODD_TEXT[i % len(ODD_TEXT)]
        specs.append(
            (OddName if i % 5 == 0 else Plain).new(
                {"n": i, "odd": odd, odd: [odd, 1.5, None, True]},
                queue=f"q-{i % 3}" if i % 7 == 0 else "default",
                priority=i % 10,
                max_attempts=1 + i % 5,
                tags=[odd, "t"] if i % 3 == 0 else [],
                meta={"m": odd} if i % 4 == 0 else {},
                schedule_in=60 if i % 11 == 0 and i % 13 else None,
                scheduled_at=at if i % 13 == 0 else None,
            )
        )
    jobs = app.insert_all(specs)
    assert [job.args for job in jobs] == [spec.args for spec in specs]
    ids = [job.id for job in jobs]
    assert ids == sorted(ids) and len(set(ids)) == BULK  # ids follow the order given
    assert [job.id for job in app.list_jobs(limit=None, newest_first=False)] == ids
    for job in jobs:
        assert app.get_job(job.id) == job
    assert {job.state for job in jobs} == {JobState.AVAILABLE, JobState.SCHEDULED}
    assert jobs[13].scheduled_at == at
    assert jobs[11].scheduled_at == jobs[11].inserted_at + timedelta(seconds=60)


@pytest.mark.parametrize("size", [100_000])
def test_a_hundred_thousand_jobs_in_one_insert(make_app: Callable[..., App], size: int) -> None:
    app = make_app(Plain)
    app.insert(Plain.new({"before": True}))
    specs = [Plain.new({"n": i}, schedule_in=3600 if i % 10 == 0 else None) for i in range(size)]
    jobs = app.insert_all(specs)
    assert len(jobs) == size
    assert [job.args["n"] for job in jobs] == list(range(size))
    ids = [job.id for job in jobs]
    assert len(set(ids)) == size and ids == sorted(ids)
    assert count_jobs(app) == size + 1
    assert app.count_jobs() == {"available": size - size // 10 + 1, "scheduled": size // 10}
    stored = rows(app, "id >= " + str(ids[0]))
    assert [row["id"] for row in stored] == ids
    assert app.get_job(ids[-1]) == jobs[-1] and app.get_job(ids[0]) == jobs[0]


def test_unique_jobs_in_bulk_keep_one_job_per_key(make_app: Callable[..., App]) -> None:
    """A duplicate within one batch, a key held by a stored job, and a key held by a job born
    outside its protected states: each comes back as its holder, marked conflict."""
    app = make_app(Keyed, Plain, ScheduledOnly)
    held = app.insert(Keyed.new({"key": "held", "n": -1}))
    scheduled_holder = app.insert(ScheduledOnly.new({"k": 1}, schedule_in=60))
    specs: list[Any] = []
    for i in range(BULK):
        specs.append(Keyed.new({"key": f"k{i % (BULK // 2)}", "n": i}))  # each key twice
    specs[5] = Keyed.new({"key": "held", "n": 5})
    specs[7] = Plain.new({"plain": 7})
    specs[9] = ScheduledOnly.new({"k": 1})  # available: holds no key, meets the holder
    specs[11] = ScheduledOnly.new({"k": 2})  # no holder: inserted
    jobs = app.insert_all(specs)

    assert jobs[5] == dataclasses.replace(held, conflict=True)
    assert not jobs[7].conflict and jobs[7].args == {"plain": 7}
    assert jobs[9].conflict and jobs[9].id == scheduled_holder.id
    assert not jobs[11].conflict and jobs[11].unique_key is None
    first: dict[str, Job[Any]] = {}
    for index, job in enumerate(jobs):
        if index in (5, 7, 9, 11):
            continue
        key = job.args["key"]
        if key not in first:
            first[key] = job
            assert not job.conflict and job.args == specs[index].args
            assert app.get_job(job.id) == job  # unique_key included
        else:
            assert job.conflict and job.id == first[key].id
    keys = [row["unique_key"] for row in rows(app) if row["unique_key"] is not None]
    assert len(keys) == len(set(keys))
    assert count_jobs(app) == 2 + len(first) + 2  # the holders, one per key, 7 and 11


def test_racing_bulk_inserts_of_the_same_keys_create_each_job_once(
    make_app: Callable[..., App],
) -> None:
    """Two apps (two connections) insert overlapping unique batches at the same moment, the
    keys in different orders: every key is stored once, neither deadlocks."""
    apps = [make_app(Keyed, pool_size=1) for _ in range(2)]
    keys = [f"k{i}" for i in range(BULK)]
    batches = [
        [Keyed.new({"key": k}) for k in keys],
        [Keyed.new({"key": k}) for k in reversed(keys)],
    ]
    results: list[list[Job[Any]]] = [[], []]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def insert(index: int) -> None:
        try:
            barrier.wait(10)
            results[index] = apps[index].insert_all(batches[index])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert count_jobs(apps[0]) == BULK
    by_key = [{job.args["key"]: job for job in batch} for batch in results]
    for key in keys:
        one, other = by_key[0][key], by_key[1][key]
        assert one.id == other.id
        assert one.conflict != other.conflict  # exactly one of them created it


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_a_bulk_insert_in_the_callers_transaction(app: App, db_url: str) -> None:
    """COPY, and the staging table of unique jobs, run in the caller's transaction: nothing
    is visible before the commit, nothing stays after a rollback, and staging twice in one
    transaction works."""
    with psycopg.connect(db_url) as conn:
        plain = app.insert_all([Plain.new({"n": i}) for i in range(BULK)], conn=conn)
        keyed = app.insert_all([Keyed.new({"key": f"a{i}"}) for i in range(BULK)], conn=conn)
        again = app.insert_all([Keyed.new({"key": f"a{i}"}) for i in range(BULK)], conn=conn)
        assert all(job.conflict for job in again)
        assert [job.id for job in again] == [job.id for job in keyed]
        assert app.get_job(plain[0].id) is None and count_jobs(app) == 0
        conn.rollback()
    assert count_jobs(app) == 0

    with psycopg.connect(db_url) as conn:
        plain = app.insert_all([Plain.new({"n": i}) for i in range(BULK)], conn=conn)
        keyed = app.insert_all([Keyed.new({"key": f"b{i}"}) for i in range(BULK)], conn=conn)
        conn.commit()
    assert count_jobs(app) == 2 * BULK
    assert app.get_job(plain[-1].id) == plain[-1] and app.get_job(keyed[-1].id) == keyed[-1]


@pytest.mark.parametrize("size", [1, 3, BULK])
def test_one_wake_up_per_insert_all(make_app: Callable[..., App], size: int) -> None:
    """Whatever the number of jobs (one statement, or COPY), an insert wakes this process's
    nodes once and, on PostgreSQL, sends one NOTIFY, heard once."""
    app = make_app(Plain)
    local: list[dict[str, Any]] = []
    app.add_listener(lambda payload: local.append(dict(payload)))
    heard: list[dict[str, Any]] = []
    marker = threading.Event()

    def on_payload(payload: Any) -> None:
        if payload.get("marker"):
            marker.set()
        elif "queues" in payload:
            heard.append(dict(payload))

    stop = app.engine.listen(on_payload)
    try:
        if app.engine.hears_other_processes:
            _wait_listening(app, marker)
        specs = [Plain.new({"n": i}, queue="a" if i % 2 else "b") for i in range(size)]
        app.insert_all(specs)
        payload = {"queues": sorted({spec.queue for spec in specs}), "scheduled": False}
        assert local == [payload]
        if app.engine.hears_other_processes:
            marker.clear()
            _notify(app, {"marker": True})  # notifications arrive in commit order
            assert marker.wait(10)
            assert heard == [payload]
    finally:
        stop()


def _notify(app: App, payload: dict[str, Any]) -> None:
    with app.engine.transaction() as tx:
        app.engine.notify(tx, payload)


def _wait_listening(app: App, marker: threading.Event) -> None:
    """Until the listener's connection hears the channel (it LISTENs on its own thread)."""
    for _ in range(100):
        _notify(app, {"marker": True})
        if marker.wait(0.1):
            return
    raise AssertionError("the listener never heard the channel")


def test_the_bulk_job_builder_builds_what_the_constructor_does() -> None:
    """COPY's rows come back as jobs set slot by slot (half the cost of the frozen
    dataclass's ``__init__``): every field equal to the constructor's, defaults included.
    If ``Job`` ever needs its ``__init__``, the builder falls back to it (and this says so)."""
    from jobsaga.engines.postgres_copy import _constructed, new_job

    assert new_job is not _constructed, "Job changed: review postgres_copy._job_builder"
    now = datetime.now(UTC)
    for spec, state, at in [
        (Plain.new({"a": 1}), JobState.AVAILABLE, now),
        (Plain.new({}, tags=["x"], meta={"m": 1}, priority=3), JobState.SCHEDULED, now),
    ]:
        built = new_job(7, state, spec, now, at + timedelta(seconds=1))
        assert built == _constructed(7, state, spec, now, at + timedelta(seconds=1))
        assert built.conflict is False and built.unique_key is None and built.errors == ()
        keyed = new_job(8, state, spec, now, at, "key")
        assert keyed == _constructed(8, state, spec, now, at, "key") and keyed.unique_key == "key"


@pytest.mark.parametrize("engine_name", ["postgres"], indirect=True)
def test_a_callers_connection_in_autocommit_gets_one_transaction(app: App, db_url: str) -> None:
    """A connection in autocommit has no transaction of its own: the insert is then one
    transaction of its own (a bulk of unique jobs failed: its staging table lived for a
    single statement), committed when the call returns."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        keyed = app.insert_all([Keyed.new({"key": f"k{i}"}) for i in range(BULK)], conn=conn)
        plain = app.insert_all([Plain.new({"n": i}) for i in range(BULK)], conn=conn)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert app.get_job(keyed[-1].id) == keyed[-1] and app.get_job(plain[-1].id) == plain[-1]
    assert count_jobs(app) == 2 * BULK
