"""insert, insert_all, ainsert: order kept, one round trip for many, the caller's transaction."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel, ConfigDict, RootModel

from jobsaga import App, ArgsError, Job, JobState, Worker
from jobsaga.engines.base import Engine
from jobsaga.errors import ConfigError
from jobsaga.job import MAX_DELAY_SECONDS
from jobsaga.serialization import MAX_DEPTH
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
                    copy = getattr(tx, "copy", None)  # PostgreSQL's bulk path
                    if copy is not None:

                        def counted_copy(step: Any) -> None:
                            counter.statements.append(step.sql)
                            copy(step)

                        tx.copy = counted_copy
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
    code = [
        " ".join(x for x in s.splitlines() if not x.startswith("--")) for s in counter.statements
    ]
    writes = [s for s in code if s.lstrip().startswith(("INSERT INTO jobsaga_jobs", "COPY"))]
    assert len(writes) == 1
    # beside it at most the one NOTIFY, and on PostgreSQL's COPY the ids it reserves first
    assert len(counter.statements) <= 3
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
def test_the_callers_connection_must_be_a_psycopg_connection(app: App) -> None:
    """(An ``AsyncConnection`` is taken by ``ainsert`` on PostgreSQL: test_async_insert.py.)"""
    with pytest.raises(ConfigError, match="takes a psycopg.Connection.*got object"):
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


# --- bad input never reaches the database (issue 9, fault 10) -------------------------------


class Typed(Worker):
    class Args(BaseModel):
        ratio: float
        label: str = ""

    def perform(self, job: Job[Any]) -> None:
        return None


def strict(value: Any) -> str:
    """JSON text that tells 1 from 1.0 and 0.0 from -0.0 (== does not)."""
    return json.dumps(value, sort_keys=True)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Noop.new({"note": "a\x00b"}), "args field 'note' holds a NUL"),
        (lambda: Noop.new({"items": [1, {"k": "\ud800"}]}), r"'items\[1\]\.k' holds a surrogate"),
        (lambda: Noop.new({"pair": "\ud83d\ude00"}), "'pair' holds a surrogate"),
        (lambda: Noop.new({"deep": {"k\x00": 1}}), r"field 'deep' has a key 'k\\x00'"),
        (lambda: Noop.new({}, meta={"m": ["\x00"]}), r"meta field 'm\[0\]' holds a NUL"),
        (lambda: Noop.new({}, tags=["ok", "b\x00d"]), r"tags\[1\] 'b\\x00d' holds a NUL"),
        (lambda: Noop.new({}, tags=["\udcff"]), r"tags\[0\] .* surrogate"),
        (lambda: Typed.new({"ratio": 1, "label": "\x00"}), "args field 'label' holds a NUL"),
    ],
)
def test_text_the_database_cannot_store_is_refused_naming_the_field(
    app: App, build: Callable[[], Any], field: str
) -> None:
    """PostgreSQL's jsonb refuses NUL and lone surrogates: they used to pass ``new`` and fail
    in the database; now ``new`` refuses them (on both engines, so both store the same)."""
    with pytest.raises(ArgsError, match=field):
        app.insert(build())
    assert count_jobs(app) == 0


def test_a_worker_name_the_database_cannot_store_is_refused() -> None:
    with pytest.raises(ConfigError, match="worker name 'billing\\\\x00' holds a NUL"):
        type("Nul", (Worker,), {"perform": lambda self, job: None}, name="billing\x00")
    with pytest.raises(ConfigError, match="surrogate"):
        type("Sur", (Worker,), {"perform": lambda self, job: None}, name="b\udc80")


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Noop.new({"x": float("nan")}), "args field 'x' is nan"),
        (lambda: Noop.new({"x": [float("-inf")]}), r"args field 'x\[0\]' is -inf"),
        (lambda: Noop.new({}, meta={"x": float("inf")}), "meta field 'x' is inf"),
        (lambda: Typed.new({"ratio": float("nan")}), "args field 'ratio' is nan"),
        (lambda: Typed.new({"ratio": float("inf")}), "args field 'ratio' is inf"),
        (lambda: Noop.new({"n": 10**5000}), "'n' is an integer of more than 4300 digits"),
    ],
)
def test_numbers_json_cannot_hold_are_refused_naming_the_field(
    app: App, build: Callable[[], Any], field: str
) -> None:
    """A typed float field accepted NaN and inf (pydantic allows them) and the insert failed
    in the database; a 5000-digit integer failed in json.dumps inside the engine."""
    with pytest.raises(ArgsError, match=field):
        app.insert(build())
    assert count_jobs(app) == 0


def nested(depth: int) -> dict[str, Any]:
    """An args object whose objects nest ``depth`` deep (the args object itself is 1)."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


