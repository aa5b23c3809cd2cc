"""Batched acknowledgements: outcomes are written a few milliseconds later, many per statement.

A job is acknowledged only after it ran. Its concurrency slot is freed when its perform
returns, while its outcome waits here (see :mod:`jobsaga.runtime.producer`): the job stays
``executing`` until the write, so a crash before it makes the lifeline run the job again
(at-least-once), never loses it.

One outcome that cannot be written must not stop the others (docs/architecture.md, "One bad
row fails alone"), so a failed write is first classified:

- :class:`~jobsaga.errors.DatabaseUnavailable` (transient: the server restarts, the SQLite
  file is locked or the disk full): the same batch is retried, the backoff capped at
  ``max_retry_delay`` so writing resumes within about that long of the database's return.
- anything else is bad data somewhere in the batch: the batch is split in halves until the
  refused outcome is alone, its batch-mates written on the way. That one is then written in
  its salvaged form (:func:`~jobsaga.engines.rows.salvage`); if even that is refused after
  ``bad_tries`` tries, it is given up, logged, and its job stays ``executing`` until the
  lifeline rescues it.

``drain()`` (at node shutdown) waits at most ``deadline`` seconds, then abandons what is
still pending, with a log line: a database that is away cannot keep a node from stopping.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..engines import Ack
from ..engines.rows import salvage
from ..errors import DatabaseUnavailable
from ..waiting import wait_event

log = logging.getLogger("jobsaga.runtime.acker")

RunInDb = Callable[..., Awaitable[Any]]
Pending = tuple[Ack, "asyncio.Future[bool]"]

DRAIN_DEADLINE = 5.0
"""Seconds ``drain()`` waits by default before abandoning unwritten outcomes."""


class Acker:
    def __init__(
        self,
        write: Callable[[list[Ack]], Any],
        run_in_db: RunInDb,
        *,
        max_batch: int = 200,
        max_delay: float = 0.005,
        performing: Callable[[], int] | None = None,
        retry_delay: float = 0.05,
        max_retry_delay: float = 1.0,
        bad_tries: int = 3,
    ) -> None:
        self._write = write
        self._performing = performing
        self._run_in_db = run_in_db
        self.max_batch = max_batch
        self.max_delay = max_delay
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.bad_tries = bad_tries
        self._pending: list[Pending] = []
        self._writing: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self._full = asyncio.Event()
        self._draining = False

    async def ack(self, ack: Ack, *, urgent: bool = False) -> bool:
        """Queue ``ack`` and wait until it is written; False when the job had moved on (e.g.
        cancelled) or the outcome could not be written at all (given up, or abandoned by
        ``drain``)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((ack, future))
        if urgent or len(self._pending) >= self.max_batch or self._none_performing():
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="jobsaga-acker")
        return await asyncio.shield(future)

    def _none_performing(self) -> bool:
        """Whether no job on the node still performs: then no outcome can join the batch
        before the next fetch's jobs have run, and waiting out ``max_delay`` would only
        delay the write (and the jobs' ends, follow-up inserts and spans)."""
        return self._performing is not None and self._performing() == 0

    async def _flush_soon(self) -> None:
        while self._pending:
            if not self._full.is_set() and not self._draining:
                await wait_event(self._full, self.max_delay)
            self._full.clear()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            self._writing = batch
            try:
                await self._settle(batch)
            finally:
                self._writing = []

    async def _settle(self, batch: list[Pending]) -> None:
        """Write ``batch`` and resolve its futures, isolating any outcome that is refused."""
        try:
            done = await self._write_retrying([ack for ack, _ in batch])
        except Exception as exc:  # bad data somewhere in the batch (not a transient error)
            if len(batch) == 1:
                await self._salvage(batch[0], exc)
                return
            log.warning(
                "writing %d job outcomes was refused (%s); writing them in halves to find the "
                "refused one",
                len(batch),
                _one_line(exc),
            )
            middle = len(batch) // 2
            await self._settle(batch[:middle])
            await self._settle(batch[middle:])
            return
        for ack, future in batch:
            if not future.done():
                future.set_result(ack.id in done)

    async def _write_retrying(self, acks: list[Ack]) -> set[int]:
        """Write ``acks``, waiting out transient errors with a capped backoff; raises any other
        error (the data was refused)."""
        delay = self.retry_delay
        failures = 0
        while True:
            try:
                done: set[int] = await self._run_in_db(self._write, acks)
            except DatabaseUnavailable as exc:
                failures += 1
                if failures == 1:
                    log.warning(
                        "writing %d job outcomes failed (%s); retrying every %.2fs at most",
                        len(acks),
                        _one_line(exc),
                        self.max_retry_delay,
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
                continue
            if failures:
                log.info("wrote %d job outcomes after %d failed tries", len(acks), failures)
            return done

    async def _salvage(self, pending: Pending, refused: Exception) -> None:
        """The one refused outcome: its salvaged form, a bounded number of tries, then give
        up on it (logged; the job stays executing until rescued), never blocking others."""
        ack, future = pending
        cleaned = salvage(ack, refused)
        log.error(
            "job %d: its outcome (%s) was refused (%s); writing it salvaged",
            ack.id,
            ack.state.value,
            _one_line(refused),
        )
        last: Exception = refused
        for attempt in range(self.bad_tries):
            try:
                done = await self._write_retrying([cleaned])
            except Exception as exc:
                last = exc
                await asyncio.sleep(min(self.retry_delay * 2**attempt, self.max_retry_delay))
                continue
            if not future.done():
                future.set_result(ack.id in done)
            return
        log.error(
            "job %d: giving up on its outcome after %d tries (%s); the job stays executing "
            "until the lifeline rescues it",
            ack.id,
            self.bad_tries,
            _one_line(last),
        )
        if not future.done():
            future.set_result(False)

    async def drain(self, deadline: float = DRAIN_DEADLINE) -> bool:
        """Write everything pending now (used at shutdown), waiting at most ``deadline``
        seconds; then what is still unwritten is abandoned with a log line (those jobs stay
        executing until the lifeline rescues them). True when everything was written."""
        self._draining = True
        self._full.set()
        try:
            flusher = self._flusher
            if flusher is None or flusher.done():
                return True
            try:
                await asyncio.wait_for(asyncio.shield(flusher), deadline)
                return True
            except TimeoutError:
                abandoned = self._writing + self._pending
                self._writing, self._pending = [], []
                flusher.cancel()
                await asyncio.wait([flusher], timeout=1.0)
                for _, future in abandoned:
                    if not future.done():
                        future.set_result(False)
                log.error(
                    "%d job outcomes were not written within the %.1fs drain deadline and are "
                    "abandoned (jobs %s stay executing until the lifeline rescues them)",
                    len(abandoned),
                    deadline,
                    sorted({ack.id for ack, _ in abandoned}),
                )
                return False
        finally:
            self._draining = False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
