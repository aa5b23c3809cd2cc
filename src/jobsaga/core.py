"""What every part of a running app shares: one database, the workers and workflows it
knows, inserting jobs, and the wake-ups between this process's inserts and its nodes.

:class:`AppCore` sits below the runtime, the plugins, the operations and the workflow layer,
which all take it; :class:`~jobsaga.app.App`, the facade a user builds, adds the operations
and nodes on top. Creating one opens nothing; the engine connects on first use, so an App can
live at module level in user code without side effects at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar, Protocol, Self

from . import _context
from .engines import Engine, create_engine, resolve_url
from .engines.base import (
    AsyncCallerConnection,
    CallerConnection,
    Clock,
    MigrationListener,
    utcnow,
    wake_payload,
)
from .errors import ConfigError, EnqueueInStepError, NotAJobError, UnknownWorkerError
from .job import MAX_JOB_ID, Job, JobSpec
from .telemetry import Telemetry
from .worker import Worker

LocalListener = Callable[[Mapping[str, Any]], None]

log = logging.getLogger("jobsaga.core")

ENQUEUE_IN_STEP = (
    "workflow step {step!r} tried to insert a job ({worker}). Steps never enqueue jobs: a job "
    "inserted by a step cannot be compensated if the saga later rolls back, and a retried "
    "step would enqueue it twice. Workflows run inside jobs instead. To start follow-up work, "
    "call ctx.enqueue_after_success(Worker.new(...)) in the step: the jobs are inserted only "
    "once the whole workflow has succeeded, in the same transaction that completes the job."
)


class NamedWorkflow(Protocol):
    """What the registry needs of a workflow class: its stable name (every
    :class:`~jobsaga.Workflow` subclass has one). A protocol, so this layer need not import
    the workflow layer above it, and a user's type checker still refuses a non-workflow."""

    name: ClassVar[str]


