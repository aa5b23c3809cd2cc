"""Cron entries are validated when built, name themselves, and compute ticks with croniter."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

import jobsaga
from jobsaga import CronEntry, Worker
from jobsaga.errors import ConfigError
from jobsaga.plugins.crontab import coerce_crontab, derived_name


class DailyCleanup(Worker, name="tests.DailyCleanup", queue="maintenance"):
    def perform(self, job: jobsaga.Job[dict[str, object]]) -> None:
        return None


class HealthCheck(Worker, name="tests.HealthCheck"):
    class Args(BaseModel):
        target: str = "db"

    def perform(self, job: jobsaga.Job[Args]) -> None:
        return None


def test_entry_with_options() -> None:
    entry = CronEntry(
        "0 2 * * *",
        DailyCleanup,
        args={"days": 7},
        queue="default",
        priority=3,
        timezone="Europe/Paris",
        name="daily-cleanup",
    )
    assert entry.key == "daily-cleanup"
    spec = entry.build(DailyCleanup)
    assert spec.queue == "default" and spec.priority == 3 and spec.args == {"days": 7}
    assert spec.meta["cron_expr"] == "0 2 * * *" and spec.meta["cron_name"] == "daily-cleanup"


def test_guide_tuple_forms() -> None:
    entries = coerce_crontab(
        [
            ("0 2 * * *", DailyCleanup),
            ("*/15 * * * *", HealthCheck),
            ("@hourly", HealthCheck, {"args": {"target": "cache"}, "name": "hourly-cache"}),
        ]
    )
    assert [e.key for e in entries] == [
        derived_name("0 2 * * *", "tests.DailyCleanup", {}),
        derived_name("*/15 * * * *", "tests.HealthCheck", {}),
        "hourly-cache",
    ]
    assert entries[2].schedule == "0 * * * *"


@pytest.mark.parametrize(
    ("alias", "schedule"),
    [
        ("@hourly", "0 * * * *"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@weekly", "0 0 * * 0"),
        ("@monthly", "0 0 1 * *"),
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@reboot", "@reboot"),
    ],
)
def test_aliases(alias: str, schedule: str) -> None:
    assert CronEntry(alias, HealthCheck).schedule == schedule


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("61 * * * *", "not a valid cron expression"),
        ("* * *", "3 fields"),
        ("* * * * * * *", "7 fields"),
        ("@sometimes", "unknown alias"),
        ("0 0 31 2 *", "never fires"),
        ("", "non-empty"),
        ("every day", "2 fields"),
        ("*/61 * * * *", "minute step /61"),
        ("0 */24 * * *", "hour step /24"),
        ("0 0 1-31/0 * *", "day step /0"),
        ("*/0 * * * * *", "minute step /0"),
        ("* * * * * */60", "second step /60"),
    ],
)
def test_malformed_expression_names_the_entry(expression: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as info:
        CronEntry(expression, HealthCheck, name="nightly")
    assert "cron entry 'nightly'" in str(info.value)


def test_malformed_tuple_entry_fails_when_the_node_is_built(tmp_path: object) -> None:
    app = jobsaga.App(f"sqlite:///{tmp_path}/x.db", workers=[HealthCheck])
    with pytest.raises(ConfigError, match=r"'\*/15 25 \* \* \*' tests.HealthCheck"):
        app.node(crontab=[("*/15 25 * * *", HealthCheck)])


def test_bad_args_timezone_worker_and_duplicates() -> None:
    with pytest.raises(ConfigError, match="cron entry 'h'.*target"):
        CronEntry("* * * * *", HealthCheck, args={"target": 5}, name="h")
    with pytest.raises(ConfigError, match="unknown timezone 'Mars/Olympus'"):
        CronEntry("* * * * *", HealthCheck, timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="Worker subclass or a worker name"):
        CronEntry("* * * * *", object)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="each tick would insert its job twice"):
        coerce_crontab([("* * * * *", HealthCheck), ("* * * * *", HealthCheck)])
    with pytest.raises(ConfigError, match="two cron entries are named 'h'; give each a distinct"):
        coerce_crontab(
            [("* * * * *", HealthCheck, {"name": "h"}), ("@daily", DailyCleanup, {"name": "h"})]
        )
    with pytest.raises(ConfigError, match="entry #0"):
        coerce_crontab([("* * * * *", HealthCheck, {"queeu": "x"})])
    with pytest.raises(ConfigError, match="expected CronEntry"):
        coerce_crontab(["* * * * *"])


def test_ticks_in_timezone_and_seconds_field() -> None:
    paris = CronEntry("0 2 * * *", DailyCleanup, timezone="Europe/Paris")
    after = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    assert paris.next_tick(after) == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)  # 02:00 CET
    summer = datetime(2026, 7, 1, 0, 0, tzinfo=UTC)
    assert paris.next_tick(summer) == datetime(2026, 7, 2, 0, 0, tzinfo=UTC)  # 02:00 CEST
    every_2s = CronEntry("* * * * * */2", HealthCheck)
    ticks = list(every_2s.ticks(after, after.replace(second=9)))
    assert [t.second for t in ticks] == [2, 4, 6, 8]
    assert list(CronEntry("@reboot", HealthCheck).ticks(after, summer)) == []


def test_worker_by_name_resolves_on_the_app(tmp_path: object) -> None:
    entry = CronEntry("* * * * *", "tests.HealthCheck")
    app = jobsaga.App(f"sqlite:///{tmp_path}/x.db", workers=[HealthCheck])
    assert entry.resolve(app) is HealthCheck
    missing = CronEntry("* * * * *", "tests.Nope", name="ghost")
    with pytest.raises(ConfigError, match="cron entry 'ghost'.*tests.Nope"):
        missing.resolve(app)


def test_unregistered_worker_name_fails_when_the_node_is_built(tmp_path: object) -> None:
    app = jobsaga.App(f"sqlite:///{tmp_path}/x.db", workers=[HealthCheck])
    with pytest.raises(ConfigError, match="cron entry 'ghost'.*tests.Nope"):
        app.node(crontab=[CronEntry("@daily", "tests.Nope", name="ghost")])


@pytest.mark.parametrize(
    ("build", "problem"),
    [
        (lambda: CronEntry("* * * * *", HealthCheck, name="bad\x00"), "name must be"),
        (lambda: CronEntry("* * * * *", HealthCheck, name=""), "name must be"),
        (lambda: CronEntry("0 2 * * *\x00", HealthCheck), "holds a NUL"),
        (lambda: CronEntry("0 2 * * \ud800", HealthCheck), "surrogate"),
        (lambda: CronEntry("* * * * *", HealthCheck, tags=5), "tags must be a list"),  # type: ignore[arg-type]
        (lambda: CronEntry("* * * * *", HealthCheck, tags=("a\x00",)), "holds a NUL"),
        (lambda: CronEntry("* * * * *", HealthCheck, args=[1]), "args must be a dict"),  # type: ignore[arg-type]
        (lambda: CronEntry("* * * * *", DailyCleanup, args={"x": float("nan")}), "'x' is nan"),
        (lambda: CronEntry("* * * * *", DailyCleanup, max_attempts=2**31), "max_attempts"),
        (lambda: CronEntry("* * * * *", "by.name", args={"x": "\x00"}), "'x' holds a NUL"),
        (lambda: CronEntry("* * * * *", "by.name", args={"x": float("inf")}), "'x' is inf"),
        (lambda: CronEntry("* * * * *", "by.name", queue="a b"), "invalid queue name"),
        (lambda: CronEntry("* * * * *", "by.name", priority=10), "priority"),
        (lambda: CronEntry("* * * * *", "by.name", max_attempts=0), "max_attempts"),
        (lambda: CronEntry("* * * * *", "by\x00name"), "worker name"),
    ],
)
def test_an_entry_the_database_could_not_store_is_refused_when_built(
    build: object, problem: str
) -> None:
    """These passed (or raised a TypeError) and failed at the first tick, in the database or
    in the leader's registration of the crontab; a worker given by name got no check."""
    with pytest.raises(ConfigError, match=f"cron entry .*{problem}"):
        build()  # type: ignore[operator]


