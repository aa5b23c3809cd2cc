"""A worker node: the queues it runs, the stager, acknowledgements, and graceful shutdown.

Run it blocking (``node.run()``: SIGTERM and SIGINT stop it gracefully, a second signal
forces the stop, a third exits), on your own event loop (``await node.start()`` /
``await node.stop()``), or in a background thread (``node.start_in_thread()``), which is what
tests and embedding in a sync program use. ``request_stop(force=True)`` is the forced stop
from code: the grace period ends at once, and running jobs are treated as at its end.

Two rules keep a job from running twice at once, or from being stranded:

- A start that fails midway is undone completely (listeners, pools, plugins), so the app
  goes on inserting as if the node had never been built.
- At shutdown, a job is written back (attempt not counted) only when its user code really
  stopped. A sync perform (or a saga's sync step) still running in a thread past the grace
  period cannot be stopped by Python: its job stays ``executing`` under this node, whose
  heartbeat goes on while such a thread runs; when the last one ends (or the process exits
  and its heartbeat lapses) the lifeline rescues the job with that attempt counted, its error
  saying the shutdown interrupted it (the node's record keeps why, see :meth:`Node.hold`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

from ..engines import Ack
from ..errors import ConfigError, NodeStateError, NodeStopTimeout
from ..job import Job, JobState
from ..plugins.crontab import CronLine
from ..plugins.reconciler import CLAIM_MARGIN
from ..plugins.supervisor import NodePlugins, PluginOptions
from .acker import Acker
from .control import NodeControl
from .executor import AttemptThreads, Executor, error_record
from .foreground import run_in_foreground
from .producer import QueueProducer
from .summary import Summary

if TYPE_CHECKING:
    from ..core import AppCore

log = logging.getLogger("jobsaga.runtime.node")
T = TypeVar("T")


PLUGIN_DB_THREADS = 7
"""Database threads beside one per queue (whose fetch uses it where the engine has no async
side): the acker, the stager, heartbeat, lifeline and reconciler, pruner and cron, queue
controls. A fixed 8 made a node of many queues queue its fetches behind each other."""


async def awaited(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    """The acker's way to run its (async) writer: awaited on the loop."""
    return await fn(*args)


def default_node_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class NodeOptions(TypedDict, total=False):
    """``Node``'s options as keywords (``app.node(queues, **options)``), so a type checker
    catches a misspelt or mistyped one; :class:`~jobsaga.config.NodeConfig` uses the same
    names. Each is documented on ``Node`` and in docs/configuration.md."""

    name: str | None
    grace_period: float
    poll_interval: float | None
    stage_interval: float
    max_threads: int | None
    ack_batch: int
    ack_delay: float
    control_interval: float | None
    heartbeat_interval: float
    rescue_after: float
    rescue_interval: float | None
    crontab: Iterable[CronLine]
    prune_after: float | None
    prune_interval: float
    prune_limit: int
    leader_lease: float
    leadership: bool
    max_abandoned_threads: int | None
    summary_interval: float


