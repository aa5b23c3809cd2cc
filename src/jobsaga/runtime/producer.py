"""One queue on one node: fetch as many jobs as there are free slots, run them, repeat.

A slot is taken from the fetch until the perform (and the final-failure hook, when due) has
returned; the outcome is then written by the node's acker while the slot already serves the
next job. So fetching, running and acknowledging overlap instead of taking turns, and a job
is still acknowledged only after it ran. How many outcomes may wait for their write is
bounded (``settle_cap``): past it the queue stops fetching until writes catch up, so a slow
database slows the node instead of piling up jobs that ran but are not yet recorded (those
run again after a crash: at-least-once).

The producer sleeps until woken (an insert in this process, a NOTIFY from another, a slot
freed) or until its poll interval passes, which is only a safety net on PostgreSQL and the
way to see other processes' inserts on SQLite.

A queue whose timed-out performs left too many threads running (``abandon_cap``) stops
fetching until enough of them return: Python cannot stop a thread, so a perform that hangs
for good would otherwise leak a thread per attempt without bound. It is "stalled", and its
node reports itself unhealthy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..job import Job, JobState
from ..telemetry import NO_SPAN, Span, Telemetry
from ..waiting import wait_event
from .executor import AttemptThreads, queue_wait

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger("jobsaga.runtime.producer")


class QueueProducer:
    def __init__(self, node: Node, queue: str, limit: int) -> None:
        if limit < 1:
            raise ConfigError(f"queue {queue!r}: concurrency limit must be >= 1, got {limit}")
        self.node = node
        self.queue = queue
        self.limit = limit
        self.pause_wanted = False
        """A pause control is in force: no new fetch starts (see :attr:`paused`)."""
        self._in_fetch = 0
        self._fetch_idle = asyncio.Event()
        self._fetch_idle.set()
        self.running: dict[int, asyncio.Task[None]] = {}
        """Every job this node holds for the queue: performing, or its outcome being written."""
        self.busy = 0
        """Slots taken: jobs fetched whose perform (or final-failure hook) has not returned."""
        self.settling = 0
        """Jobs whose perform returned and whose outcome is not yet written."""
        self.performing: dict[int, int] = {}
        """Jobs inside their perform (id -> attempt): the ones a cancel may still stop."""
        self.abandoned: set[AttemptThreads] = set()
        """Timed-out attempts whose threads still run (each counted until its last returns)."""
        self.stalled = False
        """Too many abandoned threads: not fetching until some return."""
        self._wake = asyncio.Event()
        self._fetching = True
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"jobsaga-queue-{self.queue}")

    def wake(self) -> None:
        self._wake.set()

    def pause(self) -> None:
        """Stop fetching; jobs already running finish."""
        self.pause_wanted = True

    def resume(self) -> None:
        self.pause_wanted = False
        self._wake.set()

    @property
    def paused(self) -> bool:
        """Paused, and no fetch that began before the pause is still under way: from now on
        the queue claims nothing. (A fetch in flight when the pause came could otherwise
        claim a job inserted after ``pause_queue`` returned.)"""
        return self.pause_wanted and self._in_fetch == 0

    async def fetches_ended(self) -> None:
        """Wait for the fetch under way, if any, to end."""
        await self._fetch_idle.wait()

    def scale(self, limit: int) -> None:
        """Change the concurrency limit; lowering it lets running jobs finish."""
        if limit < 1:
            raise ConfigError(f"queue {self.queue!r}: concurrency limit must be >= 1, got {limit}")
        self.limit = limit
        self._wake.set()
        self.check_stalled()

    @property
    def settle_cap(self) -> int:
        """How many jobs the queue may hold unacknowledged (performing, or their outcome
        waiting for its write) before it stops fetching: room for one batch being written
        and the next one filling, at any concurrency."""
        return max(2 * self.limit, self.node.ack_batch)

    # --- threads left behind by timed-out performs -------------------------------------------

    @property
    def abandon_cap(self) -> int:
        """How many abandoned threads the queue tolerates before it stops fetching: the
        node's ``max_abandoned_threads``, or by default the queue's concurrency limit."""
        cap = self.node.max_abandoned_threads
        return self.limit if cap is None else cap

    @property
    def abandoned_threads(self) -> int:
        """(Read by the heartbeat's thread too: the copy is taken at once, under the GIL.)"""
        return sum(threads.live for threads in tuple(self.abandoned))

    def abandon(self, threads: AttemptThreads) -> None:
        """A timed-out attempt left ``threads`` running (on the node's loop)."""
        loop = asyncio.get_running_loop()

        def released(_threads: AttemptThreads) -> None:  # from the thread that returned
            with contextlib.suppress(RuntimeError):  # a closed loop: the node has stopped
                loop.call_soon_threadsafe(self.release, threads)

        if threads.watch(released):
            self.abandoned.add(threads)
            self.check_stalled()

    def release(self, threads: AttemptThreads) -> None:
        """One of an abandoned attempt's threads returned (on the node's loop)."""
        if threads.live == 0:
            self.abandoned.discard(threads)
        self.check_stalled()

    def check_stalled(self) -> None:
        count = self.abandoned_threads
        stalled = count >= self.abandon_cap
        if stalled != self.stalled:
            self.stalled = stalled
            self.node.on_stalled(self, count)
            if not stalled:
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
                await asyncio.sleep(min(1.0, 0.1 * 2**failures))  # back within ~1 s of the database
                # Try again now: the jobs that woke this fetch are still there, and no
                # wake-up may come for them before the poll (30 s, if configured so).
                continue
            await wait_event(self._wake, self.node.poll_interval)

    async def _dispatch(self) -> None:
        node = self.node
        while self._fetching and not self.pause_wanted and not self.stalled:
            free = min(self.limit - self.busy, self.settle_cap - self.busy - self.settling)
            if free <= 0:
                return
            # While the fetch is under way its claims may be committed before this node
            # knows of them; the node's reconciler leaves claims from then on alone.
            fetch = node.fetch_started()
            self._in_fetch += 1
            self._fetch_idle.clear()
            try:
                jobs = await node.fetch(self.queue, free)
            except Exception:
                node.plugins.reconciler.look_again_soon()  # a lost reply may have stranded claims
                raise
            finally:
                node.fetch_ended(fetch)
                self._in_fetch -= 1
                if not self._in_fetch:
                    self._fetch_idle.set()
            self.busy += len(jobs)
            for job in jobs:
                self.running[job.id] = asyncio.create_task(
                    self._run(job), name=f"jobsaga-job-{job.id}"
                )
            if len(jobs) < free:
                return

    async def _run(self, job: Job[Any]) -> None:
        node = self.node
        span = job_span(node.app.telemetry, job, node.name)
        threads = node.executor.attempt_threads()
        performing = True
        try:
            try:
                self.performing[job.id] = job.attempt
                try:
                    outcome, typed, worker = await node.executor.attempt(job, threads)
                finally:
                    self.performing.pop(job.id, None)
            except asyncio.CancelledError:
                # An operator's cancel (or delete) already wrote the job: drop the attempt.
                # Otherwise the node is shutting down: write the job back, attempt not
                # counted, if its user code really stopped; if a thread of it still runs,
                # the job stays executing under this node until that thread ends or the
                # process exits (no other node may start it meanwhile; see Node.stop).
                stopped = node.control.stopped.pop(job.id, None)
                if stopped is not None:
                    span.stop(state="cancelled", result=None, stopped=stopped)
                    return
                reason = node.interrupt_reason()
                held = threads.live > 0
                if held:
                    node.hold(job, threads)
                    reason += (
                        "; its code still runs in a thread, so it stays executing until rescued"
                    )
                else:
                    await node.interrupted(job, reason=reason)
                state = "executing" if held else "retryable"
                # Said as what happened ("interrupted by shutdown..."), not as the bare
                # CancelledError that carried it.
                span.end(
                    "exception",
                    error=reason,
                    kind="interrupted",
                    state=state,
                    held=held,
                    interrupted=True,
                )
                return
            # The perform has returned: from here on the attempt counts, whatever happens. A
            # shutdown during the final-failure hook still discards the job (Executor.finish).
            ack = await node.executor.finish(typed, outcome, worker)
            # The slot serves the next job while this outcome is written.
            performing = False
            self.busy -= 1
            self.settling += 1
            self._wake.set()
            try:
                written = await node.acker.ack(ack, urgent=ack.state is not JobState.COMPLETED)
            except Exception:
                log.exception("job %d: its outcome could not be written", job.id)
                written = False
            if not written:
                # Moved on meanwhile (cancelled, rescued), or the outcome could not be written
                # at all: the job ran, so if it is still executing as this attempt, the
                # reconciler rescues it with the attempt counted (not given back as unstarted).
                node.unsettled[job.id] = (job.attempt, job.attempted_at)
            if written:
                node.summary.count(self.queue, ack.state)
            if ack.state in (JobState.RETRYABLE, JobState.SCHEDULED):
                node.stager_wake()
            if written and ack.inserts:
                node.app.announce_specs(ack.inserts)
            span.add(state=ack.state.value, written=written)
            if outcome.error is not None:
                span.fail(outcome.error)
            else:
                span.stop(result=outcome.result)
        finally:
            if performing:
                self.busy -= 1
            else:
                self.settling -= 1
            self.running.pop(job.id, None)
            self._wake.set()


def job_span(telemetry: Telemetry, job: Job[Any], node: str) -> Span:
    """The span of one attempt (``job.start``, then ``job.stop`` or ``job.exception``). Its
    metadata is built only while someone listens: a node runs thousands of jobs a second."""
    if not telemetry.active:
        return NO_SPAN
    metadata = {
        "job": job,
        "worker": job.worker,
        "queue": job.queue,
        "attempt": job.attempt,
        "node": node,
    }
    return telemetry.span("job", metadata, {"queue_wait": queue_wait(job)})
