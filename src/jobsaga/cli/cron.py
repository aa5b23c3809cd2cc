"""``jobsaga cron list``: the crontab the cluster runs, with each entry's next run time.

The entries come from the database, where the leader records the crontab it runs, so the
list shows what the cluster actually does rather than what one config file says.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from ..app import App
from ..plugins.crontab import REBOOT, normalize_expression
from ..plugins.leader import SCOPE
from .configured import AppSource
from .options import config_options


def next_run(expression: str, timezone: str, after: datetime) -> datetime | None:
    from zoneinfo import ZoneInfo

    from croniter import croniter

    schedule = normalize_expression(expression)
    if schedule == REBOOT:
        return None
    value: datetime = croniter(schedule, after.astimezone(ZoneInfo(timezone))).get_next(datetime)
    return value


def cron_entries(app: App) -> list[dict[str, Any]]:
    """The recorded entries with their next run (in the entry's timezone) and last tick."""
    engine = app.engine
    now = app.clock()
    with engine.transaction() as tx:
        found = tx.execute(engine.queries["cron_list"])
    entries = []
    for row in found:
        detail = engine.stored_json(row["detail"]) or {}
        timezone = detail.get("timezone") or "UTC"
        entries.append(
            {
                "name": row["name"],
                "expression": row["expression"],
                "worker": row["worker"],
                "timezone": timezone,
                "queue": detail.get("queue"),
                "args": detail.get("args") or {},
                "ticks": int(row["ticks"]),
                "last_tick": engine.time_value(row["last_tick_at"]) if row["ticks"] else None,
                "next_run": next_run(row["expression"], timezone, now),
            }
        )
    return entries


def current_leader(app: App) -> str | None:
    engine = app.engine
    with engine.transaction() as tx:
        found = tx.execute(engine.queries["current_leader"], {"scope": SCOPE})
    if not found:
        return None
    expires = engine.time_value(found[0]["expires_at"])
    return str(found[0]["node"]) if expires is not None and expires > app.clock() else None


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S %Z") if value is not None else "-"


def cron_commands(cli: click.Group) -> None:
    @cli.group()
    def cron() -> None:
        """Scheduled (cron) jobs."""

    @cron.command("list")
    @config_options
    @click.option("--json", "as_json", is_flag=True, help="One JSON object per entry.")
    def list_entries(source: AppSource, as_json: bool) -> None:
        """Cron entries the cluster runs, with their next run times."""
        with source.open() as app:
            entries = cron_entries(app)
            leader = current_leader(app)
        if as_json:
            for entry in entries:
                click.echo(json.dumps(entry, default=str))
            return
        if not entries:
            click.echo(
                "no cron entries recorded: the leader records its crontab when it starts "
                "(Node(crontab=[...]) or crontab = [...] in the config)"
            )
            return
        click.echo(f"leader: {leader or 'none right now'}")
        width = max(len(e["name"]) for e in entries)
        for entry in entries:
            click.echo(
                f"{entry['name']:<{width}}  {entry['expression']:<16} {entry['worker']}"
                f"  next {_when(entry['next_run'])}  last {_when(entry['last_tick'])}"
                f"  ({entry['ticks']} ticks)"
                + (f"  queue {entry['queue']}" if entry["queue"] else "")
            )
