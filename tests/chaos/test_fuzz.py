"""Fuzzing what users give jobsaga (issue 9, fault 10): args, worker options, cron entries and
job filters (API and the CLI's parsing), on both engines.

The property, for every generated input: either a clear jobsaga error raised before
anything is written (``ArgsError`` / ``ConfigError`` / ``FilterError``, never a
``DatabaseError``, never a raw driver or Python error), or a stored job that round-trips
(what ``get_job`` returns equals what ``insert`` returned, and equals the input under the
normalization docs/jobs.md states); never a half-inserted batch. Where the rule is simple
enough, a reference model written here (independently of the implementation) also decides
whether the input should have been accepted, so a valid input refused is a failure too.

Each target runs ``JOBSAGA_FUZZ_EXAMPLES`` examples (300) per engine, on one app per engine
and module (its own schema / file). Runs are derandomized so CI is reproducible; set
``JOBSAGA_FUZZ_RANDOM=1`` to explore new inputs.
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import psycopg
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from jobsaga import (
    App,
    ArgsError,
    CronEntry,
    DatabaseError,
    FilterError,
    Job,
    JobFilter,
    JobsagaError,
    JobState,
    Worker,
)
from jobsaga.cli.jobs import build_filter
from jobsaga.errors import ConfigError
from jobsaga.job import MAX_ATTEMPTS, MAX_DELAY_SECONDS
from jobsaga.plugins.cron import sync_entries
from jobsaga.serialization import MAX_DEPTH, MAX_INT_DIGITS
from tests.conftest import ENGINES, pg_schema_url

EXAMPLES = int(os.environ.get("JOBSAGA_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("JOBSAGA_FUZZ_RANDOM") != "1",
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


class Plain(Worker, name="fuzz.Plain"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Typed(Worker, name="fuzz.Typed"):
    class Args(BaseModel):
        ratio: float
        label: str
        items: list[int] = []

    def perform(self, job: Job[Any]) -> None:
        return None


@pytest.fixture(scope="module", params=ENGINES)
def fuzz_app(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[App]:
    """One migrated app per engine for the whole module: a database per example would make
    300 examples take minutes. Properties therefore only look at the rows they wrote."""
    schema = None
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("fuzz")
        url = f"sqlite:///{folder / 'jobs.db'}"
    else:
        admin: psycopg.Connection[Any] = request.getfixturevalue("pg_admin")
        schema = f"fuzz_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        url = pg_schema_url(schema)
    app = App(url, workers=[Plain, Typed])
    app.migrate()
    yield app
    app.close()
    if schema is not None:
        request.getfixturevalue("pg_admin").execute(f'DROP SCHEMA "{schema}" CASCADE')


def count(app: App) -> int:
    with app.engine.read() as tx:
        return int(tx.execute("SELECT count(*) AS n FROM jobsaga_jobs")[0]["n"])


def strict(value: Any) -> str:
    """JSON text that tells 1 from 1.0, 0.0 from -0.0 and a list from a dict."""
    return json.dumps(value, sort_keys=True)


def same_job(stored: Job[Any] | None, returned: Job[Any]) -> None:
    """``get_job`` gives back exactly what ``insert`` returned (but the conflict flag)."""
    assert stored is not None, f"job {returned.id} was returned but is not stored"
    assert stored == returned.__class__(**{**_fields(returned), "conflict": False})
    assert strict(stored.args) == strict(returned.args)
    assert strict(stored.meta) == strict(returned.meta)


def _fields(job: Job[Any]) -> dict[str, Any]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}


# --- the reference model: docs/jobs.md, "What can be stored, and what comes back" ---------


class Refused(Exception):
    """The reference model says jobsaga must refuse this input."""


def valid_text(text: Any) -> bool:
    return isinstance(text, str) and not any(
        ch == "\x00" or 0xD800 <= ord(ch) <= 0xDFFF for ch in text
    )


def reference(value: Any, depth: int = 0) -> Any:
    """``value`` as it must be stored, or raise :class:`Refused`: written from the rules in
    the docs, not from the implementation."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if abs(value) >= LONGEST:
            raise Refused
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise Refused
        if value == 0:
            return 0.0
        if abs(value) >= 1e16:
            return int(Decimal(repr(value)))
        return value
    if isinstance(value, str):
        if not valid_text(value):
            raise Refused
        return value
    if isinstance(value, (list, tuple, dict)) and depth >= MAX_DEPTH:
        raise Refused
    if isinstance(value, (list, tuple)):
        return [reference(item, depth + 1) for item in value]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not valid_text(key):
                raise Refused
            out[key] = reference(item, depth + 1)
        return out
    raise Refused