class Node:
    def __init__(
        self,
        app: AppCore,
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
        heartbeat_interval: float = 5.0,
        rescue_after: float = 60.0,
        rescue_interval: float | None = None,
        crontab: Iterable[CronLine] = (),
        prune_after: float | None = None,
        prune_interval: float = 30.0,
        prune_limit: int = 5000,
        leader_lease: float = 5.0,
        leadership: bool = True,
        max_abandoned_threads: int | None = None,
        summary_interval: float = 60.0,
    ) -> None:
        if not queues:
            raise ConfigError("a node needs at least one queue, e.g. {'default': 10}")
        for queue, limit in queues.items():  # here, before start() opens listeners and pools
            if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
                raise ConfigError(f"queue {queue!r}: concurrency limit must be >= 1, got {limit!r}")
        if max_abandoned_threads is not None and (
            not isinstance(max_abandoned_threads, int)
            or isinstance(max_abandoned_threads, bool)
            or max_abandoned_threads < 1
        ):
            raise ConfigError(
                f"max_abandoned_threads must be an integer >= 1 (or None for each queue's "
                f"concurrency limit), got {max_abandoned_threads!r}"
            )
        if summary_interval < 0:
            raise ConfigError(
                f"summary_interval must be >= 0 seconds (0: no summary), got {summary_interval!r}"
            )
        self.app = app
        self.name = name or default_node_name()
        self.summary_interval = summary_interval
        self.max_abandoned_threads = max_abandoned_threads
        self.queue_limits = dict(queues)
        self.grace_period = grace_period
        # Without NOTIFY from other processes (SQLite), polling is how they are heard.
        polled = not app.engine.hears_other_processes
        self.poll_interval = (
            poll_interval if poll_interval is not None else (0.2 if polled else 1.0)
        )
        self.stage_interval = stage_interval
        self.max_threads = max_threads or max(4, sum(self.queue_limits.values()))
        self.ack_batch = ack_batch
        self.ack_delay = ack_delay
        # Queue controls and cancels arrive at once by NOTIFY on PostgreSQL (polling is a
        # safety net); on SQLite other processes are seen by this poll.
        self.control_interval = (
            control_interval if control_interval is not None else (1.0 if polled else 5.0)
        )
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
        self.summary = Summary(self.name, summary_interval)
        """What the node's jobs came to since its last summary line (see ``summary.py``)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._forced: asyncio.Event | None = None
        self._stopping_since: float | None = None
        """When the graceful stop began (loop time), for what a forced stop records."""
        self.signals = 0
        """Stop signals received by :meth:`run` (the second forces, the third exits)."""
        self._tasks: list[asyncio.Task[None]] = []
        self._cleanup: list[Callable[[], None]] = []
        self._grace = grace_period
        """The grace period of the stop under way (``stop()`` may be given another)."""
        self._fetches: dict[int, datetime] = {}
        """Fetches under way (a sequence number -> when it started, on the app's clock)."""
        self._fetch_seq = 0
        self.held: dict[int, tuple[Job[Any], AttemptThreads]] = {}
        """Jobs left executing at shutdown because their user code still runs in a thread."""
        self.unsettled: dict[int, tuple[int, datetime | None]] = {}
        """Jobs that ran but whose outcome was not written (id -> attempt, claimed at)."""
        self._job_threads: ThreadPoolExecutor  # set by start(), with the executor
        self.executor: Executor
        self.started = False

    # --- helpers used by producers ---------------------------------------------------------

    async def run_in_db(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db_threads, lambda: fn(*args))

    async def fetch(self, queue: str, limit: int) -> list[Job[Any]]:
        """Claim up to ``limit`` jobs of ``queue``: on the loop where the engine can, else
        through the database threads."""
        engine = self.app.engine
        if engine.hot_path_on_loop:
            return await engine.afetch(queue, limit, self.name)
        return await self.run_in_db(engine.fetch, queue, limit, self.name)

    async def _write_acks(self, acks: list[Ack]) -> set[int]:
        engine = self.app.engine
        if engine.hot_path_on_loop:
            return await engine.aack(acks)
        return await self.run_in_db(engine.ack, acks)

    def stager_wake(self) -> None:
        self.plugins.stager.wake()

    async def run_final_failure(self, job: Job[Any], error: BaseException) -> None:
        """Run the worker's final-failure hook for a job that ended elsewhere than in this
        node's executor (the lifeline discards orphans): best effort, a worker this node does
        not know or a hook that raises is logged."""
        executor = self.executor
        try:
            worker_cls = self.app.worker_for(job.worker)
            typed = job.with_args(worker_cls.parse_args(job.args))
            await executor.call(executor.instance(worker_cls).on_final_failure, typed, error)
        except Exception:
            log.exception("on_final_failure of job %d (%s) failed", job.id, job.worker)

    # --- what this node knows it runs (for the reconciler) ----------------------------------

    def fetch_started(self) -> int:
        self._fetch_seq += 1
        self._fetches[self._fetch_seq] = self.app.clock()
        return self._fetch_seq

    def fetch_ended(self, fetch: int) -> None:
        self._fetches.pop(fetch, None)

    def claims_known(self) -> tuple[datetime, set[int]]:
        """On the node's loop: the jobs this node knows it runs, and the time before which
        every claim under its name is known (no fetch started since then is still under
        way). A job executing under this node's name, claimed before that time and not in
        the set, was claimed by a fetch whose reply never arrived."""
        before = min((*self._fetches.values(), self.app.clock())) - CLAIM_MARGIN
        known = {job_id for p in self.producers.values() for job_id in p.running}
        known.update(self.held)
        return before, known

    # --- what it runs with ------------------------------------------------------------------

    def effective_options(self) -> dict[str, Any]:
        """Every option under its ``Node`` keyword as this node runs with it, defaults and
        derived values (polling, threads, the lifeline's interval) resolved, for
        ``jobsaga config``."""
        plugins = self.plugins.options
        return {
            "name": self.name,
            "grace_period": self.grace_period,
            "poll_interval": self.poll_interval,
            "stage_interval": self.stage_interval,
            "max_threads": self.max_threads,
            "ack_batch": self.ack_batch,
            "ack_delay": self.ack_delay,
            "control_interval": self.control_interval,
            "heartbeat_interval": plugins.heartbeat_interval,
            "rescue_after": plugins.rescue_after,
            "rescue_interval": self.plugins.lifeline.interval,
            "crontab": plugins.crontab,
            "prune_after": plugins.prune_after,
            "prune_interval": plugins.prune_interval,
            "prune_limit": plugins.prune_limit,
            "leader_lease": plugins.leader_lease,
            "leadership": plugins.leadership,
            "max_abandoned_threads": self.max_abandoned_threads,
            "summary_interval": self.summary_interval,
        }

    # --- health --------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """``{"healthy": bool, "stalled": {queue: {"abandoned_threads": n, "cap": c}}}``: a
        queue is stalled while its timed-out performs leave too many threads running."""
        stalled = {
            queue: {"abandoned_threads": p.abandoned_threads, "cap": p.abandon_cap}
            for queue, p in self.producers.items()
            if p.stalled
        }
        return {"healthy": not stalled, "stalled": stalled}

    def on_stalled(self, producer: QueueProducer, count: int) -> None:
        """A queue stopped (or resumed) fetching because of abandoned threads."""
        meta = {"queue": producer.queue, "node": self.name}
        measures = {"abandoned_threads": count, "cap": producer.abandon_cap}
        if producer.stalled:
            log.warning(
                "node %s is unhealthy: queue %s stopped fetching; %d thread(s) of performs "
                "that overran their timeout still run (cap %d). It resumes as they return.",
                self.name,
                producer.queue,
                count,
                producer.abandon_cap,
            )
        else:
            log.warning(
                "node %s: queue %s fetches again (%d abandoned thread(s) left, cap %d)",
                self.name,
                producer.queue,
                count,
                producer.abandon_cap,
            )
        self.app.telemetry.emit(
            "queue.stalled" if producer.stalled else "queue.recovered", measures, meta
        )
        self.plugins.heartbeat.wake()  # publish the health in the node's record now

    def _on_threads_abandoned(self, job: Job[Any], threads: AttemptThreads) -> None:
        self._renew_job_threads()
        producer = self.producers.get(job.queue)
        if producer is not None:
            producer.abandon(threads)

    def hold(self, job: Job[Any], threads: AttemptThreads) -> None:
        """Shutdown cut ``job`` short while a thread of it still runs: leave it executing.

        Why the attempt ended goes into the node's record (its heartbeat row), which outlives
        the process: the lifeline reads it there when it rescues the job, so the error it
        records says the attempt was interrupted by a shutdown, not just orphaned."""
        self.held[job.id] = (job, threads)
        self.plugins.heartbeat.note_held(job, self.interrupt_reason(in_thread=True))
        log.warning(
            "node %s: job %d (%s) still runs in %d thread(s) as the node stops; it stays "
            "executing under this node until they return (or the process exits), then it is "
            "rescued with this attempt counted",
            self.name,
            job.id,
            job.worker,
            threads.live,
        )

    def interrupt_reason(self, *, in_thread: bool = False) -> str:
        """What an attempt cut short by this node's shutdown records: that it was interrupted,
        by which node, and how long it had (the grace period, or a forced stop within it).
        ``in_thread``: the job's code still ran in a thread (the job is held, see :meth:`hold`)."""
        grace = f"{self._grace:g} s"
        if self.forced:
            loop = self._loop
            since = self._stopping_since
            into = "" if loop is None or since is None else f"{loop.time() - since:.1f} s into "
            still = ", while the job's code still ran in a thread" if in_thread else ""
            return (
                f"interrupted by a forced shutdown: node {self.name} was told to stop at once "
                f"(a second signal) {into}its {grace} grace period{still}"
            )
        how = (
            "while the job's code still ran in a thread" if in_thread else "before the job finished"
        )
        return f"interrupted by shutdown: node {self.name} stopped {how} (grace period {grace})"

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
        runs, then its threads exit. (How many threads the old pools keep is bounded by each
        queue's cap on abandoned threads.)"""
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
        """Start the node; if any part fails, undo what was started and raise.

        A failed start leaves nothing behind: no listener on the app (a later ``app.insert``
        would wake a dead event loop), no thread, no heartbeat row."""
        if self.started:
            raise NodeStateError(f"node {self.name} is already started")
        if self.lingering:
            raise NodeStateError(
                f"node {self.name} cannot start again yet: jobs of its last run still run "
                f"in threads ({sorted(self.held)})"
            )
        self.started = True
        undo: list[Callable[[], Awaitable[None] | None]] = []
        try:
            await self._start(undo)
        except BaseException:
            await self._undo_start(undo)
            raise

    async def _undo_start(self, undo: list[Callable[[], Awaitable[None] | None]]) -> None:
        for step in reversed(undo):
            try:
                result = step()
                if result is not None:
                    await result
            except Exception:
                log.exception("node %s: undoing a failed start", self.name)
        self.producers.clear()
        self.started = False
        log.info("node %s did not start; what it had started is undone", self.name)

    async def _start(self, undo: list[Callable[[], Awaitable[None] | None]]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._forced = asyncio.Event()
        self._stopping_since = None
        self.signals = 0
        self.held.clear()
        self.unsettled.clear()
        self._db_threads = ThreadPoolExecutor(
            max_workers=len(self.queue_limits) + PLUGIN_DB_THREADS, thread_name_prefix="jobsaga-db"
        )
        undo.append(lambda: self._db_threads.shutdown(wait=True))
        self._job_threads = ThreadPoolExecutor(
            max_workers=self.max_threads, thread_name_prefix="jobsaga-job"
        )
        undo.append(lambda: self._job_threads.shutdown(wait=False, cancel_futures=True))
        await self.run_in_db(self._check_schema)
        self.executor = Executor(self.app, self.name, self._job_threads)
        self.executor.on_threads_abandoned = self._on_threads_abandoned
        self.acker = Acker(
            self._write_acks,
            awaited,
            max_batch=self.ack_batch,
            max_delay=self.ack_delay,
            performing=lambda: sum(p.busy for p in self.producers.values()),
        )
        loop = self._loop

        def from_any_thread(payload: Mapping[str, Any]) -> None:
            # A closed loop: the node stopped, nothing to wake (after an insert's commit).
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_notice, payload)

        def cleanup() -> None:
            for step in self._cleanup:
                step()
            self._cleanup.clear()

        undo.append(cleanup)
        self._cleanup.append(self.app.add_listener(from_any_thread))
        self._cleanup.append(self.app.engine.listen(from_any_thread))
        for queue, limit in self.queue_limits.items():
            self.producers[queue] = QueueProducer(self, queue, limit)
        self.control = NodeControl(self, interval=self.control_interval)
        undo.append(self.control.stop)
        await self.control.start()  # persisted pause/scale apply before the first fetch
        self._cleanup.append(self.app.add_control_applier(self.apply_controls_now))
        undo.append(self.plugins.stop)
        await self.plugins.start()  # the node name is held (heartbeat) before the first fetch
        for producer in self.producers.values():
            producer.start()
        self.summary.take()  # a summary counts from the start
        if self.summary_interval > 0:
            self._tasks.append(asyncio.create_task(self.summary.run(), name="jobsaga-summary"))
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

    def request_stop(self, *, force: bool = False) -> None:
        """Thread-safe: ask a running node to shut down gracefully; with ``force``, to end the
        grace period now (running jobs are interrupted at once, as at its end)."""
        loop = self._loop
        if loop is None or self._stop_requested is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: it has stopped
            loop.call_soon_threadsafe(self._stop_requested.set)
            if force and self._forced is not None:
                loop.call_soon_threadsafe(self._forced.set)

    @property
    def forced(self) -> bool:
        """A forced stop was asked for: the grace period ended early."""
        return self._forced is not None and self._forced.is_set()

    @property
    def stopping(self) -> bool:
        """A graceful stop is under way (its grace period running)."""
        return self.started and self._stopping_since is not None

    @property
    def running_jobs(self) -> int:
        """Jobs this node runs now (performing, or their outcome being written)."""
        return sum(len(p.running) for p in self.producers.values())

    async def wait_stopped(self) -> None:
        assert self._stop_requested is not None
        await self._stop_requested.wait()

    async def stop(self, grace_period: float | None = None) -> None:
        """Stop fetching, let running jobs finish up to the grace period, then stop the rest:
        an attempt whose user code stopped (an async perform, cancelled) is written back
        without counting it; one that still runs in a thread stays executing under this node
        until that thread returns (see the module docstring)."""
        if not self.started:
            return
        grace = self.grace_period if grace_period is None else grace_period
        for producer in self.producers.values():
            await producer.stop_fetching()
        self._grace = grace
        self._stopping_since = asyncio.get_running_loop().time()
        running = [t for p in self.producers.values() for t in p.running.values()]
        if running:
            log.info(
                "node %s: waiting up to %g s for %d running job%s",
                self.name,
                grace,
                len(running),
                "" if len(running) == 1 else "s",
            )
            pending = await self._wait_running(running, grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5.0)
        await self.acker.drain()
        await self.control.stop()
        await self.plugins.stop()  # with jobs held, the heartbeat goes on until they end
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.summary_interval > 0:
            self.summary.log()  # what finished since the last line
        for cleanup in self._cleanup:
            cleanup()
        self._cleanup.clear()
        self._job_threads.shutdown(wait=False, cancel_futures=True)
        self._db_threads.shutdown(wait=True)
        self.started = False
        if self.held:
            log.warning(
                "node %s stopped with %d job(s) still running in threads; it keeps "
                "heartbeating until they return",
                self.name,
                len(self.held),
            )
        log.info("node %s stopped", self.name)

    async def _wait_running(
        self, running: list[asyncio.Task[None]], grace: float
    ) -> set[asyncio.Task[None]]:
        """Wait for ``running`` to end, until the grace period passes or a forced stop is
        asked for; returns the tasks still running."""
        assert self._forced is not None
        if not self._forced.is_set():
            forced = asyncio.ensure_future(self._forced.wait())
            ended = asyncio.ensure_future(asyncio.wait(running, timeout=grace))
            try:
                await asyncio.wait((forced, ended), return_when=asyncio.FIRST_COMPLETED)
            finally:
                forced.cancel()
                ended.cancel()
        return {task for task in running if not task.done()}

    @property
    def lingering(self) -> bool:
        """Stopped, but still vouching (heartbeating) for jobs whose threads run on."""
        return self.plugins.heartbeat.lingering

    def run(self, announce: Callable[[str], None] | None = None) -> None:
        """Run in the foreground until SIGTERM or SIGINT, then shut down gracefully; a second
        signal forces the stop, a third exits (see :mod:`.foreground`). ``announce`` is told
        when the node is ready and what each signal does (default: the log, at INFO)."""
        run_in_foreground(self, announce)

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
            raise NodeStopTimeout(f"node {self.node.name} did not stop within {timeout}s")

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> NodeThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
