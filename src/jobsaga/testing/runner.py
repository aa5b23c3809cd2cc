"""The runtime's executor, driven one job at a time by a test.

Every helper of the toolkit (``perform_job``, ``drain_queue``, inline mode) goes through the
same ``Executor`` a node uses, so a test sees the timeout, the result classification, the
backoff, the snooze counter and the final-failure hook exactly as production applies them;
what perform returned comes from the executor's own ``Outcome.returned``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import _context
from ..app import App
from ..engines.base import Ack, CallerConnection
from ..job import Job, JobState
from ..runtime.executor import AttemptThreads, Executor, Outcome
from ..worker import Worker

NODE = "jobsaga.testing"
"""The node name a test's attempts are claimed under (``attempted_by``)."""

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to its end from synchronous test code, even under a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:  # called from async code: run on a private loop
        return pool.submit(asyncio.run, coro).result()


@dataclass
class Attempt:
    job: Job[Any]
    """The job as it ran (executing, its args typed when the worker has an ``Args`` model)."""
    outcome: Outcome
    """The executor's outcome; ``outcome.returned`` is what perform returned, or
    ``runtime.executor.NOT_RETURNED`` when it raised or timed out."""
    ack: Ack | None = None
    """The row update, once ``finish`` ran (``None`` when the job was not stored)."""

    @property
    def outcome_name(self) -> str:
        """How a written attempt ended: ``completed``, ``retryable``, ``snoozed``,
        ``cancelled`` or ``discarded``."""
        assert self.ack is not None, "only a written attempt has an outcome"
        return "snoozed" if self.ack.state is JobState.SCHEDULED else self.ack.state.value


class Runner:
    """Runs attempts of jobs for a test with a node's executor, and its pool for sync user
    code (``def perform``, a saga's sync steps), as a node does: each attempt reaches the pool
    through its own ``AttemptThreads``, so a perform that overruns its timeout is given up at
    the timeout (``JobTimeout``) while its thread, which Python cannot stop, runs on until it
    returns; later attempts get a fresh pool, so abandoned threads cannot starve a drain."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.executor = Executor(app, NODE, _pool())
        self.executor.on_threads_abandoned = self._abandoned

    def _abandoned(self, _job: Job[Any], _threads: AttemptThreads) -> None:
        retired, self.executor.threads = self.executor.threads, _pool()
        retired.shutdown(wait=False)  # its threads end when the abandoned user code returns

    def close(self) -> None:
        """Nothing waits for an abandoned thread, as a node's shutdown does not wait for one:
        the test goes on while it runs (the interpreter waits for it at exit)."""
        self.executor.threads.shutdown(wait=False, cancel_futures=True)

    async def _attempt(self, job: Job[Any]) -> tuple[Outcome, Job[Any], Worker | None]:
        """The executor's attempt, in a task of its own as a node runs it: the attempt's
        threads are set in the task's context, not left in the test's. A pool the caller has
        already given the job's user code (``_context.job_threads``) is used as it is."""
        given = _context.job_threads.get() is not None
        threads = None if given else self.executor.attempt_threads()
        return await asyncio.create_task(self.executor.attempt(job, threads))

    async def attempt(self, job: Job[Any]) -> Attempt:
        """Run one attempt of ``job`` without writing anything."""
        outcome, typed, _worker = await self._attempt(job)
        return Attempt(typed, outcome)

    async def run(self, job: Job[Any], conn: CallerConnection | None = None) -> Attempt:
        """Run one attempt of a stored, executing ``job`` and write its outcome as a node
        would (follow-up jobs, backoff, snooze counter, final-failure hook)."""
        outcome, typed, worker = await self._attempt(job)
        ack = await self.executor.finish(job, outcome, worker)
        written = self.app.engine.ack([ack], conn=conn)
        if conn is None and ack.inserts and ack.id in written:
            # as a node does: this process's nodes hear of the follow-ups at once (within the
            # caller's transaction there is nothing to hear of until it commits)
            self.app.announce_specs(ack.inserts)
        return Attempt(typed, outcome, ack)

    async def run_stored(
        self, job: Job[Any], attempt: int, conn: CallerConnection | None = None
    ) -> Attempt | None:
        """Claim the stored, waiting ``job`` as its ``attempt``-th try, then ``run`` it; None
        when it is no longer waiting (cancelled or deleted meanwhile)."""
        claimed = self.app.engine.claim(job.id, NODE, attempt, conn=conn)
        return None if claimed is None else await self.run(claimed, conn=conn)


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(2, thread_name_prefix="jobsaga-testing")


@contextmanager
def runner(app: App) -> Iterator[Runner]:
    run = Runner(app)
    try:
        yield run
    finally:
        run.close()