def refusal(exc: Exception) -> str:
    """The kind of refusal, for hypothesis' statistics (--hypothesis-show-statistics)."""
    text = str(exc)
    kinds = (
        "NUL",
        "surrogate",
        "deep",
        "integer of more than",
        "JSON cannot hold",
        "must be a dict",
    )
    for kind in kinds:
        if kind in text:
            return kind
    return type(exc).__name__


# --- strategies ----------------------------------------------------------------------------

ANY_CHAR = st.characters(exclude_categories=())  # surrogates (Cs) and NUL (Cc) included
EDGE_TEXT = ["", "\x00", "a\x00b", "\ud800", "x\udfff", "\ud83d\ude00", "é", "😀", "\u2028"]
text_any = st.one_of(st.text(ANY_CHAR, max_size=8), st.sampled_from(EDGE_TEXT), st.text(max_size=8))
text_valid = st.text(st.characters(exclude_characters="\x00"), max_size=8)  # no Cs by default
EDGE_INTS = [0, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63) - 1]
LONGEST = 10**MAX_INT_DIGITS  # the first integer with too many digits (no repr: built by map)
longest = st.sampled_from([-1, 0, 1]).map(lambda k: LONGEST - 1 if k == 0 else k * LONGEST)
ints_any = st.one_of(
    st.integers(), st.integers(-(2**70), 2**70), st.sampled_from(EDGE_INTS), longest
)
EDGE_FLOATS = [-0.0, 1e16, -1e16, 9999999999999998.0, 1.5e300, 5e-324, math.inf, -math.inf]
floats_any = st.one_of(st.floats(), st.sampled_from([*EDGE_FLOATS, math.nan]))
leaves = st.one_of(st.none(), st.booleans(), ints_any, floats_any, text_any)
valid_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    text_valid,
)


def nest(depth: int, leaf: Any, as_list: bool) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if as_list else {"k": value}
    return value


deep = st.builds(
    nest,
    st.one_of(st.integers(MAX_DEPTH - 3, MAX_DEPTH + 2), st.integers(1, 1100)),
    leaves,
    st.booleans(),
)
json_values = st.recursive(
    st.one_of(leaves, deep),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(text_any, inner, max_size=4),
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(text_any, json_values, max_size=5)
valid_objects = st.dictionaries(
    text_valid,
    st.recursive(
        valid_leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=3), st.dictionaries(text_valid, inner, max_size=3)
        ),
        max_leaves=8,
    ),
    max_size=4,
)
some_objects = st.one_of(valid_objects, json_objects)  # about half of them storable


# --- 1. args and meta ----------------------------------------------------------------------


