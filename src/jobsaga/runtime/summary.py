"""A node's periodic summary: per queue, what its jobs came to since the last one.

Per-job log lines are for ``-v``; at the default level a node that works looks idle without
this. Every ``summary_interval`` seconds (60 by default; 0 turns it off) the node logs one
INFO line on ``jobsaga.runtime.summary`` (``jobsaga worker`` shows that logger at its default
level), e.g. ``last 60 s: default 118 completed, 2 failed; mailers 4 completed``, and nothing
when nothing finished. Counting is a dict increment on the node's loop per outcome written.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ..job import JobState

log = logging.getLogger("jobsaga.runtime.summary")

__all__ = ["OUTCOMES", "Summary"]

OUTCOMES: dict[JobState, str] = {
    JobState.COMPLETED: "completed",
    JobState.RETRYABLE: "failed",
    JobState.DISCARDED: "discarded",
    JobState.CANCELLED: "cancelled",
    JobState.SCHEDULED: "snoozed",
}
"""How an attempt's written state is counted (a failed attempt retries: ``failed``; one that
failed for good, or returned ``Discard``, is ``discarded``), in the order the line says them."""


class Summary:
    def __init__(self, node_name: str, interval: float) -> None:
        self.node_name = node_name
        self.interval = interval
        self.counts: dict[str, dict[str, int]] = {}
        """Queue -> outcome -> jobs, since the last summary."""
        self._since = time.monotonic()

    def count(self, queue: str, state: JobState) -> None:
        outcome = OUTCOMES.get(state)
        if outcome is None:
            return
        per_queue = self.counts.get(queue)
        if per_queue is None:
            per_queue = self.counts[queue] = {}
        per_queue[outcome] = per_queue.get(outcome, 0) + 1

    def take(self) -> str | None:
        """The summary line since the last one (None: nothing finished), and start anew."""
        now = time.monotonic()
        counts, self.counts = self.counts, {}
        elapsed, self._since = now - self._since, now
        if not counts:
            return None
        order = list(OUTCOMES.values())
        queues = "; ".join(
            f"{queue} "
            + ", ".join(
                f"{per_queue[outcome]} {outcome}" for outcome in order if outcome in per_queue
            )
            for queue, per_queue in sorted(counts.items())
        )
        return f"node {self.node_name}, last {elapsed:.0f} s: {queues}"

    def log(self) -> None:
        line = self.take()
        if line is not None:
            log.info("%s", line)

    async def run(self) -> None:
        """Log a summary every ``interval`` seconds until cancelled (the node's stop)."""
        while True:
            await asyncio.sleep(self.interval)
            self.log()
