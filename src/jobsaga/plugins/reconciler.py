"""Give back the jobs a live node claimed without knowing it.

A fetch commits its claim (``executing``, ``attempted_by`` = this node) before its reply
reaches the node. When the connection dies in between (a server restart, a network cut),
the claim is committed but the node never got the jobs, and the lifeline cannot help: it
rescues the jobs of dead nodes only, and this node is alive. So every node reconciles what
the database says it runs with what it runs, every ``rescue_interval`` and at once after a
failed fetch: a job executing under its name that it does not run, claimed before the start
of every fetch still under way (a reply may yet bring that fetch's jobs), is given back:
``available`` again, the attempt not counted, since it never started. A job that ran but
whose outcome could not be written is rescued instead, with the attempt counted, as the
lifeline would. Every write is guarded by state and attempt, like an acknowledgement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..serialization import dumps
from .base import Counts, Looper
from .lifeline import Rescued, rescue_rows

if TYPE_CHECKING:
    from ..core import AppCore

log = logging.getLogger("jobsaga.plugins.reconciler")

CLAIM_MARGIN = timedelta(seconds=1)
"""Claims made this close to the start of a fetch still under way are left alone: a clock
stepping back a little must not make a claim of that fetch look older than its start."""


@dataclass
class Reconciled:
    given_back: list[tuple[int, str]] = field(default_factory=list)
    """(id, queue) of the jobs made available again, attempt not counted."""
    rescued: Rescued = field(default_factory=Rescued)
    seen: set[int] = field(default_factory=set)
    """Every job found executing under the node's name (known to it or not)."""


def unwritten_message(row: dict[str, Any], last_beat: datetime | None, rescuer: str) -> str:
    return (
        f"orphaned: node {rescuer} ran the job but could not write its outcome; "
        "rescued by the same node"
    )


def reconcile(
    app: AppCore, node: str, before: datetime, known: set[int], unsettled: Mapping[int, int]
) -> Reconciled:
    """Find the jobs executing under ``node``, claimed before ``before``, that are not in
    ``known``; give them back, or rescue those in ``unsettled`` (id -> attempt that ran)."""
    engine = app.engine
    named = engine.queries
    with engine.read() as tx:
        found = tx.execute(named["own_claims"], {"node": node, "before": engine.time_param(before)})
    done = Reconciled(seen={int(row["id"]) for row in found})
    strays = [row for row in found if int(row["id"]) not in known]
    if not strays:
        return done
    ran = [row for row in strays if unsettled.get(int(row["id"])) == int(row["attempt"])]
    back = [
        {"id": int(row["id"]), "attempt": int(row["attempt"])}
        for row in strays
        if unsettled.get(int(row["id"])) != int(row["attempt"])
    ]
    with engine.transaction() as tx:
        if back:
            rows = tx.execute(named["give_back_jobs"], {"node": node, "rows": dumps(back)})
            done.given_back = [(int(row["id"]), str(row["queue"])) for row in rows]
            if done.given_back:
                engine.notify(tx, {"queues": sorted({queue for _, queue in done.given_back})})
        if ran:
            done.rescued = rescue_rows(app, tx, ran, node, unwritten_message)
    return done


class Reconciler(Looper):
    name = "reconciler"
    leader_only = False

    async def run_once(self) -> Counts:
        node = self.node
        before, known = node.claims_known()
        entries = dict(node.unsettled)
        unsettled = {job_id: attempt for job_id, (attempt, _) in entries.items()}
        done = await node.run_in_db(reconcile, node.app, node.name, before, known, unsettled)
        for job_id, (attempt, claimed) in entries.items():
            # Rescued now, or no longer executing (it would have been seen, claimed before
            # ``before``); kept while a fetch under way since before its claim hides it.
            settled = job_id in done.seen or claimed is None or claimed < before
            if settled and node.unsettled.get(job_id, (None, None))[0] == attempt:
                del node.unsettled[job_id]
        if done.given_back:
            log.warning(
                "node %s: gave back %d job(s) it had claimed without receiving them (the "
                "fetch's reply was lost): %s",
                node.name,
                len(done.given_back),
                [job_id for job_id, _ in done.given_back],
            )
            for queue in {queue for _, queue in done.given_back}:
                producer = node.producers.get(queue)
                if producer is not None:
                    producer.wake()
        await node.plugins.lifeline.settle(done.rescued)
        return {"given_back": len(done.given_back), "rescued": len(done.rescued.jobs)}

    def look_again_soon(self) -> None:
        """A fetch failed (on the node's loop): its claims, if it committed any, are given
        back as soon as they are older than the margin the reconciler leaves for clocks."""
        asyncio.get_running_loop().call_later(CLAIM_MARGIN.total_seconds() + 0.05, self.wake)

    def notice(self, payload: Mapping[str, Any]) -> None:
        if payload.get("reconnected"):  # a fetch may have lost its reply with the connection
            self.look_again_soon()