@FUZZ
@given(
    args=some_objects,
    shape=st.sampled_from(["object"] * 14 + ["list", "text"]),
    meta=st.one_of(st.none(), some_objects),
    batch=st.integers(1, 3),
)
def test_args_and_meta_are_refused_or_round_trip(
    fuzz_app: App, args: Any, shape: str, meta: Any, batch: int
) -> None:
    if shape == "list":  # now and then args that are not an object at all
        args = list(args.values())
    elif shape == "text":
        args = "".join(args)
    try:
        if not isinstance(args, dict):
            raise Refused
        expected = (reference(args), reference(meta or {}))
    except Refused:
        expected = None
    before = count(fuzz_app)
    try:
        specs = [Plain.new(args, meta=meta) for _ in range(batch)]
    except JobsagaError as exc:
        assert isinstance(exc, ArgsError), repr(exc)
        assert expected is None, f"valid input refused: {exc}"
        assert count(fuzz_app) == before
        event(f"refused: {refusal(exc)}")
        return
    assert expected is not None, f"accepted what cannot be stored: {args!r} {meta!r}"
    event("stored")
    jobs = fuzz_app.insert_all(specs)  # any exception here is bad input reaching the database
    assert count(fuzz_app) == before + batch
    for job in jobs:
        assert (strict(job.args), strict(job.meta)) == (strict(expected[0]), strict(expected[1]))
        same_job(fuzz_app.get_job(job.id), job)


@FUZZ
@given(
    ratio=st.one_of(st.floats(allow_nan=False, allow_infinity=False), floats_any),
    label=st.one_of(text_valid, text_any),
    items=st.one_of(st.lists(st.integers(), max_size=3), st.lists(ints_any, max_size=3)),
)
def test_typed_args_are_refused_or_round_trip(
    fuzz_app: App, ratio: float, label: str, items: list[int]
) -> None:
    given_args = {"ratio": ratio, "label": label, "items": items}
    try:
        expected = reference(given_args)
    except Refused:
        expected = None
    before = count(fuzz_app)
    try:
        spec = Typed.new(given_args)
    except JobsagaError as exc:
        assert isinstance(exc, ArgsError), repr(exc)
        assert expected is None, f"valid input refused: {exc}"
        assert count(fuzz_app) == before
        event(f"refused: {refusal(exc)}")
        return
    assert expected is not None, f"accepted what cannot be stored: {given_args!r}"
    event("stored")
    job = fuzz_app.insert(spec)
    assert strict(job.args) == strict(expected)
    same_job(fuzz_app.get_job(job.id), job)
    assert isinstance(Typed.parse_args(job.args), Typed.Args)  # what perform will receive


# --- 2. worker options ---------------------------------------------------------------------

QUEUE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
STATES = [s.value for s in JobState]


def valid_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def valid_delay(value: Any) -> bool:
    if isinstance(value, timedelta):
        value = value.total_seconds()
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value <= MAX_DELAY_SECONDS
    )


def valid_unique(unique: Any) -> bool:
    if unique is None or isinstance(unique, bool):
        return True
    if set(unique) - {"period", "fields", "states", "keys"}:
        return False
    period = unique.get("period", 60)
    if not (
        period is None
        or period in ("infinity", "forever")
        or (
            isinstance(period, (int, float))
            and not isinstance(period, bool)
            and 0 < period <= MAX_DELAY_SECONDS
        )
    ):
        return False
    return bool(unique.get("states", STATES))


periods = st.one_of(
    st.none(),
    st.floats(1e-3, 1e6),
    st.sampled_from(["infinity", "forever", "never", True, 0, -1, MAX_DELAY_SECONDS]),
    floats_any,
    ints_any,
)
uniques = st.one_of(
    st.none(),
    st.booleans(),
    st.fixed_dictionaries(
        {},
        optional={
            "period": periods,
            "fields": st.lists(st.sampled_from(["worker", "queue", "args", "meta"]), max_size=4),
            "states": st.lists(st.sampled_from(STATES), max_size=3),
            "keys": st.lists(text_any, max_size=2),
            "perod": st.just(5),
        },
    ),
)
delays = st.one_of(
    st.none(),
    st.floats(0, 1e6),
    st.integers(0, 10**6),
    floats_any,
    ints_any,
    st.sampled_from([True, MAX_DELAY_SECONDS, MAX_DELAY_SECONDS + 1, 1e12]),
    st.timedeltas(),
)


