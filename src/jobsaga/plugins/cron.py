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

from collections.abc import Sequence
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
    """Record the crontab (for ``jobsaga cron list``); entries no longer in it are dropped."""
    engine = app.engine
    now = app.clock()
    with engine.transaction() as tx:
        for entry in entries:
            _register(engine, tx, entry, now)
        tx.execute(engine.queries["cron_forget_others"], {"names": dumps([e.key for e in entries])})


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
                if reboot:
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
