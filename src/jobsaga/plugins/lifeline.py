"""Rescue the executing jobs of nodes that died.

A job is orphaned when the node that claimed it (``attempted_by``) is past its heartbeat
deadline, or has no heartbeat row at all and claimed the job more than ``rescue_after`` ago
(it stopped, or predates heartbeats). Time alone never decides: a live node keeps beating, so
its jobs are never rescued however long they run. A rescued job goes back to ``available``
(the orphaned attempt counts, so a job that kills its node cannot loop forever), or to
``discarded`` when its attempts are used up, with an error saying it was orphaned. A discarded
job's ``on_final_failure`` then runs once on the rescuing node, with :class:`JobOrphaned`,
so the guide's "final attempt" pattern (mark failed, tell the user) holds for it too.

Not every orphan comes from a crash: a node that stops while a job's code still runs in a
thread leaves that job executing (it cannot stop the thread, and must not let another node
start the job meanwhile), and notes why in its own record (see ``heartbeat.py``). The rescue
reads that note, for the same attempt only, and says the attempt was interrupted by the
shutdown (graceful or forced, with its grace period), and what ended the wait: the thread
returned, or the node's heartbeat lapsed. The kind stays ``orphaned``: the attempt counts,
unlike an ``interrupted`` one written back by the node itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import JobOrphaned
from ..job import Job, JobState
from ..serialization import dumps
from .base import Counts, Looper
from .heartbeat import node_meta

if TYPE_CHECKING:
    from ..core import AppCore
    from .base import PluginHost

log = logging.getLogger("jobsaga.plugins.lifeline")

RESCUE_BATCH = 1000
FORGET_NODES_AFTER = timedelta(hours=1)
"""The one place dead nodes are forgotten: a node's record (``jobsaga_nodes``) is deleted this
long after its deadline, once none of its jobs is executing. Readers (``App.list_queues``,
``jobsaga queues``) stop listing it at the deadline itself; until it goes, the row keeps the
node's last beat for a rescue's error message and for whoever looks into what happened."""


@dataclass
class Rescued:
    available: list[Job[Any]] = field(default_factory=list)
    discarded: list[Job[Any]] = field(default_factory=list)

    @property
    def jobs(self) -> list[Job[Any]]:
        return self.available + self.discarded


def shutdown_note(row: dict[str, Any], meta: dict[str, Any] | None) -> str | None:
    """Why the node's shutdown left this job executing, if its record says so for this very
    attempt (a note of an earlier attempt says nothing about this one)."""
    notes = meta.get("interrupted") if meta is not None else None
    note = notes.get(str(row["id"])) if isinstance(notes, dict) else None
    if not isinstance(note, dict) or note.get("attempt") != int(row["attempt"]):
        return None
    reason = note.get("reason")
    return reason if isinstance(reason, str) and reason else None


def orphan_message(row: dict[str, Any], last_beat: datetime | None, rescuer: str) -> str:
    node = row["attempted_by"] or "an unknown node"
    meta: dict[str, Any] | None = row.get("node_meta")
    if meta is not None and (reason := shutdown_note(row, meta)) is not None:
        returned = meta.get("threads_returned_at")
        if returned:
            ended = f"after the job's thread returned (node {node} released it at {returned})"
        else:
            at = f" (its last heartbeat was at {last_beat.isoformat()})" if last_beat else ""
            ended = f"after node {node}'s heartbeat lapsed{at}"
        return f"{reason}; rescued by node {rescuer} {ended}"
    if last_beat is not None:
        seen = f"its last heartbeat was at {last_beat.isoformat()}"
    else:
        seen = "it has no heartbeat row (stopped, or never heartbeated)"
    return (
        f"orphaned: node {node} stopped heartbeating while the job was executing ({seen}); "
        f"rescued by node {rescuer}"
    )


def restart_message(
    row: dict[str, Any],
    last_beat: datetime | None,
    rescuer: str,
    before: dict[str, Any] | None = None,
) -> str:
    """``before``: the meta of the node's record as this start found it."""
    if (reason := shutdown_note(row, before)) is not None:
        return f"{reason}; rescued by node {rescuer} when it started again under the same name"
    return (
        f"orphaned: the process running node {rescuer} died while the job was executing; "
        "rescued when a new process under the same name started"
    )


def rescue_orphans(
    app: AppCore, rescue_after: float, rescuer: str, limit: int = RESCUE_BATCH
) -> Rescued:
    """One batch: find orphaned executing jobs and put them back (or discard them)."""
    engine = app.engine
    now = app.clock()
    params = {
        "now": engine.time_param(now),
        "unknown_before": engine.time_param(now - timedelta(seconds=rescue_after)),
        "limit": limit,
    }
    return _rescue(app, "find_orphans", params, rescuer, orphan_message)


