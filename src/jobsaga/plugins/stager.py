"""Make due scheduled and retryable jobs available, and wake the queues that got work.

Unlike cron, the stager runs on every node, not only the leader: staging is one indexed
``UPDATE`` that skips locked rows, so two nodes staging at once cost nothing extra, and a node
that stages wakes its own queues at once instead of waiting for a notification round trip.
It sleeps until the earliest scheduled job is due (capped by ``stage_interval``, and woken
early when a job is scheduled), so there is no per-job polling.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Counts, Looper

if TYPE_CHECKING:
    from collections.abc import Mapping


class Stager(Looper):
    name = "stager"
    leader_only = False

    _delay: float = 0.0

    async def run_once(self) -> Counts:
        node = self.node
        engine = node.app.engine
        queues = await node.run_in_db(engine.stage)
        for queue in queues:
            producer = node.producers.get(queue)
            if producer is not None:
                producer.wake()
        self._delay = self.interval
        upcoming = await node.run_in_db(engine.next_due)
        if upcoming is not None:
            until = (upcoming - node.app.clock()).total_seconds()
            self._delay = min(self.interval, max(0.001, until))
        return {"queues": len(queues)}

    def next_delay(self) -> float:
        return self._delay

    def notice(self, payload: Mapping[str, Any]) -> None:
        if payload.get("scheduled") or payload.get("reconnected"):
            self.wake()
