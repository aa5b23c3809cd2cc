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
from .tables import Cell, Column, echo_table, time_header, when


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


def iso_time(value: Any) -> str:
    """A time in ``--json`` as ``jobs list --json`` writes one (ISO 8601, ``T``)."""
    return value.isoformat() if isinstance(value, datetime) else str(value)


def current_leader(app: App) -> str | None:
    engine = app.engine
    with engine.transaction() as tx:
        found = tx.execute(engine.queries["current_leader"], {"scope": SCOPE})
    if not found:
        return None
    expires = engine.time_value(found[0]["expires_at"])
    return str(found[0]["node"]) if expires is not None and expires > app.clock() else None


CRON_COLUMNS = (
    Column("NAME"),
    Column("SCHEDULE"),
    Column("WORKER", max_width=80),
    Column("QUEUE", max_width=64),
    Column("ARGS", max_width=40),
    Column(time_header("NEXT RUN")),
    Column(time_header("LAST RUN")),
    Column("TICKS", "right"),
)


def schedule_text(entry: dict[str, Any]) -> str:
    """The expression as written, and its zone when it is not UTC (the times are shown in
    UTC, so ``0 2 * * *`` in Paris reads right next to its ``01:00:00`` next run)."""
    zone = entry["timezone"]
    return entry["expression"] if zone == "UTC" else f"{entry['expression']} ({zone})"


def cron_rows(entries: list[dict[str, Any]], now: datetime) -> list[list[Cell]]:
    return [
        [
            entry["name"],
            schedule_text(entry),
            entry["worker"],
            entry["queue"] or "-",  # "-": the worker's own queue
            json.dumps(entry["args"], separators=(",", ":")) if entry["args"] else "-",
            when(entry["next_run"], now) or "at boot",
            when(entry["last_tick"], now) or "never",
            entry["ticks"],
        ]
        for entry in entries
    ]


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
            now = app.clock()
        if as_json:
            for entry in entries:
                click.echo(json.dumps(entry, default=iso_time))
            return
        if not entries:
            configured = len(source.config().crontab or ())
            click.echo(
                f"no cron entries recorded yet: the configuration has {configured}, and a "
                "node's leader records its crontab when it is elected"
                if configured
                else "no cron entries recorded: the leader records its crontab when it starts "
                "(Node(crontab=[...]) or crontab = [...] in the config)"
            )
            return
        click.echo(f"leader: {leader or 'none right now'}")
        echo_table(CRON_COLUMNS, cron_rows(entries, now))