def rescue_own_orphans(
    app: AppCore, node: str, started_at: datetime, before: dict[str, Any] | None = None
) -> Rescued:
    """Jobs left executing under ``node``'s name by a process that died before this one
    started (claimed before ``started_at``): rescued at start, without waiting. ``before``
    is the node record's meta as found at this start (it may say a shutdown held them)."""
    engine = app.engine
    params = {"node": node, "before": engine.time_param(started_at), "limit": RESCUE_BATCH}

    def message(row: dict[str, Any], last_beat: datetime | None, rescuer: str) -> str:
        return restart_message(row, last_beat, rescuer, before)

    return _rescue(app, "find_own_orphans", params, node, message)


Message = Callable[[dict[str, Any], datetime | None, str], str]


def _rescue(
    app: AppCore, find: str, params: dict[str, Any], rescuer: str, message: Message
) -> Rescued:
    engine = app.engine
    with engine.transaction() as tx:
        found = tx.execute(engine.queries[find], params)
        if not found:
            return Rescued()
        return rescue_rows(app, tx, found, rescuer, message)


def rescue_rows(
    app: AppCore, tx: Any, found: list[dict[str, Any]], rescuer: str, message: Message
) -> Rescued:
    """Put executing jobs back (``available``, or ``discarded`` on their last attempt), the
    attempt counted and an ``orphaned`` error appended, in the caller's transaction. Each row
    needs ``id``, ``attempt``, ``max_attempts``, ``attempted_by`` and ``heartbeat_at``; the
    write is guarded by state and attempt, so a job acknowledged meanwhile is left alone."""
    engine = app.engine
    now = app.clock()
    rescued = Rescued()
    rows = []
    for row in found:
        exhausted = int(row["attempt"]) >= int(row["max_attempts"])
        if row.get("node_meta") is not None:
            row = {**row, "node_meta": node_meta(engine, row["node_meta"])}
        text = message(row, engine.time_value(row["heartbeat_at"]), rescuer)
        rows.append(
            {
                "id": int(row["id"]),
                "attempt": int(row["attempt"]),
                "state": "discarded" if exhausted else "available",
                "at": engine.time_json(now),
                "error": {
                    "attempt": int(row["attempt"]),
                    "at": now.isoformat(),
                    "kind": "orphaned",
                    "error": text,
                    "traceback": "",
                    "node": row["attempted_by"],
                },
            }
        )
    written = tx.execute(engine.queries["rescue_jobs"], {"rows": dumps(rows)})
    # One row that cannot be decoded must not roll back the rescue of the others (every
    # round, for ever): it is put back all the same, and the fetch that claims it next
    # discards it with the reason recorded.
    jobs, bad = engine.decode_rows(written)
    for row, exc in bad:
        log.warning("rescued job %s, whose row cannot be decoded: %s", row.get("id"), exc)
    for job in jobs:
        (rescued.available if job.state is JobState.AVAILABLE else rescued.discarded).append(job)
    if rescued.available:
        engine.notify(tx, {"queues": sorted({j.queue for j in rescued.available})})
    return rescued


def forget_dead_nodes(app: AppCore) -> None:
    engine = app.engine
    before = app.clock() - FORGET_NODES_AFTER
    with engine.transaction() as tx:
        tx.execute(engine.queries["forget_dead_nodes"], {"before": engine.time_param(before)})


class Lifeline(Looper):
    name = "lifeline"
    leader_only = True

    def __init__(self, node: PluginHost, interval: float, rescue_after: float) -> None:
        super().__init__(node, interval)
        self.rescue_after = rescue_after

    async def run_once(self) -> Counts:
        node = self.node
        available = discarded = 0
        while True:
            batch = await node.run_in_db(
                rescue_orphans, node.app, self.rescue_after, node.name, RESCUE_BATCH
            )
            await self.settle(batch)
            available += len(batch.available)
            discarded += len(batch.discarded)
            if len(batch.jobs) < RESCUE_BATCH:
                break
        await node.run_in_db(forget_dead_nodes, node.app)
        return {"rescued": available + discarded, "available": available, "discarded": discarded}

    async def rescue_own(self, started_at: datetime) -> int:
        """At start, on every node: rescue what an earlier process under the same name left."""
        node = self.node
        count = 0
        before = node.plugins.heartbeat.predecessor
        while True:
            batch = await node.run_in_db(
                rescue_own_orphans, node.app, node.name, started_at, before
            )
            await self.settle(batch)
            count += len(batch.jobs)
            if len(batch.jobs) < RESCUE_BATCH:
                return count

    async def settle(self, batch: Rescued) -> None:
        """Log the rescued jobs, wake the queues, run final-failure hooks of discarded ones."""
        for job in batch.jobs:
            log.warning(
                "rescued orphaned job %d (%s) of node %s: now %s",
                job.id,
                job.worker,
                job.attempted_by,
                job.state.value,
            )
        if batch.available:
            self.node.app.announce(batch.available)
        for job in batch.discarded:
            await self.final_failure(job)

    async def final_failure(self, job: Job[Any]) -> None:
        """Run the worker's final-failure hook for a job discarded as orphaned (best effort:
        a worker this node does not know, or a hook that raises, is logged)."""
        error = JobOrphaned(job.errors[-1]["error"] if job.errors else "orphaned")
        await self.node.run_final_failure(job, error)
