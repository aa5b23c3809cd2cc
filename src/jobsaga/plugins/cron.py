"""Insert the jobs of a crontab, each tick once, however many nodes run it.

The leader runs cron. Exactly-once does not rest on leadership, though: every entry has a
row in ``jobsaga_cron`` whose ``last_tick_at`` only moves forward, by a compare-and-set
(``UPDATE ... WHERE last_tick_at < tick``) in the same transaction that inserts the tick's
job. Two nodes that both try a tick serialize on that row and one of them wins.

A new leader catches up on ticks it missed while leadership changed hands (those no older
than ``CATCH_UP`` seconds); older missed ticks, such as those of a cluster that was down for
a day, are skipped rather than all inserted at once. A new entry starts with the next tick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..job import Job, JobSpec
from ..serialization import dumps
from .base import Counts, Looper
from .crontab import CronEntry, next_after

if TYPE_CHECKING:
    from ..core import AppCore
    from ..engines import Engine
    from ..engines.base import Tx
    from .base import PluginHost

CATCH_UP = 60.0
"""Seconds of missed ticks a new leader still inserts (late) after a leader change."""
MAX_SLEEP = 30.0


def _register(engine: Engine, tx: Tx, entry: CronEntry, now: datetime) -> None:
    tx.execute(
        engine.queries["cron_register"],
        {
            "name": entry.key,
            "expression": entry.expression,
            "worker": entry.worker_name,
            "detail": dumps(entry.describe()),
            "now": engine.time_param(now),
        },
    )


def sync_entries(app: AppCore, entries: Sequence[CronEntry]) -> None:
    """Record the crontab (for ``jobsaga cron list``); entries no longer in it are dropped.

    An unnamed entry recorded under its former name (``"<schedule> <worker>"``, before names
    were derived from a hash) continues that row's last tick and count under its new name,
    in this one transaction, so the rename neither repeats nor skips a tick."""
    engine = app.engine
    q = engine.queries
    now = app.clock()
    with engine.transaction() as tx:
        recorded = {str(row["name"]): row for row in tx.execute(q["cron_list"])}
        keys = {entry.key for entry in entries}
        for entry in entries:
            _register(engine, tx, entry, now)
            old = _former_row(engine, entry, recorded, keys)
            if old is not None:
                since = old["last_tick_at"]  # as the engine stores it
                if entry.key in recorded:
                    tx.execute(q["cron_advance"], {"name": entry.key, "since": since})
                else:
                    params = {"name": entry.key, "since": since, "ticks": int(old["ticks"])}
                    tx.execute(q["cron_take_over"], params)
        tx.execute(q["cron_forget_others"], {"names": dumps(sorted(keys))})


def _former_row(
    engine: Engine, entry: CronEntry, recorded: Mapping[str, Any], keys: set[str]
) -> Any | None:
    """The row ``entry`` was recorded under before its name was derived from a hash: same
    schedule and worker (the old name), same args, queue, priority and timezone (the old
    row's detail), and not the name of an entry of this crontab."""
    legacy = entry.legacy_key
    if legacy is None or legacy in keys or legacy not in recorded:
        return None
    old = recorded[legacy]
    detail = engine.stored_json(old["detail"]) or {}
    ours = entry.describe()
    same = all(detail.get(k) == ours[k] for k in ("args", "queue", "priority", "timezone"))
    return old if same else None


def insert_due(
    app: AppCore,
    entries: Sequence[CronEntry],
    *,
    reboot: bool = False,
    catch_up: float = CATCH_UP,
) -> list[Job[Any]]:
    """Insert the job of every tick due since the entry's last one; returns the new jobs."""
    engine = app.engine
    q = engine.queries
    now = app.clock()
    horizon = now - timedelta(seconds=catch_up)
    with engine.transaction() as tx:
        last = {
            r["name"]: engine.time_value(r["last_tick_at"]) for r in tx.execute(q["cron_ticks"])
        }
        specs: list[JobSpec] = []
        for entry in entries:
            worker = entry.resolve(app)
            if entry.is_reboot:
                if reboot:  # once per cluster boot (the leader's first term), not per tick row
                    # recorded for `cron list` (the row sync_entries wrote at the election)
                    tx.execute(
                        q["cron_claim_tick"], {"name": entry.key, "tick": engine.time_param(now)}
                    )
                    specs.append(entry.build(worker, now))
                continue
            since = last.get(entry.key)
            if since is None:  # new (or dropped by a leader with another crontab)
                _register(engine, tx, entry, now)
                continue
            for tick in entry.ticks(max(since, horizon), now):
                claimed = tx.execute(
                    q["cron_claim_tick"], {"name": entry.key, "tick": engine.time_param(tick)}
                )
                if claimed:
                    specs.append(entry.build(worker, tick))
        return engine.insert_in(tx, specs) if specs else []


class Cron(Looper):
    name = "cron"
    leader_only = True

    def __init__(self, node: PluginHost, entries: Sequence[CronEntry]) -> None:
        super().__init__(node, MAX_SLEEP)
        self.entries = tuple(entries)
        self._term = 0
        self._rebooted = False
        self._delay = MAX_SLEEP

    async def run_once(self) -> Counts:
        node = self.node
        leader = node.plugins.leader
        reboot = False
        if self._term != leader.terms:
            await node.run_in_db(sync_entries, node.app, self.entries)
            self._term = leader.terms
            reboot = leader.first_term and not self._rebooted
        jobs = await node.run_in_db(lambda: insert_due(node.app, self.entries, reboot=reboot))
        self._rebooted = self._rebooted or reboot
        if jobs:
            node.app.announce(jobs)
        now = node.app.clock()
        upcoming = next_after(self.entries, now)
        until = (upcoming - now).total_seconds() if upcoming is not None else MAX_SLEEP
        self._delay = min(MAX_SLEEP, max(0.001, until))
        return {"inserted": len(jobs)}

    def next_delay(self) -> float:
        return self._delay
