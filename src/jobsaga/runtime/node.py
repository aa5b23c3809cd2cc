"""A worker node: the queues it runs, the stager, acknowledgements, and graceful shutdown.

Run it blocking (``node.run()``: SIGTERM and SIGINT stop it gracefully), on your own event
loop (``await node.start()`` / ``await node.stop()``), or in a background thread
(``node.start_in_thread()``), which is what tests and embedding in a sync program use.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ..engines import Ack
from ..job import Job, JobState
from ..operations.node_control import NodeControl
from ..plugins.supervisor import NodePlugins, PluginOptions
from .acker import Acker
from .executor import Executor, error_record
from .producer import QueueProducer

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("jobsaga.runtime.node")
T = TypeVar("T")


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Node:
    def __init__(
        self,
        app: App,
        queues: Mapping[str, int],
        *,
        name: str | None = None,
        grace_period: float = 15.0,
        poll_interval: float | None = None,
        stage_interval: float = 1.0,
        max_threads: int | None = None,
        ack_batch: int = 200,
        ack_delay: float = 0.005,
        control_interval: float | None = None,
        status_interval: float = 5.0,
        heartbeat_interval: float = 5.0,
        rescue_after: float = 60.0,
        rescue_interval: float | None = None,
        crontab: Iterable[Any] = (),
        prune_after: float | None = None,
        prune_interval: float = 30.0,
        prune_limit: int = 5000,
        leader_lease: float = 5.0,
        leadership: bool = True,
    ) -> None:
        if not queues:
            raise ValueError("a node needs at least one queue, e.g. {'default': 10}")
        for queue, limit in queues.items():  # here, before start() opens listeners and pools
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ValueError(f"queue {queue!r}: concurrency limit must be >= 1, got {limit!r}")
        self.app = app
        self.name = name or default_node_name()
        self.queue_limits = dict(queues)
        self.grace_period = grace_period
        sqlite = app.url.startswith("sqlite")
        self.poll_interval = (
            poll_interval if poll_interval is not None else (0.2 if sqlite else 1.0)
        )
        self.stage_interval = stage_interval
        self.max_threads = max_threads or max(4, sum(self.queue_limits.values()))
        self.ack_batch = ack_batch
        self.ack_delay = ack_delay
        # Queue controls and cancels arrive at once by NOTIFY on PostgreSQL (polling is a
        # safety net); on SQLite other processes are seen by this poll.
        self.control_interval = (
            control_interval if control_interval is not None else (1.0 if sqlite else 5.0)
        )
        self.status_interval = status_interval
        self.plugins = NodePlugins(
            self,
            PluginOptions.build(
                crontab,
                stage_interval=stage_interval,
                heartbeat_interval=heartbeat_interval,
                rescue_after=rescue_after,
                rescue_interval=rescue_interval,
                prune_after=prune_after,
                prune_interval=prune_interval,
                prune_limit=prune_limit,
                leader_lease=leader_lease,
                leadership=leadership,
            ),
        )
        self.producers: dict[str, QueueProducer] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._cleanup: list[Callable[[], None]] = []
        self._cancel_reasons: dict[int, str] = {}
        self._job_threads: ThreadPoolExecutor  # set by start(), with the executor
        self.executor: Executor
        self.started = False

    # --- helpers used by producers ---------------------------------------------------------

    async def run_in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_threads, lambda: fn(*args))

    def stager_wake(self) -> None:
        self.plugins.stager.wake()

    def cancel_reason(self, job_id: int) -> str:
        return self._cancel_reasons.pop(
            job_id,
            f"node {self.name} shut down before the job finished "
            f"(grace period {self.grace_period}s)",
        )

    async def interrupted(self, job: Job[Any], *, reason: str) -> None:
        """Write back a job whose attempt was cut short by shutdown; the attempt is not counted."""
        now = self.app.clock()
        record = error_record(job, now, reason, kind="interrupted")
        await self.acker.ack(
            Ack(
                job.id,
                job.attempt,
                JobState.RETRYABLE,
                now,
                scheduled_at=now,
                attempt_delta=-1,
                error=record,
            ),
            urgent=True,
        )
        self.stager_wake()

    def apply_controls_now(self, timeout: float = 5.0) -> None:
        """Read and apply the persisted queue controls before returning; called from another
        thread by this process's ``pause_queue``/``scale_queue``. From the node's own loop (an
        async perform pausing its queue) it cannot wait: the control signal applies it."""
        loop = self._loop
        if loop is None or not self.started or loop.is_closed():
            return
        try:
            if asyncio.get_running_loop() is loop:
                return
        except RuntimeError:
            pass
        future = asyncio.run_coroutine_threadsafe(self.control.refresh(), loop)
        try:
            future.result(timeout)
        except Exception:  # the node's poll applies it later; the control is persisted
            future.cancel()
            log.warning("node %s: applying queue controls now failed", self.name, exc_info=True)

    def grow_job_threads(self, wanted: int) -> None:
        """Let ``wanted`` sync performs run at once (a queue was scaled up)."""
        if self.started and wanted > self.max_threads:
            self.max_threads = wanted
            self._renew_job_threads()

    def _renew_job_threads(self) -> None:
        """Hand new sync work to a fresh pool of ``max_threads``: a pool cannot grow, nor take
        back the thread of a perform that overran its timeout. The old pool finishes what it
        runs, then its threads exit."""
        if not self.started:
            return
        retired = self._job_threads
        self._job_threads = ThreadPoolExecutor(
            max_workers=self.max_threads, thread_name_prefix="jobsaga-job"
        )
        self.executor.threads = self._job_threads
        retired.shutdown(wait=False)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.started:
            raise RuntimeError(f"node {self.name} is already started")
        self.started = True
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._db_threads = ThreadPoolExecutor(max_workers=8, thread_name_prefix="jobsaga-db")
        self._job_threads = ThreadPoolExecutor(
            max_workers=self.max_threads, thread_name_prefix="jobsaga-job"
        )
        await self.run_in_db(self._check_schema)
        self.executor = Executor(self.app, self.name, self._job_threads)
        self.executor.on_thread_abandoned = self._renew_job_threads
        self.acker = Acker(
            self.app.engine.ack,
            self.run_in_db,
            max_batch=self.ack_batch,
            max_delay=self.ack_delay,
            in_flight=lambda: sum(len(p.running) for p in self.producers.values()),
        )
        loop = self._loop

        def from_any_thread(payload: Mapping[str, Any]) -> None:
            loop.call_soon_threadsafe(self._on_notice, payload)

        self._cleanup.append(self.app.add_listener(from_any_thread))
        self._cleanup.append(self.app.engine.listen(from_any_thread))
        for queue, limit in self.queue_limits.items():
            self.producers[queue] = QueueProducer(self, queue, limit)
        self.control = NodeControl(
            self, interval=self.control_interval, status_interval=self.status_interval
        )
        await self.control.start()  # persisted pause/scale apply before the first fetch
        self._cleanup.append(self.app.add_control_applier(self.apply_controls_now))
        await self.plugins.start()  # the node name is held (heartbeat) before the first fetch
        for producer in self.producers.values():
            producer.start()
        log.info("node %s started: queues %s", self.name, self.queue_limits)

    def _check_schema(self) -> None:
        """Fail at start, with the remedy, rather than on the first query of a missing table."""
        from ..engines.schema import missing_migrations
        from ..errors import MigrationError

        missing = missing_migrations(self.app.engine)
        if missing:
            raise MigrationError(
                f"node {self.name}: the database lacks migrations {missing}; "
                "run `jobsaga migrate` (or app.migrate()) first"
            )

    def _on_notice(self, payload: Mapping[str, Any]) -> None:
        self.plugins.notice(payload)
        if payload.get("signal"):
            self.control.on_signal(payload)
            return
        if payload.get("reconnected"):
            self.control.wake()
            for producer in self.producers.values():
                producer.wake()
            self.stager_wake()
            return
        for queue in payload.get("queues", ()):
            if (found := self.producers.get(queue)) is not None:
                found.wake()
        if payload.get("scheduled"):
            self.stager_wake()

    def request_stop(self) -> None:
        """Thread-safe: ask a running node to shut down gracefully."""
        loop = self._loop
        if loop is not None and self._stop_requested is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop_requested.set)

    async def wait_stopped(self) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()

    async def stop(self, grace_period: float | None = None) -> None:
        """Stop fetching, let running jobs finish up to the grace period, write back the rest."""
        if not self.started:
            return
        grace = self.grace_period if grace_period is None else grace_period
        for producer in self.producers.values():
            await producer.stop_fetching()
        running = [t for p in self.producers.values() for t in p.running.values()]
        if running:
            log.info(
                "node %s: waiting up to %.1fs for %d running jobs", self.name, grace, len(running)
            )
            done, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        await self.acker.drain()
        await self.control.stop()
        await self.plugins.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for cleanup in self._cleanup:
            cleanup()
        self._cleanup.clear()
        self._job_threads.shutdown(wait=False, cancel_futures=True)
        self._db_threads.shutdown(wait=True)
        self.started = False
        log.info("node %s stopped", self.name)

    async def run_until_stopped(self) -> None:
        await self.start()
        try:
            await self.wait_stopped()
        finally:
            await self.stop()

    def run(self) -> None:
        """Run in the foreground until SIGTERM or SIGINT, then shut down gracefully."""

        async def main() -> None:
            loop = asyncio.get_running_loop()
            # Before start(): jobs already run while plugins start, and a SIGTERM in that
            # window must stop the node gracefully rather than kill it with jobs executing.
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            try:
                await self.start()
            except BaseException:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                raise
            try:
                await self.wait_stopped()
            finally:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
                await self.stop()

        asyncio.run(main())

    def start_in_thread(self) -> NodeThread:
        return NodeThread(self)


class NodeThread:
    """A node running on its own event loop in a background thread; a context manager."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main, name=f"jobsaga-node-{node.name}", daemon=True
        )
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        async def main() -> None:
            try:
                await self.node.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                raise
            self._ready.set()
            try:
                await self.node.wait_stopped()
            finally:
                await self.node.stop()

        try:
            asyncio.run(main())
        except BaseException as exc:  # surfaced by stop()
            self._error = self._error or exc

    def stop(self, timeout: float = 30.0) -> None:
        self.node.request_stop()
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"node {self.node.name} did not stop within {timeout}s")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> NodeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