valid_options = st.fixed_dictionaries(
    {
        "max_attempts": st.one_of(st.none(), st.integers(1, MAX_ATTEMPTS)),
        "priority": st.one_of(st.none(), st.integers(0, 9)),
        "schedule_in": st.one_of(
            st.none(),
            st.floats(0, MAX_DELAY_SECONDS),
            st.integers(0, 10**6),
            st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=365 * 99)),
        ),
        "tags": st.one_of(st.none(), st.lists(text_valid, max_size=3)),
        "queue": st.one_of(st.none(), st.from_regex(QUEUE, fullmatch=True)),
        "unique": st.one_of(
            st.none(),
            st.booleans(),
            st.fixed_dictionaries(
                {},
                optional={
                    "period": st.one_of(st.none(), st.floats(1e-3, MAX_DELAY_SECONDS)),
                    "fields": st.lists(st.sampled_from(["worker", "queue", "args", "meta"])),
                    "states": st.lists(st.sampled_from(STATES), min_size=1, max_size=3),
                },
            ),
        ),
    }
)
any_options = st.fixed_dictionaries(
    {
        "max_attempts": st.one_of(st.none(), st.integers(1, 50), ints_any, st.just(True)),
        "priority": st.one_of(st.none(), st.integers(0, 9), ints_any, st.just(False)),
        "schedule_in": delays,
        "tags": st.one_of(
            st.none(),
            st.lists(text_valid, max_size=3),
            st.lists(text_any, max_size=3),
            st.just("abc"),
        ),
        "queue": st.one_of(st.none(), st.from_regex(QUEUE, fullmatch=True), text_any),
        "unique": st.one_of(st.none(), uniques),
    }
)


@FUZZ
@given(options=st.one_of(valid_options, any_options), n=st.integers(0, 3))
def test_worker_options_are_refused_or_stored(
    fuzz_app: App, options: dict[str, Any], n: int
) -> None:
    max_attempts, priority, queue, tags, unique = (
        options["max_attempts"],
        options["priority"],
        options["queue"],
        options["tags"],
        options["unique"],
    )
    schedule_in = options["schedule_in"]
    valid = (
        (max_attempts is None or valid_int(max_attempts, 1, MAX_ATTEMPTS))
        and (priority is None or valid_int(priority, 0, 9))
        and (schedule_in is None or valid_delay(schedule_in))
        and (tags is None or (isinstance(tags, list) and all(valid_text(t) for t in tags)))
        and (queue is None or (isinstance(queue, str) and QUEUE.fullmatch(queue) is not None))
        and valid_unique(unique)
    )
    before = count(fuzz_app)
    try:
        spec = Plain.new({"n": n}, **options)
    except JobsagaError as exc:
        assert isinstance(exc, (ArgsError, ConfigError)), repr(exc)
        assert not valid, f"valid options refused: {exc}"
        assert count(fuzz_app) == before
        event(f"refused: {refusal(exc)}")
        return
    assert valid, "accepted options that cannot be stored"
    event("stored")
    first = fuzz_app.insert(spec)
    same_job(fuzz_app.get_job(first.id), first)
    # a duplicate of a unique job: its period is used now (a holder past it loses its key)
    again = fuzz_app.insert(spec)
    same_job(fuzz_app.get_job(again.id), again)
    for job in (first, again):
        if not job.conflict:  # a holder found by its key may differ in other options
            assert job.max_attempts == (max_attempts or 20)
            assert job.priority == (priority or 0) and job.queue == (queue or "default")
            assert job.tags == tuple(tags or ())
    if unique in (None, False):
        assert not first.conflict and not again.conflict and first.id != again.id
    created = [job for job in (first, again) if not job.conflict]
    assert count(fuzz_app) == before + len(created)  # one row per job not found as a duplicate


NOW = datetime.now()


