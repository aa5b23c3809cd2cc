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
import contextlib
import logging
from collections.abc import Callable, Mapping, Sized
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

from ..errors import ConfigError
from ..telemetry import NO_SPAN
from ..waiting import wait_event

if TYPE_CHECKING:
    from ..core import AppCore
    from ..job import Job
    from .supervisor import NodePlugins

T = TypeVar("T")

log = logging.getLogger("jobsaga.plugins")

Counts = dict[str, int]


class QueueView(Protocol):
    """What a plugin sees of one of its node's queues: the heartbeat publishes it, the
    stager and the reconciler wake it."""

    @property
    def queue(self) -> str: ...
    @property
    def limit(self) -> int: ...
    @property
    def paused(self) -> bool: ...
    @property
    def running(self) -> Sized: ...
    @property
    def abandoned_threads(self) -> int: ...
    @property
    def abandon_cap(self) -> int: ...
    @property
    def stalled(self) -> bool: ...
    def wake(self) -> None:
        """Fetch now (work was staged or given back)."""


class WatchedThreads(Protocol):
    """The threads of one attempt whose user code may still run (a sync perform)."""

    @property
    def live(self) -> int: ...
    def watch(self, watcher: Callable[[Any], None]) -> int: ...


class PluginHost(Protocol):
    """What a plugin needs from the node that runs it. The node (``runtime/node.py``) is
    one; the plugins sit below the runtime and know it only through this."""

    @property
    def name(self) -> str: ...
    @property
    def app(self) -> AppCore: ...
    @property
    def plugins(self) -> NodePlugins: ...
    @property
    def producers(self) -> Mapping[str, QueueView]: ...
    @property
    def held(self) -> Mapping[int, tuple[Job[Any], WatchedThreads]]:
        """Jobs left executing at shutdown because their user code still runs in a thread."""

    @property
    def unsettled(self) -> dict[int, tuple[int, datetime | None]]:
        """Jobs that ran but whose outcome was not written (id -> attempt, claimed at); the
        reconciler removes those it settled."""

    async def run_in_db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking database work off the node's event loop."""

    def claims_known(self) -> tuple[datetime, set[int]]: ...

    async def run_final_failure(self, job: Job[Any], error: BaseException) -> None:
        """Run the worker's final-failure hook for ``job`` as the node's executor would."""


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

    def __init__(self, node: PluginHost, interval: float) -> None:
        if interval <= 0:
            raise ConfigError(f"{self.name}: interval must be > 0 seconds, got {interval!r}")
        self.node = node
        self.interval = interval
        self._wake: asyncio.Event | None = None
        self._on: asyncio.AbstractEventLoop | None = None
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
        self._on = asyncio.get_running_loop()
        self._task = asyncio.create_task(self._loop(), name=f"jobsaga-plugin-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        """Run now rather than when the next run is due. Safe from any thread: a test that
        moved the app's clock wakes a duty so (its sleep was reckoned on that clock)."""
        event, loop = self._wake, self._on
        if event is None or loop is None:
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            event.set()
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: the loop has stopped
                loop.call_soon_threadsafe(event.set)

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
        """One run with its telemetry (``plugin.<name>.stop`` with its counts, or
        ``.exception``; no start event); tests call this to run a duty on demand."""
        span = (
            self.node.app.telemetry.span(
                f"plugin.{self.name}", {"plugin": self.name, "node": self.node.name}, start=False
            )
            if self.emits
            else NO_SPAN
        )
        with span:
            counts = await self.run_once()
            self.runs += 1
            span.stop(counts)
        return counts