def test_args_nesting_is_bounded(app: App) -> None:
    """About 1,000 levels raised RecursionError; anything deeper than MAX_DEPTH is refused,
    and MAX_DEPTH itself round-trips."""
    with pytest.raises(ArgsError, match=f"more than {MAX_DEPTH} deep"):
        app.insert(Noop.new(nested(1000)))
    with pytest.raises(ArgsError, match=f"more than {MAX_DEPTH} deep"):
        app.insert(Noop.new(nested(MAX_DEPTH + 1)))
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ArgsError, match="deep"):
        Noop.new(loop)
    assert count_jobs(app) == 0
    stored = app.insert(Noop.new(nested(MAX_DEPTH)))
    assert job(app, stored.id).args == nested(MAX_DEPTH) == stored.args


@pytest.mark.parametrize(
    "options",
    [
        {"schedule_in": float("nan")},
        {"schedule_in": float("inf")},
        {"schedule_in": 1e12},
        {"schedule_in": -1},
        {"schedule_in": True},
        {"schedule_in": MAX_DELAY_SECONDS + 1},
    ],
)
def test_schedule_in_is_finite_and_within_a_century(app: App, options: dict[str, Any]) -> None:
    """NaN slipped past ``< 0`` and 1e12 or inf overflowed a datetime inside the engine."""
    with pytest.raises(ArgsError, match="schedule_in must be a number of seconds from 0 to"):
        app.insert(Noop.new({}, **options))
    assert count_jobs(app) == 0


def test_scheduled_at_is_within_a_century(app: App) -> None:
    far = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))  # past 9999 in UTC
    for at in (far, datetime(2300, 1, 1, tzinfo=UTC), datetime(1, 1, 2, tzinfo=UTC)):
        with pytest.raises(ArgsError, match="scheduled_at .* more than 100 years from now"):
            app.insert(Noop.new({}, scheduled_at=at))
    assert count_jobs(app) == 0
    at = datetime.now(UTC).replace(microsecond=123457) + timedelta(days=365 * 99)
    stored = app.insert(Noop.new({}, scheduled_at=at))
    assert stored.scheduled_at == at == job(app, stored.id).scheduled_at
    later = app.insert(Noop.new({}, schedule_in=MAX_DELAY_SECONDS))
    assert job(app, later.id).scheduled_at == later.scheduled_at


def test_max_attempts_fits_the_column(app: App) -> None:
    with pytest.raises(ArgsError, match=r"max_attempts must be an integer from 1 to 2147483647"):
        app.insert(Noop.new({}, max_attempts=2**31))
    with pytest.raises(ConfigError, match="max_attempts"):
        type("Huge", (Worker,), {}, max_attempts=2**31)
    assert count_jobs(app) == 0
    stored = app.insert(Noop.new({}, max_attempts=2**31 - 1))
    assert job(app, stored.id).max_attempts == 2**31 - 1


ROUND_TRIP = {
    "ints": [0, -1, 2**63, -(2**63) - 1, 10**30, 2**70],
    "floats": [0.1, -2.5, 1.0, 123.0, 1e-7, 5e-324, 9999999999999998.0, -1234567.891e-300],
    "text": ["", "é", "😀", "\u2028", "tab\tnew\nline", "\\u0000"],
    "bools": [True, False, None],
    "nested": {"a": {"b": [[], {}]}},
}


def test_args_round_trip_exactly_on_both_engines(app: App) -> None:
    """What is stored is what comes back, types included (docs/jobs.md, "What can be stored,
    and what comes back")."""
    stored = app.insert(Noop.new(ROUND_TRIP, meta={"m": ROUND_TRIP}))
    for found in (stored, job(app, stored.id)):
        assert strict(found.args) == strict(ROUND_TRIP)
        assert strict(found.meta) == strict({"m": ROUND_TRIP})


def test_numbers_are_normalized_as_jsonb_returns_them(app: App) -> None:
    """PostgreSQL returned -0.0 as 0.0 and 1e16 as an integer while SQLite kept them: both
    now store the normalized form, and the job ``insert`` returns is that form too."""
    given = {"negzero": -0.0, "big": 1e16, "huge": 1.5e300, "neg": -1e23, "tuple": (1, (2.0,))}
    expected = {
        "negzero": 0.0,
        "big": 10**16,
        "huge": 15 * 10**299,
        "neg": -(10**23),
        "tuple": [1, [2.0]],
    }
    spec = Noop.new(given)
    assert strict(spec.args) == strict(expected)
    for stored in (app.insert(spec), *app.insert_all([Noop.new(given)])):
        assert strict(stored.args) == strict(expected)
        assert strict(job(app, stored.id).args) == strict(expected)
    typed = app.insert(Typed.new({"ratio": -0.0}))
    assert (
        strict(job(app, typed.id).args) == strict(typed.args) == strict({"ratio": 0.0, "label": ""})
    )


