"""Uniqueness as in Oban, arbitrated by the database so racing inserts create one job."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobsaga import App, ArgsError, Job, JobState, UniqueSpec, Worker
from jobsaga.engines import Tx
from jobsaga.errors import ConfigError, DatabaseError, UniqueInsertContention
from jobsaga.job import MAX_DELAY_SECONDS
from tests.jobs.conftest import count_jobs, job, wait_final
from tests.jobs.sample_app import Unique


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Minute(Worker, unique={"period": 60}):
    def perform(self, job: Job[Any]) -> None:
        return None


class ByAccount(Worker, unique={"period": None, "keys": ["account"]}):
    def perform(self, job: Job[Any]) -> None:
        return None


class WorkerOnly(Worker, unique={"period": None, "fields": ["worker"]}):
    def perform(self, job: Job[Any]) -> None:
        return None


class WhileQueued(Worker, unique={"period": None, "states": ["available", "scheduled"]}):
    def perform(self, job: Job[Any]) -> None:
        return None


class Forever(Worker, unique={"period": "infinity"}):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_duplicate_returns_the_existing_job(app: App) -> None:
    first = app.insert(Minute.new({"a": 1}))
    again = app.insert(Minute.new({"a": 1}))
    other = app.insert(Minute.new({"a": 2}))
    assert first.conflict is False
    assert again.conflict is True and again.id == first.id and again.args == {"a": 1}
    assert other.conflict is False and other.id != first.id
    assert count_jobs(app) == 2


def test_duplicates_within_one_insert_all(app: App) -> None:
    jobs = app.insert_all([Minute.new({"a": 1}), Minute.new({"a": 1}), Minute.new({"a": 2})])
    assert [j.conflict for j in jobs] == [False, True, False]
    assert jobs[0].id == jobs[1].id
    assert count_jobs(app) == 2


def test_a_mixed_insert_all_of_unique_jobs(make_app: Callable[..., App]) -> None:
    """Held keys, keys repeated in the batch, a holder past its period and plain jobs, in
    one call: each spec gets the job it would get inserted on its own, in input order."""
    clock = FakeClock()
    app = make_app(clock=clock)
    expired = app.insert(Minute.new({"a": 0}))
    clock.advance(61)
    held = app.insert(Minute.new({"a": 1}))
    specs = [
        Minute.new({"a": 2}),
        Minute.new({"a": 1}),  # held before the call
        Minute.new({"a": 0}),  # its holder's period is over
        Minute.new({"a": 2}),  # repeats the first spec
        Forever.new({"a": 9}),
        Minute.new({"a": 0}),  # repeats the spec that replaces the expired holder
    ]
    jobs = app.insert_all(specs)
    assert [j.conflict for j in jobs] == [False, True, False, True, False, True]
    assert jobs[1].id == held.id
    assert jobs[2].id not in (expired.id, held.id) and jobs[5].id == jobs[2].id
    assert jobs[3].id == jobs[0].id
    assert [j.raw_args for j in jobs] == [s.args for s in specs]
    assert count_jobs(app) == 5


def test_keys_select_part_of_the_args(app: App) -> None:
    first = app.insert(ByAccount.new({"account": 7, "note": "a"}))
    assert app.insert(ByAccount.new({"account": 7, "note": "b"})).id == first.id
    assert app.insert(ByAccount.new({"account": 8, "note": "a"})).conflict is False


def test_fields_choose_what_counts(app: App) -> None:
    # default fields (worker, queue, args): another queue is another job
    first = app.insert(Minute.new({"a": 1}))
    assert app.insert(Minute.new({"a": 1}, queue="other")).conflict is False
    # fields=["worker"]: one job of this worker, whatever its args and queue
    only = app.insert(WorkerOnly.new({"a": 1}))
    assert app.insert(WorkerOnly.new({"b": 2}, queue="other")).id == only.id
    assert first.id != only.id


def test_unique_option_per_insert(app: App) -> None:
    first = app.insert(Minute.new({"a": 1}, unique={"period": None, "keys": []}))
    assert app.insert(Minute.new({"a": 2}, unique={"period": None, "keys": []})).id == first.id


def test_period_expiry(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(clock=clock)
    first = app.insert(Minute.new({"a": 1}))
    clock.advance(59)
    assert app.insert(Minute.new({"a": 1})).id == first.id
    clock.advance(2)  # 61 s after the first insert: its period is over
    second = app.insert(Minute.new({"a": 1}))
    assert second.conflict is False and second.id != first.id
    assert app.insert(Minute.new({"a": 1})).id == second.id
    forever = app.insert(Forever.new({"a": 1}))
    clock.advance(10 * 365 * 86400)
    assert app.insert(Forever.new({"a": 1})).id == forever.id


def test_a_new_job_once_the_old_leaves_the_unique_states(make_app: Callable[..., App]) -> None:
    app = make_app(WhileQueued, Forever)
    first = app.insert(WhileQueued.new({"a": 1}))
    kept = app.insert(Forever.new({"a": 1}))
    with app.node({"default": 2}, poll_interval=0.05).start_in_thread():
        assert wait_final(app, first.id).state is JobState.COMPLETED
        wait_final(app, kept.id)
    again = app.insert(WhileQueued.new({"a": 1}))
    assert again.conflict is False and again.id != first.id
    # the default states include completed: a completed job still blocks duplicates
    assert app.insert(Forever.new({"a": 1})).id == kept.id


def test_scheduled_unique_job(app: App) -> None:
    first = app.insert(Minute.new({"a": 1}, schedule_in=600))
    assert first.state is JobState.SCHEDULED
    assert app.insert(Minute.new({"a": 1})).id == first.id


class WhileScheduled(Worker, unique={"period": 60, "states": ["scheduled"]}):
    def perform(self, job: Job[Any]) -> None:
        return None


def test_a_job_born_outside_the_states_still_meets_a_holder(make_app: Callable[..., App]) -> None:
    clock = FakeClock()
    app = make_app(WhileScheduled, clock=clock)
    held = app.insert(WhileScheduled.new({"a": 1}, schedule_in=600))
    # available at birth, so it cannot hold the key itself; the scheduled job still wins
    duplicate = app.insert(WhileScheduled.new({"a": 1}))
    assert (duplicate.conflict, duplicate.id) == (True, held.id)
    free = app.insert(WhileScheduled.new({"a": 2}))
    assert free.conflict is False and free.state is JobState.AVAILABLE
    # an available job holds nothing: a second available one is not its duplicate
    assert app.insert(WhileScheduled.new({"a": 2})).id != free.id
    clock.advance(61)  # past the period, the holder no longer counts
    assert app.insert(WhileScheduled.new({"a": 1})).conflict is False
    assert count_jobs(app) == 4


def test_spec_validation() -> None:
    with pytest.raises(ValueError, match="unknown job states"):
        UniqueSpec(states=("avialable",))
    with pytest.raises(ValueError, match="period"):
        UniqueSpec(period=-1)
    with pytest.raises(ConfigError):
        type("Bad", (Worker,), {}, unique={"perod": 5})


@pytest.mark.parametrize("period", [math.inf, math.nan, 1e12, MAX_DELAY_SECONDS + 1, 0, True])
def test_a_period_that_cannot_be_a_date_is_refused_before_any_insert(
    app: App, period: float
) -> None:
    """``period=inf`` was accepted: the first insert worked and every duplicate raised
    OverflowError computing ``now - period``. Now the spec refuses it, naming the remedy."""
    with pytest.raises(ConfigError, match=r"period must be .* or None / 'infinity' for forever"):
        type("Bad", (Worker,), {"perform": lambda self, job: None}, unique={"period": period})
    with pytest.raises(ArgsError, match="unique: .*period must be"):
        Minute.new({"a": 1}, unique={"period": period})
    assert count_jobs(app) == 0


def test_the_longest_period_finds_its_duplicate(app: App) -> None:
    first = app.insert(Minute.new({"a": 1}, unique={"period": MAX_DELAY_SECONDS}))
    again = app.insert(Minute.new({"a": 1}, unique={"period": MAX_DELAY_SECONDS}))
    assert again.conflict is True and again.id == first.id
    forever = app.insert(Minute.new({"a": 2}, unique={"period": "infinity"}))
    assert app.insert(Minute.new({"a": 2}, unique={"period": None})).id == forever.id


def test_a_bad_unique_option_is_a_jobsaga_error() -> None:
    """A wrong type escaped class creation as a raw TypeError, and ``new`` let pydantic's
    ValidationError through."""
    for bad in ("yes", 5, {"states": 5}, {1: 2}):
        with pytest.raises(ConfigError, match="unique"):
            type("Bad", (Worker,), {"perform": lambda self, job: None}, unique=bad)
        with pytest.raises(ArgsError, match="unique"):
            Minute.new({}, unique=bad)


def test_equal_numbers_are_one_key(app: App) -> None:
    """-0.0 and 0.0 (and a tuple and its list) are stored alike, so they are one job."""
    first = app.insert(Minute.new({"n": 0.0, "t": [1, 2]}))
    again = app.insert(Minute.new({"n": -0.0, "t": (1, 2)}))
    assert again.conflict is True and again.id == first.id


def test_fifty_threads_insert_one_job(app: App) -> None:
    barrier = threading.Barrier(50)
    results: list[Job[Any]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def insert() -> None:
        try:
            barrier.wait(10)
            stored = app.insert(Unique.new({"order": 42}))
            with lock:
                results.append(stored)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=insert) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert count_jobs(app) == 1
    assert len({j.id for j in results}) == 1 and len(results) == 50
    assert sum(not j.conflict for j in results) == 1


def test_fifty_threads_with_their_own_apps_insert_one_job(make_app: Callable[..., App]) -> None:
    """Every thread on its own connection, so the race reaches the database itself."""
    apps = [make_app(pool_size=1) for _ in range(10)]
    barrier = threading.Barrier(50)
    results: list[Job[Any]] = []
    lock = threading.Lock()

    def insert(index: int) -> None:
        barrier.wait(10)
        stored = apps[index % len(apps)].insert(Unique.new({"order": 43}))
        with lock:
            results.append(stored)

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 50
    assert count_jobs(apps[0]) == 1
    assert sum(not j.conflict for j in results) == 1


RACER = textwrap.dedent(
    """
    import sys, threading
    from jobsaga import App
    from tests.jobs.sample_app import Unique

    url = sys.argv[1]
    app = App(url)
    app.engine.get_job(0)  # connect before the start line
    barrier = threading.Barrier(6)
    go = threading.Event()
    created = []

    def insert():
        barrier.wait()
        go.wait()
        created.append(not app.insert(Unique.new({"order": 44})).conflict)

    threads = [threading.Thread(target=insert) for _ in range(5)]
    for t in threads:
        t.start()
    barrier.wait()
    print("ready", flush=True)
    sys.stdin.readline()  # the start line, given to every racer once all are ready
    go.set()
    for t in threads:
        t.join()
    print(sum(created))
    app.close()
    """
)


def test_several_processes_insert_one_job(app: App, db_url: str) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, db_url],
            env=env,
            cwd=root,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for racer in racers:
        assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
    for racer in racers:
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [racer.communicate(timeout=60) for racer in racers]
    for racer, (_out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
    assert sum(int(out.strip().splitlines()[-1]) for out, _ in outputs) == 1  # one created it
    assert count_jobs(app) == 1
    again = app.insert(Unique.new({"order": 44}))
    assert again.conflict is True and job(app, again.id).args == {"order": 44}


class Contended:
    """A transaction in which each insert of a unique job finds its key held and each lookup
    finds it released again: how one inserter sees a storm of inserts and releases on a key."""

    def __init__(self, tx: Tx, queries: Mapping[str, str]) -> None:
        self.tx = tx
        self.lost = {queries[name] for name in ("insert_jobs", "find_unique", "find_unique_many")}

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return [] if sql in self.lost else self.tx.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


def test_a_unique_insert_that_never_settles_is_a_transient_database_error(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a bare RuntimeError, outside the tree; it still is a RuntimeError."""
    engine = app.engine
    transaction = engine.transaction

    @contextmanager
    def contended(conn: Any = None) -> Iterator[Any]:
        with transaction(conn) as tx:
            yield Contended(tx, engine.queries)

    monkeypatch.setattr(engine, "transaction", contended)
    with pytest.raises(UniqueInsertContention, match="did not settle") as caught:
        app.insert(Minute.new({"n": 1}))
    assert isinstance(caught.value, DatabaseError) and isinstance(caught.value, RuntimeError)
    monkeypatch.undo()
    assert count_jobs(app) == 0
    assert app.insert(Minute.new({"n": 1})).conflict is False  # the same insert, later
