"""Every node says it is alive, so the lifeline can tell a dead node's jobs from a slow job.

The heartbeat runs on its own thread, not on the node's event loop: an ``async def perform``
that hogs the loop, or a burst of work in the database thread pool, must not make a live node
look dead and get its jobs run twice. Each beat writes the node's own deadline
(``expires_at = now + rescue_after``), so the rescuer honours each node's settings.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..serialization import dumps
from .base import queries

if TYPE_CHECKING:
    from ..runtime.node import Node

log = logging.getLogger("jobsaga.plugins.heartbeat")


class Heartbeat:
    name = "heartbeat"

    def __init__(self, node: Node, interval: float, rescue_after: float) -> None:
        self.node = node
        self.interval = interval
        self.rescue_after = rescue_after
        self.beats = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_at = node.app.clock()
        """Set when the node is built (before it can claim anything) and again when it stops."""

    def snapshot(self) -> dict[str, Any]:
        """What other tools may want to know about this node (``jobsaga queues`` per node)."""
        queues = {}
        for producer in tuple(self.node.producers.values()):
            queues[producer.queue] = {
                "limit": producer.limit,
                "paused": producer.paused,
                "running": len(producer.running),
            }
        return {"host": socket.gethostname(), "pid": os.getpid(), "queues": queues}

    def beat(self) -> None:
        app = self.node.app
        engine = app.engine
        now = app.clock()
        params = {
            "name": self.node.name,
            "started_at": engine.time_param(self.started_at),
            "now": engine.time_param(now),
            "expires_at": engine.time_param(now + timedelta(seconds=self.rescue_after)),
            "meta": dumps(self.snapshot()),
        }
        with engine.transaction() as tx:
            tx.execute(queries(engine)["heartbeat"], params)
        self.beats += 1

    async def start(self) -> None:
        """Write the first beat before the node claims anything, then beat on a thread."""
        await self.node.run_in_db(self.beat)
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"jobsaga-heartbeat-{self.node.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # the database is away: keep trying, the deadline tells the rest
                log.exception("node %s: heartbeat failed", self.node.name)

    async def stop(self) -> None:
        """Stop beating and remove the row: a node that stopped cleanly has no orphans left."""
        self._stop.set()
        if self._thread is not None:
            await self.node.run_in_db(self._thread.join, 10.0)
            self._thread = None
        self.started_at = self.node.app.clock()  # a restart of this node object starts anew
        try:
            await self.node.run_in_db(self.forget)
        except Exception:
            log.exception("node %s: could not remove its heartbeat row", self.node.name)

    def forget(self) -> None:
        engine = self.node.app.engine
        with engine.transaction() as tx:
            tx.execute(queries(engine)["forget_node"], {"name": self.node.name})

    def wake(self) -> None:
        """Beats are periodic; nothing to wake."""

    def notice(self, payload: Mapping[str, Any]) -> None:
        """Beats do not depend on other nodes."""