def test_normalizing_does_not_copy_plain_args() -> None:
    """The check is one pass over the args; nothing is rebuilt unless a value changes."""
    inner = {"b": [1, 2.5, "x"]}
    spec = Noop.new({"a": inner})
    assert spec.args["a"] is inner


def test_an_id_no_job_can_have_is_none(app: App) -> None:
    """SQLite's driver cannot bind an id past 2**63-1 (DataRejected), PostgreSQL answered
    None: both now answer None without a query, as for any missing id."""
    stored = app.insert(Noop.new())
    for missing in (2**63, -(2**63) - 1, 0, -1, 2**63 - 1, stored.id + 1):
        assert app.get_job(missing) is None
    assert app.get_job(stored.id) == stored


@pytest.mark.parametrize("meta", [[], "", 0])
def test_meta_that_is_not_a_dict_is_refused_even_when_empty(meta: Any) -> None:
    with pytest.raises(ArgsError, match="meta must be a dict"):
        Noop.new({}, meta=meta)


class Order(Worker):
    class Args(BaseModel):
        order_id: str
        note: str | None = None

    def perform(self, job: Job[Args]) -> None:
        return None


class LenientOrder(Worker):
    class Args(BaseModel):
        model_config = ConfigDict(extra="ignore")  # the documented opt-out: drop them
        order_id: str

    def perform(self, job: Job[Args]) -> None:
        return None


class OpenOrder(Worker):
    class Args(BaseModel):
        model_config = ConfigDict(extra="allow")  # keep them, stored with the args
        order_id: str

    def perform(self, job: Job[Args]) -> None:
        return None


def test_an_unknown_args_key_is_refused_naming_it_and_nothing_is_stored(app: App) -> None:
    """pydantic's default drops unknown keys, so a typo in an optional argument (``notes``
    for ``note``) would vanish: an insert refuses it unless the model says otherwise."""
    with pytest.raises(ArgsError) as typo:
        app.insert(Order.new({"order_id": "o-1", "notes": "leave at the door"}))
    assert str(typo.value) == (
        "tests.jobs.test_insert.Order: invalid args: unknown field 'notes' (did you mean 'note'?)"
    )
    with pytest.raises(ArgsError, match=r"unknown field 'extra' \(fields: order_id, note\)"):
        app.insert_all([Order.new({"order_id": "o-2"}), Order.new({"order_id": "x", "extra": 1})])
    assert count_jobs(app) == 0
    stored = app.insert(Order.new({"order_id": "o-3", "note": "ok"}))
    assert job(app, stored.id).args == {"order_id": "o-3", "note": "ok"}
    assert app.insert(Order.new(Order.Args(order_id="o-4"))).args == {
        "order_id": "o-4",
        "note": None,
    }


def test_a_model_that_sets_extra_keeps_its_own_rule(app: App) -> None:
    dropped = app.insert(LenientOrder.new({"order_id": "o-1", "extra": 1}))
    assert job(app, dropped.id).args == {"order_id": "o-1"}
    kept = app.insert(OpenOrder.new({"order_id": "o-2", "extra": 1}))
    assert job(app, kept.id).args == {"order_id": "o-2", "extra": 1}


def test_stored_args_with_a_key_the_model_no_longer_has_still_run() -> None:
    """Only inserts refuse unknown keys: a job stored before a field was removed (or by an
    older release, which dropped nothing) is read back with the model's own rule."""
    parsed = Order.parse_args({"order_id": "o-1", "removed_field": 1})
    assert isinstance(parsed, Order.Args) and parsed.order_id == "o-1"


class Counts(Worker):
    Args = RootModel[dict[str, int]]  # a root model has no fields to hold unknown keys

    def perform(self, job: Job[Any]) -> None:
        return None


def test_a_root_model_as_args_is_validated_as_it_is(app: App) -> None:
    stored = app.insert(Counts.new({"apples": 3, "pears": 1}))
    assert job(app, stored.id).args == {"apples": 3, "pears": 1}
    with pytest.raises(ArgsError, match="'pears'"):
        Counts.new({"apples": 3, "pears": "many"})
