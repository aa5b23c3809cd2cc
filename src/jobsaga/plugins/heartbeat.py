"""Every node says it is alive, so the lifeline can tell a dead node's jobs from a slow job.

The heartbeat runs on its own thread, not on the node's event loop: an ``async def perform``
that hogs the loop, or a burst of work in the database thread pool, must not make a live node
look dead and get its jobs run twice. Each beat writes the node's own deadline
(``expires_at = now + rescue_after``), so the rescuer honours each node's settings.

A node name belongs to one live process at a time, identified by a random token. Two live
processes under one name (a fixed ``name=`` copied to every replica, say) would vouch for each
other's jobs, and the second would rescue the first's jobs as its own; so a node whose name is
held by another process watches that holder for two of its heartbeat intervals: if the holder
still beats, starting fails with a ``ConfigError``; if not, it died (a pod restarted under its
fixed name), and the new process takes the name over.

The row is the node's one liveness record: the lifeline, queue listings (``App.list_queues``,
``jobsaga queues``) and anything else that asks which nodes run what read it, and all of them
take a node for live exactly while its deadline has not passed. Each beat writes, in ``meta``,
what the node runs: per queue its limit, whether it is paused, how many jobs it runs, and its
health (how many threads of timed-out performs still run, and whether the queue stopped
fetching because of them). The node's other parts never write a status of their own: a change
that must show at once (a pause or scale applied, a queue stalling or recovering) asks for an
early beat with :meth:`Heartbeat.wake`.

A node that stops while some of its jobs still run in threads (a sync perform past the grace
period) goes on beating for them, on this thread, after the node itself has stopped: its
row vouches that those jobs are still running, so no other node rescues them, and lists no
queues (it fetches nothing any more), only those jobs (``held_jobs``). When the last
of those threads returns, the row's deadline is set to now and the lifeline rescues the
jobs (attempt counted); if the process exits first, the deadline lapses by itself.
Why those jobs stayed executing is written in the row too, before the node's stop returns
(``interrupted``: per job, its attempt and the shutdown's reason; ``threads_returned_at`` once
their threads returned), so the lifeline that rescues them, or this node's name when it starts
again (``predecessor``), records that the attempt was interrupted by a shutdown rather than
lost to a crash. A note names its attempt: it never describes a later one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, NodeStateError
from ..serialization import dumps

if TYPE_CHECKING:
    from ..engines import Engine
    from ..job import Job
    from .base import PluginHost, WatchedThreads

log = logging.getLogger("jobsaga.plugins.heartbeat")


def node_meta(engine: Engine, stored: Any) -> dict[str, Any]:
    """A node record's meta as a dict; {} when it is missing or unreadable (changed by hand,
    or by another program). What it holds is advisory (the host, the shutdown notes a rescue
    quotes): a bad record must never stop a rescue or a node's start."""
    try:
        meta = engine.stored_json(stored)
    except (ValueError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


class Heartbeat:
    name = "heartbeat"

    def __init__(self, node: PluginHost, interval: float, rescue_after: float) -> None:
        self.node = node
        self.interval = interval
        self.rescue_after = rescue_after
        self.beats = 0
        self.token = uuid.uuid4().hex
        """This process's claim on the node name (new at every start)."""
        self.started_at = node.app.clock()
        """When the node last started: jobs claimed under its name before then are not its own."""
        self._tick = threading.Event()
        """Set to beat early (what the record says changed) or to stop."""
        self._stopping = False
        self._held: list[WatchedThreads] | None = None
        """While lingering after the node stopped: the threads it vouches for."""
        self._thread: threading.Thread | None = None
        self._warned = False
        self._interrupted: dict[int, dict[str, Any]] = {}
        """Jobs held at shutdown: id -> the attempt and why it was cut short (see ``note_held``)."""
        self._returned_at: datetime | None = None
        """When the threads of the held jobs had all returned."""
        self.predecessor: dict[str, Any] | None = None
        """The ``meta`` of the row this node's name had before this start (another process's,
        or this one's last run): what the jobs it left executing were doing, for the rescue
        of those jobs at start."""

    @property
    def lingering(self) -> bool:
        """The node stopped, but this keeps beating for jobs whose threads still run."""
        return self._held is not None and self._thread is not None and self._thread.is_alive()

    def snapshot(self) -> dict[str, Any]:
        """The record's ``meta``: what the node runs (per queue, for ``App.list_queues`` and
        ``jobsaga queues``), and its health (a queue stalled by threads of timed-out
        performs). A stopped node that lingers for its held jobs runs no queue."""
        queues = {}
        healthy = True
        producers = () if self._held is not None else tuple(self.node.producers.values())
        for producer in producers:
            healthy = healthy and not producer.stalled
            queues[producer.queue] = {
                "limit": producer.limit,
                "paused": producer.paused,
                "running": len(producer.running),
                "abandoned_threads": producer.abandoned_threads,
                "abandon_cap": producer.abandon_cap,
                "stalled": producer.stalled,
            }
        meta: dict[str, Any] = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "heartbeat_interval": self.interval,
            "healthy": healthy,
            "held_jobs": sorted(self.node.held),
            "queues": queues,
        }
        interrupted = dict(self._interrupted)  # one copy: the node's loop may add to it
        if interrupted:
            meta["interrupted"] = {str(job_id): note for job_id, note in interrupted.items()}
        if self._returned_at is not None:
            meta["threads_returned_at"] = self._returned_at.isoformat()
        return meta

    def note_held(self, job: Job[Any], reason: str) -> None:
        """The node's shutdown left ``job`` executing while its code still runs in a thread:
        say why in the record (written at the next beat, and at the latest by :meth:`stop`)."""
        self._interrupted[job.id] = {"attempt": job.attempt, "reason": reason}
        self.wake()

    def _params(self) -> dict[str, Any]:
        app = self.node.app
        engine = app.engine
        now = app.clock()
        return {
            "name": self.node.name,
            "token": self.token,
            "started_at": engine.time_param(self.started_at),
            "now": engine.time_param(now),
            "expires_at": engine.time_param(now + timedelta(seconds=self.rescue_after)),
            "meta": dumps(self.snapshot()),
        }

    def beat(self) -> bool:
        """Write a heartbeat; False when another live process holds the name."""
        engine = self.node.app.engine
        with engine.transaction() as tx:
            owned = bool(tx.execute(engine.queries["heartbeat"], self._params()))
        if owned:
            self.beats += 1
        return owned

    def holder(self) -> dict[str, Any] | None:
        engine = self.node.app.engine
        with engine.transaction() as tx:
            found = tx.execute(engine.queries["node_row"], {"name": self.node.name})
        return found[0] if found else None

    def take(self, seen: Mapping[str, Any]) -> bool:
        """Take the name from the holder we watched, if its row is still as we saw it."""
        engine = self.node.app.engine
        params = {
            **self._params(),
            "old_token": seen["token"],
            "old_heartbeat": seen["heartbeat_at"],
        }
        with engine.transaction() as tx:
            return bool(tx.execute(engine.queries["take_node"], params))

    async def claim_name(self) -> None:
        """Hold the node name before claiming any job under it (see the module docstring)."""
        run = self.node.run_in_db
        before = await run(self.holder)
        self.predecessor = (
            node_meta(self.node.app.engine, before["meta"]) if before is not None else None
        )
        if await run(self.beat):
            return
        seen = await run(self.holder)
        if seen is not None:
            meta = node_meta(self.node.app.engine, seen["meta"])
            interval = float(meta.get("heartbeat_interval") or self.interval)
            await asyncio.sleep(2 * interval + 0.2)
            now = await run(self.holder)
            if now is not None and (
                now["token"] != seen["token"] or now["heartbeat_at"] != seen["heartbeat_at"]
            ):
                where = f"{meta.get('host', '?')} pid {meta.get('pid', '?')}"
                raise ConfigError(
                    f"node name {self.node.name!r} is in use by a live process ({where}); every "
                    "running node needs its own name (the default name is unique)"
                )
            if now is not None and await run(self.take, now):
                log.warning(
                    "node %s: took its name over from a process that stopped beating",
                    self.node.name,
                )
                self.beats += 1
                return
        if not await run(self.beat):
            raise ConfigError(
                f"node name {self.node.name!r} was taken by another process while this one "
                "started; every running node needs its own name"
            )

    async def start(self) -> None:
        """Claim the name with a first beat before the node claims anything, then beat on a thread."""
        if self.lingering:
            raise NodeStateError(
                f"node {self.node.name} cannot start again yet: jobs of its last run still "
                f"run in threads ({sorted(self.node.held)})"
            )
        self.token = uuid.uuid4().hex
        self.started_at = self.node.app.clock()
        self._held = None
        self._interrupted = {}
        self._returned_at = None
        self._stopping = False
        self._tick.clear()
        await self.claim_name()
        self._thread = threading.Thread(
            target=self._run, name=f"jobsaga-heartbeat-{self.node.name}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._tick.wait(self.interval)
            self._tick.clear()
            if self._stopping:
                return
            held = self._held
            if held is not None and not any(threads.live for threads in held):
                self._release_held()
                return
            try:
                owned = self.beat()
            except Exception:  # the database is away: keep trying, the deadline tells the rest
                log.exception("node %s: heartbeat failed", self.node.name)
                continue
            if not owned and not self._warned:
                self._warned = True
                log.error(
                    "node %s: another live process now holds this node name (this node was "
                    "silent past its deadline and its jobs may have been rescued)",
                    self.node.name,
                )

    async def stop(self) -> None:
        """Stop beating and remove the row: a node that stopped cleanly has no orphans left.

        Unless some of its jobs still run in threads (``node.held``): then this goes on
        beating for them after the node stopped, and ends as described in the module
        docstring. The node's name stays taken meanwhile."""
        held = [threads for _, threads in self.node.held.values()]
        if held and self._thread is not None and self._thread.is_alive():
            self._held = held
            # Before the stop returns: the process may exit right after it (jobsaga worker
            # does), and the row must already say why its held jobs stayed executing.
            try:
                await self.node.run_in_db(self.beat)
            except Exception:  # the thread's next beats write it, if the process lives on
                log.exception("node %s: could not record its held jobs", self.node.name)
            for threads in held:
                threads.watch(lambda _threads: self._tick.set())
            self._tick.set()  # a thread may have returned already
            return
        self._stopping = True
        self._tick.set()
        if self._thread is not None:
            await self.node.run_in_db(self._thread.join, 10.0)
            self._thread = None
        try:
            await self.node.run_in_db(self.forget)
        except Exception:
            log.exception("node %s: could not remove its heartbeat row", self.node.name)

    def _release_held(self) -> None:
        """The threads of the jobs held at shutdown have all returned: set the row's deadline
        to now, so the lifeline rescues those jobs (attempt counted) at its next look."""
        engine = self.node.app.engine
        now = self.node.app.clock()
        self._returned_at = now
        params = {
            "name": self.node.name,
            "token": self.token,
            "now": engine.time_param(now),
            "meta": dumps(self.snapshot()),
        }
        try:
            with engine.transaction() as tx:
                tx.execute(engine.queries["expire_node"], params)
        except Exception:  # its deadline lapses by itself
            log.exception("node %s: could not expire its heartbeat row", self.node.name)
            return
        log.warning(
            "node %s: the threads of the jobs it held at shutdown returned; those jobs "
            "(%s) will be rescued",
            self.node.name,
            sorted(self.node.held),
        )

    def forget(self) -> None:
        engine = self.node.app.engine
        with engine.transaction() as tx:
            tx.execute(engine.queries["forget_node"], {"name": self.node.name, "token": self.token})

    def wake(self) -> None:
        """Beat now (thread-safe): what the record says changed (a control was applied, a
        queue stalled or recovered), and readers should not wait a whole interval to see it.
        Wakes that come while a beat is being written are served by one more beat."""
        self._tick.set()

    def notice(self, payload: Mapping[str, Any]) -> None:
        """Beats do not depend on other nodes."""
