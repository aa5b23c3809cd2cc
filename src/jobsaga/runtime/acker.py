"""Batched acknowledgements: outcomes are written a few milliseconds later, many per statement.

A job is acknowledged only after it ran, and its concurrency slot stays taken until the
acknowledgement is durable, so a crash can never lose an outcome that a fetch relied on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..engines import Ack
from .waiting import wait_event

log = logging.getLogger("jobsaga.runtime.acker")

RunInDb = Callable[..., Awaitable[Any]]


class Acker:
    def __init__(
        self,
        write: Callable[[list[Ack]], set[int]],
        run_in_db: RunInDb,
        *,
        max_batch: int = 200,
        max_delay: float = 0.005,
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self._write = write
        self._in_flight = in_flight
        self._run_in_db = run_in_db
        self.max_batch = max_batch
        self.max_delay = max_delay
        self._pending: list[tuple[Ack, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._full = asyncio.Event()

    async def ack(self, ack: Ack, *, urgent: bool = False) -> bool:
        """Queue ``ack`` and wait until it is written; False when the job had moved on (e.g. cancelled)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((ack, future))
        if urgent or len(self._pending) >= self.max_batch or self._all_waiting():
            self._full.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_soon(), name="jobsaga-acker")
        return await asyncio.shield(future)

    def _all_waiting(self) -> bool:
        """Whether every job still running on the node is waiting for this acker: then no
        more outcomes can join the batch, and waiting out ``max_delay`` would only idle the
        node's slots (at concurrency 10 that wait was a third of each fetch-run-ack cycle)."""
        return self._in_flight is not None and len(self._pending) >= self._in_flight()

    async def _flush_soon(self) -> None:
        while self._pending:
            if not self._full.is_set():
                await wait_event(self._full, self.max_delay)
            self._full.clear()
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            await self._write_batch(batch)

    async def _write_batch(self, batch: list[tuple[Ack, asyncio.Future[bool]]]) -> None:
        delay = 0.05
        while True:
            try:
                done = await self._run_in_db(self._write, [ack for ack, _ in batch])
                break
            except Exception:  # the database is away: keep the outcomes and try again
                log.exception(
                    "writing %d job outcomes failed; retrying in %.2fs", len(batch), delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        for ack, future in batch:
            if not future.done():
                future.set_result(ack.id in done)

    async def drain(self) -> None:
        """Write everything pending now (used at shutdown)."""
        self._full.set()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