def test_what_cron_list_shows_is_what_a_tick_inserts() -> None:
    typed = CronEntry("* * * * *", HealthCheck)
    assert typed.describe()["args"] == {"target": "db"} == typed.build(HealthCheck).args
    named = CronEntry("* * * * *", "by.name", args={"n": -0.0, "t": (1, 2)})
    assert named.describe()["args"] == {"n": 0.0, "t": [1, 2]}


def test_entries_that_differ_only_in_args_get_distinct_derived_names() -> None:
    eu, us = coerce_crontab(
        [
            ("0 * * * *", HealthCheck, {"args": {"target": "eu"}}),
            ("@hourly", HealthCheck, {"args": {"target": "us"}}),
        ]
    )
    assert eu.key != us.key and eu.derived and us.derived
    # a stable hash of schedule (aliases expanded), worker and options, as Oban derives it:
    # the same on every node and in every release (this value is pinned on purpose)
    assert eu.key == derived_name("0 * * * *", "tests.HealthCheck", {"args": {"target": "eu"}})
    assert eu.key == "f1921196"
    assert CronEntry("0  *  * * *", HealthCheck, args={"target": "eu"}).key == eu.key
    # an option left at its default is not part of it; any option that changes a tick's job is
    assert CronEntry("0 * * * *", HealthCheck, timezone="UTC").key == (
        CronEntry("0 * * * *", HealthCheck).key
    )
    others = [
        CronEntry("0 * * * *", HealthCheck, args={"target": "eu"}, **option)  # type: ignore[arg-type]
        for option in (
            {"queue": "q"},
            {"priority": 1},
            {"max_attempts": 2},
            {"tags": ("t",)},
            {"timezone": "Europe/Paris"},
        )
    ]
    assert len({e.key for e in [eu, *others]}) == 6
    # a given name is kept as it is
    named = CronEntry("0 * * * *", HealthCheck, name="hourly-eu")
    assert named.key == "hourly-eu" and not named.derived and named.legacy_key is None
    assert eu.legacy_key == "0 * * * * tests.HealthCheck"  # the name it had before


DERIVE_IN_A_PROCESS = """
from pydantic import BaseModel
from jobsaga import Worker
from jobsaga.plugins.crontab import CronEntry
class Tagged(Worker, name="tests.cron.tagged"):
    class Args(BaseModel):
        regions: set[str]
    def perform(self, job):
        return None
print(CronEntry("*/5 * * * *", Tagged, args={"regions": {"eu", "us", "apac", "latam"}}).name)
"""


def test_a_derived_name_is_the_same_in_every_process() -> None:
    """Args an Args model accepts but json cannot write (a set) are hashed in one order:
    with str() each node's hash seed gave the entry another name, so the leaders of two
    nodes would record it under two names and a tick could fire under both."""
    names = {
        subprocess.run(
            [sys.executable, "-c", DERIVE_IN_A_PROCESS],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }
    assert len(names) == 1 and len(names.pop()) == 8
