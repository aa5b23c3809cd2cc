"""One queue on one node: fetch as many jobs as there are free slots, run them, repeat.

The producer sleeps until woken (an insert in this process, a NOTIFY from another, a slot
freed) or until its poll interval passes, which is only a safety net on PostgreSQL and the
way to see other processes' inserts on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..job import Job, JobState
from .executor import queue_wait
from .waiting import wait_event

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("jobsaga.runtime.producer")


class QueueProducer:
    def __init__(self, node: Node, queue: str, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"queue {queue!r}: concurrency limit must be >= 1, got {limit}")
        self.node = node
        self.queue = queue
        self.limit = limit
        self.paused = False
        self.running: dict[int, asyncio.Task[None]] = {}
        self.performing: dict[int, int] = {}
        """Jobs inside their perform (id -> attempt): the ones a cancel may still stop."""
        self._wake = asyncio.Event()
        self._fetching = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"jobsaga-queue-{self.queue}")

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Stop fetching; jobs already running finish."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._wake.set()

    def scale(self, limit: int) -> None:
        """Change the concurrency limit; lowering it lets running jobs finish."""
        if limit < 1:
            raise ValueError(f"queue {self.queue!r}: concurrency limit must be >= 1, got {limit}")
        self.limit = limit
        self._wake.set()

    async def stop_fetching(self) -> None:
        self._fetching = False
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        failures = 0
        while self._fetching:
            try:
                await self._dispatch()
                failures = 0
            except Exception:
                failures += 1
                log.exception("queue %s: fetching failed", self.queue)
                await asyncio.sleep(min(5.0, 0.1 * 2**failures))
            await wait_event(self._wake, self.node.poll_interval)

    async def _dispatch(self) -> None:
        while self._fetching and not self.paused:
            free = self.limit - len(self.running)
            if free <= 0:
                return
            jobs = await self.node.run_in_db(
                self.node.app.engine.fetch, self.queue, free, self.node.name
            )
            for job in jobs:
                self.running[job.id] = asyncio.create_task(
                    self._run(job), name=f"jobsaga-job-{job.id}"
                )
            if len(jobs) < free:
                return

    async def _run(self, job: Job[Any]) -> None:
        node = self.node
        telemetry = node.app.telemetry
        started = time.monotonic()
        meta: dict[str, Any] | None = None
        if telemetry.active:
            meta = {
                "job": job,
                "worker": job.worker,
                "queue": job.queue,
                "attempt": job.attempt,
                "node": node.name,
            }
            telemetry.emit(
                "job.start", {"system_time": time.time(), "queue_wait": queue_wait(job)}, meta
            )
        try:
            try:
                self.performing[job.id] = job.attempt
                try:
                    outcome, typed, worker = await node.executor.attempt(job)
                finally:
                    self.performing.pop(job.id, None)
            except asyncio.CancelledError as cancelled:
                # An operator's cancel (or delete) already wrote the job: drop the attempt.
                # Otherwise the node is shutting down: write it back, attempt not counted.
                stopped = node.control.stopped.pop(job.id, None)
                if stopped is None:
                    await node.interrupted(job, reason=node.cancel_reason(job.id))
                if meta is not None:
                    measures = {
                        "duration": time.monotonic() - started,
                        "queue_wait": queue_wait(job),
                    }
                    if stopped is not None:
                        stop_meta = {**meta, "state": "cancelled", "result": None}
                        telemetry.emit("job.stop", measures, {**stop_meta, "stopped": stopped})
                    else:
                        failed = {**meta, "state": "retryable", "error": cancelled}
                        telemetry.emit("job.exception", measures, {**failed, "interrupted": True})
                return
            ack = await node.executor.finish(typed, outcome, worker)
            written = await node.acker.ack(ack, urgent=ack.state is not JobState.COMPLETED)
            if ack.state in (JobState.RETRYABLE, JobState.SCHEDULED):
                node.stager_wake()
            if written and ack.inserts:
                node.app.announce_specs(ack.inserts)
            if meta is not None:
                measures = {"duration": time.monotonic() - started, "queue_wait": queue_wait(job)}
                if outcome.error is not None:
                    telemetry.emit(
                        "job.exception",
                        measures,
                        {
                            **meta,
                            "state": ack.state.value,
                            "error": outcome.error,
                            "written": written,
                        },
                    )
                else:
                    telemetry.emit(
                        "job.stop",
                        measures,
                        {
                            **meta,
                            "state": ack.state.value,
                            "result": outcome.result,
                            "written": written,
                        },
                    )
        finally:
            self.running.pop(job.id, None)
            self._wake.set()
