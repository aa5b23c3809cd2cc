"""``jobsaga cron list`` shows the recorded crontab with next run times."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime

from click.testing import CliRunner

from jobsaga import App, CronEntry
from jobsaga.cli.main import cli
from jobsaga.plugins.cron import sync_entries

from .test_cron import Tick


def test_cron_list(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(Tick)
    runner = CliRunner()
    empty = runner.invoke(cli, ["cron", "list", "--url", db_url])
    assert empty.exit_code == 0 and "no cron entries recorded" in empty.output
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
    assert lines[1].startswith("daily-cleanup  0 2 * * *") and "02:00:00 CE" in lines[1]
    assert "warmup" in lines[2] and "next -" in lines[2] and "queue default" in lines[2]
    as_json = runner.invoke(cli, ["cron", "list", "--url", db_url, "--json"])
    first = json.loads(as_json.output.splitlines()[0])
    assert first["name"] == "daily-cleanup" and first["timezone"] == "Europe/Paris"
    assert datetime.fromisoformat(first["next_run"]).hour == 2


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
