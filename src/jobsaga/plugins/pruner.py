"""Delete finished jobs once they are older than ``prune_after`` seconds.

Only completed, cancelled and discarded jobs are pruned, by the time they reached that state,
in batches of ``prune_limit`` rows, each its own short transaction, so pruning a large backlog
never holds long locks. A workflow run belongs to its job (``ON DELETE CASCADE``) and goes with
it. At most ``MAX_BATCHES`` batches run per round; a larger backlog is finished on later rounds.
``jobsaga jobs prune`` applies the same rule by hand, through :func:`prune_batch`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .base import Counts, Looper

if TYPE_CHECKING:
    from ..core import AppCore
    from .base import PluginHost

MAX_BATCHES = 20


def prune_jobs(app: AppCore, max_age: float, limit: int) -> int:
    """Delete one batch of finished jobs older than ``max_age`` seconds; returns how many."""
    return len(prune_batch(app, app.clock() - timedelta(seconds=max_age), limit))


def prune_batch(app: AppCore, before: datetime, limit: int) -> list[int]:
    """Delete, in one transaction, at most ``limit`` jobs that finished before ``before``;
    returns their ids. A caller pruning by hand fixes ``before`` once, so what it counted
    first is what its batches delete (jobs finishing meanwhile are not older than it)."""
    engine = app.engine
    with engine.transaction() as tx:
        rows = tx.execute(
            engine.queries["prune_jobs"], {"before": engine.time_param(before), "limit": limit}
        )
    return [int(row["id"]) for row in rows]


class Pruner(Looper):
    name = "pruner"
    leader_only = True

    def __init__(self, node: PluginHost, interval: float, max_age: float, limit: int) -> None:
        super().__init__(node, interval)
        self.max_age = max_age
        self.limit = limit

    async def run_once(self) -> Counts:
        deleted = batches = 0
        while batches < MAX_BATCHES:
            count = await self.node.run_in_db(prune_jobs, self.node.app, self.max_age, self.limit)
            deleted += count
            batches += 1
            if count < self.limit:
                break
        return {"deleted": deleted, "batches": batches}
