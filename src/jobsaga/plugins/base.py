"""The protocol every background duty of a node follows, and the loop most of them share.

A plugin is started and stopped by the node, may be woken early, and hears the node's
notifications. Most plugins are a :class:`Looper`: run once, sleep until the next run is due
or something wakes them, repeat. A looper marked ``leader_only`` runs only while its node
holds the cluster lease, which is how cron, the pruner and the lifeline run once per cluster.
Correctness never rests on leadership alone: every duty is safe when two nodes briefly both
believe they lead (cron claims ticks by compare-and-set, rescue and prune skip locked rows).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ..errors import ConfigError
from ..runtime.waiting import wait_event

if TYPE_CHECKING:
    from ..runtime.node import Node

log = logging.getLogger("jobsaga.plugins")

Counts = dict[str, int]


class Plugin(Protocol):
    """What the node needs from a background duty."""

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def wake(self) -> None: ...

    def notice(self, payload: Mapping[str, Any]) -> None: ...


class Looper:
    """Call :meth:`run_once` in a loop on the node's event loop, sleeping in between.

    Subclasses give ``name``, set ``leader_only``, implement :meth:`run_once` (database work
    goes through ``node.run_in_db`` so the loop never blocks) and may override
    :meth:`next_delay`. Each run emits ``plugin.<name>.stop`` with its counts, or
    ``plugin.<name>.exception``; a failing run is logged and retried with backoff, never fatal.
    """

    name: ClassVar[str] = "looper"
    leader_only: ClassVar[bool] = False
    emits: ClassVar[bool] = True
    """Whether runs emit ``plugin.<name>.*`` events (the leader emits ``leader.*`` instead)."""

    def __init__(self, node: Node, interval: float) -> None:
        if interval <= 0:
            raise ConfigError(f"{self.name}: interval must be > 0 seconds, got {interval!r}")
        self.node = node
        self.interval = interval
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def next_delay(self) -> float:
        """Seconds until the next run after a successful one."""
        return self.interval

    async def run_once(self) -> Counts:
        raise NotImplementedError

    def may_run(self) -> bool:
        return not self.leader_only or self.node.plugins.is_leader

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name=f"jobsaga-plugin-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def notice(self, payload: Mapping[str, Any]) -> None:
        """Notifications from other nodes; most plugins ignore them."""

    async def _loop(self) -> None:
        assert self._wake is not None
        failures = 0
        while True:
            delay = self.interval
            if self.may_run():
                try:
                    await self.run_timed()
                    failures = 0
                    delay = self.next_delay()
                except Exception:
                    failures += 1
                    log.exception("plugin %s failed (%d in a row)", self.name, failures)
                    delay = min(self.interval, 0.1 * 2**failures)
            await wait_event(self._wake, max(0.001, delay))

    async def run_timed(self) -> Counts:
        """One run with its telemetry; tests call this to run a duty on demand."""
        telemetry = self.node.app.telemetry
        meta = {"plugin": self.name, "node": self.node.name}
        started = time.monotonic()
        try:
            counts = await self.run_once()
        except Exception as exc:
            if not self.emits:
                raise
            telemetry.emit(
                f"plugin.{self.name}.exception",
                {"duration": time.monotonic() - started},
                {**meta, "error": exc, "kind": type(exc).__name__},
            )
            raise
        self.runs += 1
        if not self.emits:
            return counts
        telemetry.emit(
            f"plugin.{self.name}.stop", {"duration": time.monotonic() - started, **counts}, meta
        )
        return counts