class AppCore:
    """A database, the workers and workflows stored jobs name, and inserting jobs.

    Lower layers take this (a node, a plugin, an operation, a workflow run); users build
    :class:`~jobsaga.App`, which is one.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        workers: Iterable[type[Worker]] = (),
        workflows: Iterable[type[NamedWorkflow]] = (),
        clock: Clock = utcnow,
        pool_size: int = 10,
        workflow_middleware: Iterable[Any] = (),
    ) -> None:
        self.url = resolve_url(url)
        self.clock = clock
        self.telemetry = Telemetry()
        self.workflow_middleware: tuple[Any, ...] = tuple(workflow_middleware)
        """Middleware every workflow run of this app calls, before its class's own
        (``jobsaga.workflow.Middleware`` instances; see docs/workflows.md, "Middleware")."""
        for middleware in self.workflow_middleware:
            if isinstance(middleware, type) or not hasattr(middleware, "around_step"):
                raise ConfigError(
                    "workflow_middleware takes jobsaga.workflow.Middleware instances, got "
                    f"{middleware!r}"
                )
        self._pool_size = pool_size
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        self._workers: dict[str, type[Worker]] = {}
        self._workflows: dict[str, type[NamedWorkflow]] = {}
        self._listeners: list[LocalListener] = []
        self._control_appliers: list[Callable[[], None]] = []
        self.register(*workers)
        for workflow in workflows:
            self.register_workflow(workflow)

    def __repr__(self) -> str:
        scheme = self.url.split(":", 1)[0]
        return f"<jobsaga.App {scheme} workers={len(self._workers)}>"

    # --- registry -------------------------------------------------------------------------

    def register(self, *workers: type[Worker]) -> None:
        """Make workers known by their stable names; a different class under a taken name is an error."""
        for worker in workers:
            if not (isinstance(worker, type) and issubclass(worker, Worker)):
                raise ConfigError(f"{worker!r} is not a Worker subclass")
            worker.check_runnable()
            known = self._workers.get(worker.name)
            if known is not None and known is not worker:
                raise ConfigError(
                    f"two workers share the name {worker.name!r}: {known.__qualname__} and "
                    f"{worker.__qualname__}; give one a name= option"
                )
            self._workers[worker.name] = worker

    def register_workflow(self, workflow: type[NamedWorkflow]) -> None:
        """Make a workflow known by its stable name (``jobsaga runs show`` draws it)."""
        name = getattr(workflow, "name", None) or f"{workflow.__module__}.{workflow.__qualname__}"
        self._workflows[name] = workflow

    @property
    def workers(self) -> Mapping[str, type[Worker]]:
        return dict(self._workers)

    @property
    def workflows(self) -> Mapping[str, type[NamedWorkflow]]:
        return dict(self._workflows)

    def worker_for(self, name: str) -> type[Worker]:
        try:
            return self._workers[name]
        except KeyError:
            raise UnknownWorkerError(
                f"no worker named {name!r} is registered on this app "
                f"(known: {sorted(self._workers) or 'none'})"
            ) from None

    # --- engine ---------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = create_engine(self.url, self.clock, pool_size=self._pool_size)
            return self._engine

    def migrate(self, on_migration: MigrationListener | None = None) -> list[str]:
        """Apply pending schema migrations; safe to call on every start and from many nodes.
        ``on_migration`` hears each as it starts and ends (``jobsaga migrate`` says them)."""
        return self.engine.migrate(on_migration)

    def close(self) -> None:
        """Close the engine: its connections, async ones of every event loop included. The
        app may be used again (the engine reconnects)."""
        with self._engine_lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None

    async def aclose(self) -> None:
        """:meth:`close` from async code (a FastAPI lifespan, say), without blocking the
        loop while the connection pool's threads stop."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- insert ---------------------------------------------------------------------------

    def insert(self, spec: JobSpec, *, conn: CallerConnection | None = None) -> Job[Any]:
        """Store one job and return it (``conflict=True`` if a unique duplicate was found).

        With ``conn`` (a psycopg connection, PostgreSQL only) the job is written in the
        caller's transaction and exists only if that transaction commits.
        """
        return self.insert_all([spec], conn=conn)[0]

    def insert_all(
        self, specs: Sequence[JobSpec], *, conn: CallerConnection | None = None
    ) -> list[Job[Any]]:
        """Store many jobs in one transaction (one round trip below a few hundred plain jobs,
        COPY above on PostgreSQL); returns them in the order given."""
        specs = self._insertable(specs)
        interceptor = _context.insert_interceptor.get()
        if interceptor is not None:
            return list(interceptor(self, specs, conn))
        jobs = self.engine.insert(specs, conn=conn)
        self.announce(jobs)
        return jobs

    async def ainsert(
        self, spec: JobSpec, *, conn: AsyncCallerConnection | CallerConnection | None = None
    ) -> Job[Any]:
        """:meth:`insert` for async code. On PostgreSQL it runs on the caller's event loop, no
        thread, and ``conn`` may be the caller's ``psycopg.AsyncConnection``: the job is then
        written in their transaction (visible, and its nodes woken, when they commit)."""
        return (await self.ainsert_all([spec], conn=conn))[0]

    async def ainsert_all(
        self,
        specs: Sequence[JobSpec],
        *,
        conn: AsyncCallerConnection | CallerConnection | None = None,
    ) -> list[Job[Any]]:
        """:meth:`insert_all` for async code (see :meth:`ainsert`). On SQLite, whose driver is
        synchronous, the insert runs in a thread."""
        specs = self._insertable(specs)
        if _context.insert_interceptor.get() is not None:  # a testing mode: it runs jobs
            return await asyncio.to_thread(self.insert_all, specs, conn=conn)  # type: ignore[arg-type]
        jobs = await self.engine.ainsert(specs, conn=conn)
        self.announce(jobs)
        return jobs

    def _insertable(self, specs: Sequence[JobSpec]) -> list[JobSpec]:
        """``specs`` as a list, once checked: jobs built by ``new``, not inserted by a step."""
        specs = list(specs)
        for spec in specs:
            if not isinstance(spec, JobSpec):
                raise NotAJobError(f"insert expects jobs built by Worker.new(...), got {spec!r}")
        step = _context.current_step.get()
        if step is not None and specs:
            raise EnqueueInStepError(ENQUEUE_IN_STEP.format(step=step, worker=specs[0].worker))
        return specs

    def announce(self, jobs: Sequence[Job[Any]]) -> None:
        """Wake this process's nodes for new jobs (other processes hear via NOTIFY or polling).

        Never raises: the jobs are committed when this runs, and a caller that retries on an
        error would insert them twice. A listener that fails is logged; the nodes' polling
        finds the jobs anyway."""
        created = [job for job in jobs if not job.conflict]
        if created and self._listeners:
            self._tell_listeners(wake_payload(created))

    def announce_specs(self, specs: Sequence[JobSpec]) -> None:
        """Wake this process's nodes for jobs inserted outside ``insert`` (follow-ups); never
        raises, as :meth:`announce`."""
        if self._listeners:
            self._tell_listeners({"queues": sorted({s.queue for s in specs}), "scheduled": True})

    def _tell_listeners(self, payload: Mapping[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(payload)
            except Exception:  # after a commit: log, never raise to the caller
                log.exception("a listener of this app failed to hear %s", payload)

    def add_listener(self, listener: LocalListener) -> Callable[[], None]:
        """Hear this process's wake-ups; returns the function that removes ``listener``."""
        self._listeners.append(listener)
        return lambda: _discard(self._listeners, listener)

    def add_control_applier(self, applier: Callable[[], None]) -> Callable[[], None]:
        """A node of this process applies persisted queue controls through ``applier`` before
        ``pause_queue``/``resume_queue``/``scale_queue`` return."""
        self._control_appliers.append(applier)
        return lambda: _discard(self._control_appliers, applier)

    # --- reading --------------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job[Any] | None:
        """The stored job, or None. An id no job can have (outside 1..2**63-1) is None
        without a query: SQLite's driver cannot even bind it."""
        if not 1 <= job_id <= MAX_JOB_ID:
            return None
        return self.engine.get_job(job_id)

    def now(self) -> datetime:
        return self.clock()

    def signal_local_nodes(self, payload: Mapping[str, Any]) -> None:
        """Deliver a control payload to this process's nodes at once (others hear it by
        NOTIFY or by polling). A queue control is in force on this process's nodes when this
        returns: a pause followed by an insert must not let the insert's wake-up fetch
        first."""
        for listener in list(self._listeners):
            listener(payload)
        if payload.get("signal") == "queues":
            for applier in list(self._control_appliers):
                applier()


def _discard(items: list[Any], item: Any) -> None:
    """Remove ``item`` once, if it is still there (removing twice is not an error)."""
    with contextlib.suppress(ValueError):
        items.remove(item)
