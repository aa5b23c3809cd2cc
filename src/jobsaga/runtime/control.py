"""A node's side of queue control and job cancellation.

The node applies the persisted queue controls before its producers first fetch, then again
whenever it is told (a ``{"signal": "queues"}`` payload) and every control interval, which
is how nodes in other processes on SQLite (no NOTIFY) learn of a change. The same loop
checks the jobs this node is performing against the database: one that is no longer
executing as this attempt was cancelled, deleted or taken over, so its attempt is stopped
(an async perform is cancelled; a sync perform's thread cannot be stopped, so its result is
ignored).

It publishes no status of its own: what the node runs is in its heartbeat record, the one
liveness record every reader uses (``plugins/heartbeat.py``). A control it applies asks the
heartbeat to beat at once, so ``App.list_queues`` shows a pause or a scale within
milliseconds rather than at the next beat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..waiting import wait_event

if TYPE_CHECKING:
    from .node import Node
    from .producer import QueueProducer

log = logging.getLogger("jobsaga.runtime.control")


def first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


class NodeControl:
    def __init__(self, node: Node, *, interval: float) -> None:
        if interval <= 0:
            raise ConfigError(f"control_interval must be > 0 seconds, got {interval!r}")
        self.node = node
        self.interval = interval
        self.engine = node.app.engine
        self.sql = self.engine.queries
        self.stopped: dict[int, str] = {}
        """Jobs whose attempt this control stopped, and why; the producer takes the entry."""
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._refreshing = asyncio.Lock()
        """One refresh at a time: an older read applied after a newer one would undo it."""

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Apply the persisted controls (before any fetch, and before the node's first beat
        describes its queues), then watch."""
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="jobsaga-control")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    def on_signal(self, payload: Mapping[str, Any]) -> None:
        """A control payload from NOTIFY or from this process (runs on the node's loop)."""
        kind = payload.get("signal")
        if kind == "queues":
            self.wake()
        elif kind == "cancel":
            ids = payload.get("job_ids")
            if ids is None:  # too many to name: check every job we perform
                self.wake()
                return
            for job_id in ids:
                self.stop_job(int(job_id), "cancelled")

    async def _loop(self) -> None:
        while True:
            await wait_event(self._wake, self.interval)
            try:
                await self.refresh()
                await self.check_performing()
            except Exception:
                log.exception("node %s: queue control round failed", self.node.name)

    # --- queue controls ----------------------------------------------------------------------

    def _read_controls(self) -> list[dict[str, Any]]:
        with self.engine.read() as tx:
            return tx.execute(self.sql["controls_for_node"], {"node": self.node.name})

    async def refresh(self) -> None:
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        rows = await self.node.run_in_db(self._read_controls)
        cluster = {r["queue"]: r for r in rows if r["node"] == ""}
        mine = {r["queue"]: r for r in rows if r["node"] != ""}
        for queue, producer in self.node.producers.items():
            everyone, this = cluster.get(queue, {}), mine.get(queue, {})
            paused = bool(first(this.get("paused"), everyone.get("paused"), False))
            limit = int(
                first(
                    this.get("concurrency"),
                    everyone.get("concurrency"),
                    self.node.queue_limits[queue],
                )
            )
            self.apply(producer, paused=paused, limit=limit)
        # In force when this returns (pause_queue waits for it): a fetch begun before the
        # pause has ended, so nothing inserted from now on is claimed by this node. The
        # heartbeat woken by apply() may have gone out while that fetch ran (the queue not
        # yet paused): it is woken again, so the record says paused at once.
        pausing = [p for p in self.node.producers.values() if p.pause_wanted and not p.paused]
        if pausing:
            await asyncio.gather(*(p.fetches_ended() for p in pausing))
            self.node.plugins.heartbeat.wake()

    def apply(self, producer: QueueProducer, *, paused: bool, limit: int) -> None:
        """Bring ``producer`` to the wanted state; a change is told (log, telemetry) and
        written into the node's heartbeat record at once by an early beat."""
        telemetry = self.node.app.telemetry
        meta = {"queue": producer.queue, "node": self.node.name}
        if paused != producer.pause_wanted:
            if paused:
                producer.pause()
            else:
                producer.resume()
            self.node.plugins.heartbeat.wake()
            log.info(
                "node %s: queue %s %s",
                self.node.name,
                producer.queue,
                "paused" if paused else "resumed",
            )
            if telemetry.active:
                telemetry.emit("queue.pause" if paused else "queue.resume", {}, meta)
        if limit != producer.limit:
            previous = producer.limit
            producer.scale(limit)
            self._ensure_threads()
            self.node.plugins.heartbeat.wake()
            log.info(
                "node %s: queue %s scaled %d -> %d", self.node.name, producer.queue, previous, limit
            )
            if telemetry.active:
                telemetry.emit("queue.scale", {"limit": limit, "previous": previous}, meta)

    def _ensure_threads(self) -> None:
        """Sync performs run in the node's thread pool, sized at start to the sum of the
        limits; grow it so a queue scaled up really runs that many sync jobs at once."""
        self.node.grow_job_threads(sum(p.limit for p in self.node.producers.values()))

    # --- jobs this node performs -------------------------------------------------------------

    def performing(self) -> dict[int, tuple[QueueProducer, int]]:
        return {
            job_id: (producer, attempt)
            for producer in self.node.producers.values()
            for job_id, attempt in producer.performing.items()
        }

    def stop_job(self, job_id: int, why: str, attempt: int | None = None) -> bool:
        """Stop the attempt of ``job_id`` if this node is performing it (``attempt`` if given)."""
        for producer in self.node.producers.values():
            current = producer.performing.get(job_id)
            if current is None or (attempt is not None and current != attempt):
                continue
            task = producer.running.get(job_id)
            if task is None or task.done():
                return False
            self.stopped[job_id] = why
            if task.cancelling():
                # Being cancelled already, and winding down (a workflow rolls its run back
                # after a cancel): not again at every control round.
                return True
            task.cancel()
            log.info("node %s: stopped job %d (%s)", self.node.name, job_id, why)
            return True
        return False

    def _job_rows(self, ids: list[int]) -> list[dict[str, Any]]:
        with self.engine.read() as tx:
            return tx.execute(self.sql["job_rows_for_node"], {"ids": self.engine.list_param(ids)})

    async def check_performing(self) -> None:
        performing = self.performing()
        if not performing:
            return
        rows = await self.node.run_in_db(self._job_rows, sorted(performing))
        found = {int(r["id"]): r for r in rows}
        for job_id, (_, attempt) in performing.items():
            row = found.get(job_id)
            if row is None:
                why = "deleted"
            elif (
                row["state"] == "executing"
                and int(row["attempt"]) == attempt
                and row["attempted_by"] == self.node.name
            ):
                continue
            elif row["state"] == "cancelled":
                why = "cancelled"
            else:
                why = f"taken over (now {row['state']})"
            self.stop_job(job_id, why, attempt)