@FUZZ
@given(
    at=st.one_of(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
        st.datetimes(
            min_value=NOW - timedelta(days=365 * 110), max_value=NOW + timedelta(days=365 * 110)
        ),
    ),
    offset_minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
def test_scheduled_at_is_refused_or_stored(
    fuzz_app: App, at: datetime, offset_minutes: int
) -> None:
    local = at.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    try:
        distance = abs((local.astimezone(UTC) - datetime.now(UTC)).total_seconds())
    except OverflowError:
        distance = math.inf
    before = count(fuzz_app)
    try:
        spec = Plain.new({}, scheduled_at=local)
    except JobsagaError as exc:
        assert isinstance(exc, ArgsError), repr(exc)
        assert distance > MAX_DELAY_SECONDS - 60, f"valid time refused: {exc}"
        assert count(fuzz_app) == before
        event("refused")
        return
    event("stored")
    assert distance < MAX_DELAY_SECONDS + 60
    job = fuzz_app.insert(spec)
    assert job.scheduled_at == local
    same_job(fuzz_app.get_job(job.id), job)


# --- 3. cron entries -----------------------------------------------------------------------

cron_fields = st.one_of(
    st.text(alphabet="0123456789*/,-LW#?", min_size=1, max_size=6),
    st.sampled_from(["*", "0", "*/5", "1-5", "MON-FRI", "jan", "L", "5W", "1#2", "*/0", "-1"]),
    st.sampled_from(["99999999999999999999", "60", "24", "32", "13", "8", "0-59/61"]),
    text_any,
)
cron_expressions = st.one_of(
    st.lists(cron_fields, min_size=1, max_size=7).map(" ".join),
    st.lists(st.sampled_from(["*", "0", "*/15", "1,2", "3-4"]), min_size=5, max_size=6).map(
        " ".join
    ),
    st.lists(
        st.sampled_from(["*", "0", "*/15", "1,2", "3-4", "1-5/2"]), min_size=5, max_size=5
    ).map(" ".join),
    st.sampled_from(["@daily", "@hourly", "@reboot", "@weekly", "@sometimes", "@", "0 0 31 2 *"]),
    text_any,
)


valid_entries = st.fixed_dictionaries(
    {
        "expression": st.one_of(
            st.lists(
                st.sampled_from(["*", "1", "1,2", "1-5/2", "*/5"]), min_size=5, max_size=6
            ).map(" ".join),
            st.sampled_from(["@daily", "@hourly", "@reboot", "@weekly", "@yearly"]),
        ),
        "worker": st.sampled_from([Plain, Plain.name]),
        "name": st.one_of(
            st.none(), st.text(st.characters(codec="ascii"), min_size=1).filter(str.strip)
        ),
        "zone": st.sampled_from(["UTC", "Europe/Paris", "America/St_Johns", "Asia/Kolkata"]),
        "args": st.one_of(st.none(), valid_objects),
        "tags": st.lists(text_valid, max_size=2),
        "max_attempts": st.one_of(st.none(), st.integers(1, MAX_ATTEMPTS)),
    }
)
any_entries = st.fixed_dictionaries(
    {
        "expression": cron_expressions,
        "worker": st.sampled_from([Plain, Plain.name, "fuzz.Unknown", "", "fuzz\x00Bad", 42]),
        "name": st.one_of(st.none(), text_valid, text_any),
        "zone": st.one_of(st.sampled_from(["UTC", "Europe/Paris"]), text_any),
        "args": st.one_of(st.none(), some_objects, st.just([1])),
        "tags": st.one_of(
            st.just(()),
            st.lists(text_valid, max_size=2),
            st.lists(text_any, max_size=2),
            st.just(5),
        ),
        "max_attempts": st.one_of(st.none(), st.integers(1, 50), ints_any),
    }
)


@FUZZ
@given(options=st.one_of(valid_entries, any_entries))
def test_cron_entries_are_refused_or_valid(fuzz_app: App, options: dict[str, Any]) -> None:
    expression, worker, name, zone, args, tags, max_attempts = (
        options["expression"],
        options["worker"],
        options["name"],
        options["zone"],
        options["args"],
        options["tags"],
        options["max_attempts"],
    )
    try:
        entry = CronEntry(
            expression,
            worker,
            name=name,
            timezone=zone,
            args=args,
            tags=tags,
            max_attempts=max_attempts,
        )
    except ConfigError as exc:
        assert str(exc).startswith("cron entry "), str(exc)
        event(f"refused: {refusal(exc)}")
        return
    now = datetime.now(UTC)
    tick = entry.next_tick(now)
    assert entry.is_reboot or (tick is not None and tick > now)
    sync_entries(fuzz_app, [entry])  # what the leader stores for `jobsaga cron list`
    try:
        cls = entry.resolve(fuzz_app)
    except ConfigError:
        assert entry.worker_name not in fuzz_app.workers
        event("valid entry, worker not registered")
        return
    event("valid entry, job inserted")
    job = fuzz_app.insert(entry.build(cls, tick))
    same_job(fuzz_app.get_job(job.id), job)
    assert job.meta["cron_name"] == entry.key


# --- 4. job filters: the API and the CLI's parsing -----------------------------------------

MAX_ID = 2**63 - 1
aware_times = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.timezones()
)
times = st.one_of(
    aware_times,
    st.datetimes(),  # naive: refused
    st.builds(
        lambda at, minutes: at.replace(tzinfo=timezone(timedelta(minutes=minutes))),
        st.sampled_from([datetime.min, datetime.max]),
        st.integers(-1439, 1439),
    ),
)


