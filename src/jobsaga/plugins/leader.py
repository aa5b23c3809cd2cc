"""Leadership: one node at a time holds a lease row and runs the cluster-wide duties.

A lease table rather than PostgreSQL advisory locks: a session lock would belong to whichever
pooled connection took it (and vanish or linger with that connection), and a table works the
same on SQLite, where several processes may share one file. Every node tries to take or renew
the lease every ``lease / 3`` seconds; a leader that stops resigns and notifies, so another
node takes over at once, and a leader that dies is replaced once its lease expires.

A follower that loses reads the holder's expiry from the row and, when it falls before its
next regular try, wakes at that moment instead: polling alone would take over up to
``lease / 3`` late (between 2/3 and 4/3 of a lease after the leader died), whereas waking at
the expiry bounds takeover by the lease itself, counted from the dead leader's last renewal.

The leader trusts its lease only until the last renewal it saw succeed plus the lease length,
measured on its own monotonic clock, so a leader cut off from the database stops leading by
itself about when the others may take over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import Counts, Looper

if TYPE_CHECKING:
    from .base import PluginHost

log = logging.getLogger("jobsaga.plugins.leader")

SCOPE = "jobsaga"

EXPIRY_MARGIN = 0.002
"""Seconds a follower waits past the holder's expiry: the lease is free only once it is
strictly past (``expires_at < now``), and stored times are precise to the microsecond."""


class Leader(Looper):
    name = "leader"
    leader_only = False
    emits = False  # a renewal every lease / 3 is no event; elections and resignations are

    def __init__(self, node: PluginHost, lease: float, *, eligible: bool = True) -> None:
        if lease <= 0:
            raise ConfigError(f"leader_lease must be > 0 seconds, got {lease!r}")
        super().__init__(node, lease / 3)
        self.lease = lease
        self.eligible = eligible
        self.terms = 0
        """How many times this node was elected since it started."""
        self.first_term = False
        """Whether the node won its very first election (it leads a cluster that just booted)."""
        self._leading = False
        self._valid_until = 0.0
        self._attempts = 0
        self._expires_in: float | None = None
        """After a lost try: seconds (on the monotonic clock, from the end of the try) until
        the holder's lease ends; None when unknown."""

    @property
    def is_leader(self) -> bool:
        return self._leading and time.monotonic() < self._valid_until

    def try_lead(self) -> bool:
        """Take or renew the lease; True when this node holds it. On a loss, note when the
        holder's lease ends, for :meth:`next_delay`."""
        app = self.node.app
        engine = app.engine
        # The monotonic reading first: the leader's own trust then ends no later than the
        # expiry it writes, so it never trusts a lease the others may already take.
        asked = time.monotonic()
        now = app.clock()
        params = {
            "scope": SCOPE,
            "node": self.node.name,
            "token": self.node.plugins.heartbeat.token,
            "now": engine.time_param(now),
            "expires_at": engine.time_param(now + timedelta(seconds=self.lease)),
        }
        named = engine.queries
        with engine.transaction() as tx:
            won = bool(tx.execute(named["lead"], params))
            holder = [] if won else tx.execute(named["current_leader"], {"scope": SCOPE})
        if won:
            self._valid_until = asked + self.lease
            self._expires_in = None
            return won
        expires_at = engine.time_value(holder[0]["expires_at"]) if holder else None
        if expires_at is None:
            self._expires_in = 0.0  # the holder resigned meanwhile: the lease is free now
        else:
            # On this node's clock, as the lead query compares: skew between nodes shifts
            # the takeover but cannot make this node take a lease it sees unexpired.
            remaining = (expires_at - now).total_seconds()
            self._expires_in = remaining - (time.monotonic() - asked)
        return won

    def next_delay(self) -> float:
        """The regular ``lease / 3``, or less when the holder's lease ends sooner: a follower
        tries again just past that expiry, so a dead leader is replaced within its lease."""
        if self._leading or self._expires_in is None:
            return self.interval
        return min(self.interval, max(self._expires_in, 0.0) + EXPIRY_MARGIN)

    def resign_in_db(self) -> None:
        engine = self.node.app.engine
        with engine.transaction() as tx:
            token = self.node.plugins.heartbeat.token
            tx.execute(engine.queries["resign"], {"scope": SCOPE, "token": token})
            engine.notify(tx, {"leader_resigned": self.node.name})

    async def run_once(self) -> Counts:
        if not self.eligible:
            return {"leader": 0}
        self._attempts += 1
        try:
            won = await self.node.run_in_db(self.try_lead)
        except Exception:
            if self._leading and not self.is_leader:
                self._set_leading(False, reason="lease lost: the database did not answer")
            raise
        if won and not self._leading:
            self.first_term = self._attempts == 1
            self._set_leading(True)
        elif not won and self._leading:
            self._set_leading(False, reason="lease taken by another node")
        return {"leader": int(won)}

    def _set_leading(self, leading: bool, *, reason: str = "") -> None:
        self._leading = leading
        telemetry = self.node.app.telemetry
        meta = {"node": self.node.name}
        if leading:
            self.terms += 1
            log.info("node %s is now the leader", self.node.name)
            telemetry.emit("leader.elected", {"system_time": time.time()}, meta)
            self.node.plugins.wake_leader_duties()
        else:
            log.info("node %s is no longer the leader: %s", self.node.name, reason)
            telemetry.emit(
                "leader.resigned", {"system_time": time.time()}, {**meta, "reason": reason}
            )

    async def stop(self) -> None:
        await super().stop()
        if self._leading:
            self._leading = False
            try:
                await self.node.run_in_db(self.resign_in_db)
            except Exception:
                log.exception("node %s: could not resign; the lease will expire", self.node.name)
            log.info("node %s resigned leadership", self.node.name)
            self.node.app.telemetry.emit(
                "leader.resigned",
                {"system_time": time.time()},
                {"node": self.node.name, "reason": "node stopping"},
            )

    def notice(self, payload: Mapping[str, Any]) -> None:
        if payload.get("leader_resigned") and payload["leader_resigned"] != self.node.name:
            self.wake()
