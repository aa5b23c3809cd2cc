"""``jobsaga cron list`` shows the recorded crontab with next run times."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime

from click.testing import CliRunner

from jobsaga import App, CronEntry
from jobsaga.cli.main import cli
from jobsaga.plugins.cron import sync_entries
from jobsaga.plugins.crontab import coerce_crontab

from .test_cron import Tick


def test_cron_list(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(Tick)
    runner = CliRunner()
    empty = runner.invoke(cli, ["cron", "list", "--url", db_url])
    assert empty.exit_code == 0 and "no cron entries recorded" in empty.output
    crontab = '[["0 2 * * *", "tests.cron.Tick"], ["@hourly", "tests.cron.Tick"]]'
    configured = runner.invoke(
        cli, ["cron", "list", "--url", db_url, "--set", f"crontab={crontab}"]
    )
    assert configured.exit_code == 0, configured.output
    assert "no cron entries recorded yet: the configuration has 2" in configured.output
    sync_entries(
        app,
        [
            CronEntry("0 2 * * *", Tick, name="daily-cleanup", timezone="Europe/Paris"),
            CronEntry("@reboot", Tick, name="warmup", queue="default"),
        ],
    )
    result = runner.invoke(cli, ["cron", "list", "--url", db_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "leader: none right now"
    assert lines[1].split() == [
        "NAME", "SCHEDULE", "WORKER", "QUEUE", "ARGS", "NEXT", "RUN", "(UTC)", "LAST", "RUN",
        "(UTC)", "TICKS",
    ]  # fmt: skip
    # one time format (UTC, relative); the entry's own zone beside its expression
    assert lines[2].startswith("daily-cleanup  0 2 * * * (Europe/Paris)  tests.cron.Tick  -")
    assert re.search(r" 20\d\d-\d\d-\d\d 0[01]:00:00 \(in \d+ (h|min|s)\)  never +0$", lines[2])
    assert lines[3].split()[:5] == ["warmup", "@reboot", "tests.cron.Tick", "default", "-"]
    assert "at boot" in lines[3]
    as_json = runner.invoke(cli, ["cron", "list", "--url", db_url, "--json"])
    first = json.loads(as_json.output.splitlines()[0])
    assert first["name"] == "daily-cleanup" and first["timezone"] == "Europe/Paris"
    assert datetime.fromisoformat(first["next_run"]).hour == 2
    assert first["next_run"][10] == "T"  # ISO, as jobs list --json writes times


def test_cron_list_counts_ticks(make_app: Callable[..., App], db_url: str) -> None:
    from .support import FakeClock

    clock = FakeClock()
    app = make_app(Tick, clock=clock)
    entries = [CronEntry("* * * * *", Tick, name="minutely")]
    sync_entries(app, entries)
    from jobsaga.cli.cron import cron_entries
    from jobsaga.plugins.cron import insert_due

    (before,) = cron_entries(app)
    assert before["ticks"] == 0 and before["last_tick"] is None
    clock.advance(70)
    assert len(insert_due(app, entries)) == 1
    clock.advance(60)
    assert len(insert_due(app, entries)) == 1
    (after,) = cron_entries(app)
    assert after["ticks"] == 2 and after["last_tick"] == clock().replace(second=0)  # 12:02:00


def test_cron_list_shows_entries_that_differ_only_in_args(
    make_app: Callable[..., App], db_url: str
) -> None:
    """Two entries of one worker and schedule, one per region: each has its own derived name
    (not refused), and the table names each column once."""
    app = make_app(Tick)
    entries = coerce_crontab(
        [
            ("*/15 * * * *", Tick, {"args": {"region": "eu"}}),
            ("*/15 * * * *", Tick, {"args": {"region": "us"}}),
        ]
    )
    sync_entries(app, entries)
    listed = CliRunner().invoke(cli, ["cron", "list", "--url", db_url]).output.splitlines()
    rows = {line.split()[0]: line.split() for line in listed[2:]}
    assert sorted(rows) == sorted(e.key for e in entries)
    for entry in entries:
        row = rows[entry.key]
        assert row[1:9] == ["*/15", "*", "*", "*", "*", "tests.cron.Tick", "-", (
            '{"region":"eu"}' if entry.args == {"region": "eu"} else '{"region":"us"}'
        )]  # fmt: skip
        assert row.count("tests.cron.Tick") == 1 and row.count("*/15") == 1