def one_or_many(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(values, st.lists(values, min_size=1, max_size=3))


criteria_strategy = st.fixed_dictionaries(
    {},
    optional={
        "ids": one_or_many(ints_any),
        "state": one_or_many(st.one_of(st.sampled_from(STATES), text_any)),
        "queue": one_or_many(st.one_of(st.from_regex(QUEUE, fullmatch=True), text_any)),
        "worker": one_or_many(st.one_of(st.just(Plain.name), text_any)),
        "tags": one_or_many(text_any),
        "since": times,
        "until": times,
        "time_field": st.sampled_from(["inserted_at", "finished_at", "updated_at"]),
    },
)


valid_criteria_strategy = st.fixed_dictionaries(
    {},
    optional={
        "ids": one_or_many(st.integers(1, MAX_ID)),
        "state": one_or_many(st.sampled_from(STATES)),
        "queue": one_or_many(st.from_regex(QUEUE, fullmatch=True)),
        "worker": one_or_many(st.one_of(st.just(Plain.name), text_valid)),
        "tags": one_or_many(text_valid),
        "since": aware_times.filter(lambda t: t.year > 1),
        "until": aware_times.filter(lambda t: t.year < 9999),
        "time_field": st.sampled_from(["inserted_at", "finished_at"]),
    },
)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def valid_time(value: datetime) -> bool:
    if value.tzinfo is None or value.utcoffset() is None:
        return False
    try:
        value.astimezone(UTC)
    except OverflowError:
        return False
    return True


def valid_criteria(criteria: dict[str, Any]) -> bool:
    checks: dict[str, Callable[[Any], bool]] = {
        "ids": lambda v: valid_int(v, 1, MAX_ID),
        "state": lambda v: v in STATES,
        "queue": lambda v: QUEUE.fullmatch(v) is not None,
        "worker": valid_text,
        "tags": valid_text,
        "since": valid_time,
        "until": valid_time,
        "time_field": lambda v: v in ("inserted_at", "finished_at"),
    }
    return all(all(checks[k](v) for v in as_list(value)) for k, value in criteria.items())


OPERATIONS: dict[str, Callable[..., Any]] = {
    "list": App.list_jobs,
    "count": App.count_jobs,
    "cancel": App.cancel_jobs,
    "retry": App.retry_jobs,
    "delete": App.delete_jobs,
}


@FUZZ
@given(
    criteria=st.one_of(valid_criteria_strategy, criteria_strategy),
    operation=st.sampled_from(sorted(OPERATIONS)),
    page=st.one_of(
        st.fixed_dictionaries(
            {}, optional={"limit": st.integers(1, 1000), "offset": st.integers(0, 10)}
        ),
        st.fixed_dictionaries({}, optional={"limit": ints_any, "offset": ints_any}),
    ),
)
def test_api_filters_are_refused_or_applied(
    fuzz_app: App, criteria: dict[str, Any], operation: str, page: dict[str, Any]
) -> None:
    for job_id in as_list(criteria.get("ids", [])):  # any int: a job, or None, never an error
        found = fuzz_app.get_job(job_id)
        assert found is None or found.id == job_id
    valid = valid_criteria(criteria)
    if operation == "list":
        valid = valid and valid_int(page.get("limit", 1), 1, MAX_ID)
        valid = valid and valid_int(page.get("offset", 0), 0, MAX_ID)
    else:
        page = {}
        if operation != "count":
            valid = valid and bool(set(criteria) - {"time_field"})
    try:
        OPERATIONS[operation](fuzz_app, **criteria, **page)
    except JobsagaError as exc:
        assert isinstance(exc, FilterError), repr(exc)
        assert not valid, f"valid filter refused: {exc}"
        event("refused")
        return
    assert valid, f"applied a filter that should be refused: {criteria} {page}"
    event("applied")


durations = st.builds(
    lambda number, unit: f"{number}{unit}",
    st.one_of(
        st.integers(0, 10**20),
        st.floats(0, 1e30, allow_nan=False, allow_infinity=False).map(lambda f: f"{f:.3f}"),
        st.just("9" * 400),
    ),
    st.sampled_from("smhd"),
)
cli_times = st.one_of(
    st.none(),
    durations,
    aware_times.map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat()),
    text_any,
)


@FUZZ
@given(
    since=cli_times,
    until=cli_times,
    ids=st.lists(ints_any, max_size=2),
    tags=st.lists(text_any, max_size=2),
)
def test_cli_filters_are_usage_errors_or_applied(
    fuzz_app: App, since: str | None, until: str | None, ids: list[int], tags: list[str]
) -> None:
    """The CLI's own parsing (``parse_time`` via ``build_filter``): a click usage error, or a
    filter every operation can apply. (tests/operations/test_job_operations.py runs the real
    command for the cases that used to crash.)"""
    try:
        flt = build_filter(
            fuzz_app,
            tuple(ids),
            states=(),
            queues=(),
            workers=(),
            tags=tuple(tags),
            since=since,
            until=until,
            time_field="inserted_at",
        )
    except click.UsageError:  # exit status 2 and one line, no traceback
        event("usage error")
        return
    event("applied")
    assert isinstance(flt, JobFilter)
    fuzz_app.list_jobs(flt, limit=5)
    fuzz_app.count_jobs(flt)


def test_the_reference_model_agrees_with_the_documented_cases() -> None:
    """The fuzz oracle itself, on the cases docs/jobs.md lists."""
    assert strict(reference({"a": -0.0, "b": 1e16, "c": (1,)})) == strict(
        {"a": 0.0, "b": 10**16, "c": [1]}
    )
    for bad in ({"a": math.nan}, {"a\x00": 1}, {"a": "\ud800"}, nest(MAX_DEPTH + 1, 1, False)):
        with pytest.raises(Refused):
            reference(bad)
    assert reference(nest(MAX_DEPTH - 1, 1, False)) == nest(MAX_DEPTH - 1, 1, False)
    assert not issubclass(DatabaseError, (ArgsError, ConfigError, FilterError))
