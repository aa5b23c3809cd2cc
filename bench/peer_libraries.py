"""The libraries ``bench_peers.py`` measures, each through its own public API.

For each: how it installs its schema, inserts one by one and in bulk, shows progress in its
tables, fills its job table with completed rows, and runs a worker in the child process
(``serve``). Every library's task is a no-op ``async def`` that tells :data:`PROBE` it
started, so that the child can tell the parent when the jobs it waits for have run (the parent
does not poll the database while they run) and, for the latency phase, when each one started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from functools import cache
from typing import Any, ClassVar

import psycopg
from common import CONCURRENCY, atimed, timed
from peer_base import (
    PROBE,
    QUEUE,
    SAGA_QUEUE,
    Channel,
    Counts,
    Library,
    NotApplicable,
    PeerError,
    WorkerSettings,
    each,
    now_ns,
)

from jobsaga import App, Job, Worker, Workflow, WorkflowWorker, step

# --- jobsaga ----------------------------------------------------------------------------


class ProbeNoop(Worker, queue=QUEUE, name="bench.noop"):
    async def perform(self, job: Job[Any]) -> None:
        PROBE.hit(job.args["n"])


class Diamond(Workflow, name="bench.diamond", inputs=["n"]):
    """Four no-op async steps: ``a``, then ``b`` and ``c`` side by side, then ``d``."""

    @step
    async def a(self, n: int) -> int:
        return n

    @step
    async def b(self, a: int) -> int:
        return a

    @step
    async def c(self, a: int) -> int:
        return a

    @step
    async def d(self, b: int, c: int) -> int:
        PROBE.hit(b)
        return b


class DiamondSaga(WorkflowWorker, workflow=Diamond, queue=SAGA_QUEUE, name="bench.diamond_saga"):
    """Runs :class:`Diamond` with its run log (``persist=True``, the default)."""


def saga_specs(n: int) -> list[Any]:
    return [DiamondSaga.new({"n": i}) for i in range(n)]


class Jobsaga(Library):
    key = "jobsaga"
    label = "jobsaga"
    distribution = "jobsaga"
    modules = ("jobsaga",)
    job_tables: ClassVar[tuple[str, ...]] = ("jobsaga_jobs",)
    counts_sql = (
        "SELECT count(*) FILTER (WHERE state <> 'completed'),"
        " count(*) FILTER (WHERE state = 'completed') FROM jobsaga_jobs WHERE id > %(floor)s"
    )
    workers: ClassVar[list[type[Worker]]] = [ProbeNoop, DiamondSaga]

    def app(self, url: str) -> App:
        return App(url, workers=self.workers)

    def install(self, url: str) -> None:
        with self.app(url) as app:
            app.migrate()

    def insert_one_by_one(self, url: str, n: int) -> float:
        with self.app(url) as app:
            specs = [ProbeNoop.new({"n": i}) for i in range(n)]
            return timed(lambda: [app.insert(spec) for spec in specs])

    def insert_bulk(self, url: str, n: int) -> float:
        with self.app(url) as app:
            specs = [ProbeNoop.new({"n": i}) for i in range(n)]
            return timed(lambda: app.insert_all(specs))

    def insert_sagas(self, url: str, n: int) -> None:
        with self.app(url) as app:
            app.insert_all(saga_specs(n))

    def timed_inserts(self, url: str, n: int, gap: float) -> dict[int, int]:
        with self.app(url) as app:
            app.engine.queue_counts()  # connected before the first insert
            return self._timed_inserts(app, n, gap)

    @staticmethod
    def _timed_inserts(app: App, n: int, gap: float) -> dict[int, int]:
        specs = [ProbeNoop.new({"n": i}) for i in range(n)]
        called: dict[int, int] = {}
        for i, spec in enumerate(specs):
            called[i] = now_ns()
            app.insert(spec)
            time.sleep(gap)
        return called

    def fill_completed(self, url: str, rows: int) -> int:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO jobsaga_jobs (state, queue, worker, args, attempt, inserted_at,"
                " scheduled_at, attempted_at, completed_at)"
                " SELECT 'completed', %(queue)s, %(worker)s, jsonb_build_object('n', g), 1,"
                " now(), now(), now(), now() FROM generate_series(1, %(rows)s) AS g",
                {"queue": QUEUE, "worker": ProbeNoop.name, "rows": rows},
            )
            row = conn.execute("SELECT coalesce(max(id), 0) FROM jobsaga_jobs").fetchone()
        assert row is not None
        return int(row[0])

    def serve(self, settings: WorkerSettings, channel: Channel) -> None:
        queue = SAGA_QUEUE if settings.kind == "saga" else QUEUE
        assert settings.concurrency is not None
        with self.app(settings.url) as app:
            app.engine.queue_counts()  # the connection pool is open before the clock starts
            channel.ready()
            channel.wait()
            with app.node({queue: settings.concurrency}).start_in_thread():
                channel.wait()


class JobsagaSqlite(Jobsaga):
    """jobsaga on its embedded engine: a SQLite file in a temporary folder."""

    key = "sqlite"
    label = "jobsaga (sqlite)"
    engine = "sqlite"
    job_tables = ()
    counts_sql = Jobsaga.counts_sql.replace("%(floor)s", ":floor")

    @contextlib.contextmanager
    def database(self, template: str | None = None) -> Iterator[str]:
        assert template is None
        with tempfile.TemporaryDirectory(prefix="jobsaga-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"

    @contextlib.contextmanager
    def counts(self, url: str, floor: int = 0) -> Iterator[Counts]:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:

            def read() -> tuple[int, int]:
                unfinished, completed = conn.execute(self.counts_sql, {"floor": floor}).fetchone()
                return int(unfinished), int(completed)

            yield read
        finally:
            conn.close()

    def latency_in_process(
        self, url: str, n: int, gap: float, settle: float, timeout: float
    ) -> tuple[dict[int, int], dict[int, int]]:
        """Insert-to-start with the node in this process (insert call times, start times).

        An embedded engine's inserts wake a node of the same process directly; a node in
        another process would find them by polling (every 0.2 s by default)."""
        done = threading.Event()
        PROBE.arm(n, record=True, reached=done.set)
        with self.app(url) as app, app.node({QUEUE: CONCURRENCY}).start_in_thread():
            time.sleep(settle)
            called = self._timed_inserts(app, n, gap)
            if not done.wait(timeout):
                raise PeerError(f"{PROBE.count} of {n} jobs started within {timeout:.0f}s")
        assert PROBE.starts is not None
        return called, dict(PROBE.starts)


# --- procrastinate ----------------------------------------------------------------------


def procrastinate_app(url: str, **pool: Any) -> tuple[Any, Any]:
    import procrastinate

    # It warns that an app made in __main__ cannot be imported by its worker command; the
    # worker here runs this same code, so that does not apply.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, **pool))

    @app.task(name="bench.noop", queue=QUEUE)
    async def noop(n: int) -> None:
        PROBE.hit(n)

    return app, noop


class Procrastinate(Library):
    key = label = "procrastinate"
    distribution = "procrastinate"
    modules = ("procrastinate",)
    job_tables = ("procrastinate_jobs",)
    counts_sql = (
        "SELECT count(*) FILTER (WHERE status <> 'succeeded'),"
        " count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs"
        " WHERE id > %(floor)s"
    )

    def install(self, url: str) -> None:
        async def main() -> None:
            app, _ = procrastinate_app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

        asyncio.run(main())

    def insert_one_by_one(self, url: str, n: int) -> float:
        async def main() -> float:
            app, noop = procrastinate_app(url)
            async with app.open_async():
                return await atimed(lambda: each(noop.defer_async(n=i) for i in range(n)))

        return asyncio.run(main())

    def insert_bulk(self, url: str, n: int) -> float:
        async def main() -> float:
            app, noop = procrastinate_app(url)
            async with app.open_async():
                args = [{"n": i} for i in range(n)]
                return await atimed(lambda: noop.batch_defer_async(*args))

        return asyncio.run(main())

    def timed_inserts(self, url: str, n: int, gap: float) -> dict[int, int]:
        async def main() -> dict[int, int]:
            app, noop = procrastinate_app(url)
            called: dict[int, int] = {}
            async with app.open_async():
                for i in range(n):
                    called[i] = now_ns()
                    await noop.defer_async(n=i)
                    await asyncio.sleep(gap)
            return called

        return asyncio.run(main())

    def fill_completed(self, url: str, rows: int) -> int:
        # Only the jobs table: the rows carry no procrastinate_events of their own (its
        # insert triggers fire for 'todo' jobs only).
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)"
                " SELECT %(queue)s, 'bench.noop', jsonb_build_object('n', g), 'succeeded', 1"
                " FROM generate_series(1, %(rows)s) AS g",
                {"queue": QUEUE, "rows": rows},
            )
            row = conn.execute("SELECT coalesce(max(id), 0) FROM procrastinate_jobs").fetchone()
        assert row is not None
        return int(row[0])

    def serve(self, settings: WorkerSettings, channel: Channel) -> None:
        concurrency = settings.concurrency
        assert concurrency is not None

        async def main() -> None:
            # Its docs: for short jobs, a pool with as many connections as the concurrency
            # (the LISTEN connection is outside the pool).
            app, _ = procrastinate_app(settings.url, min_size=concurrency, max_size=concurrency)
            async with app.open_async():
                channel.ready()
                await channel.await_line()
                worker = asyncio.create_task(
                    app.run_worker_async(queues=[QUEUE], concurrency=concurrency)
                )
                await channel.await_line()
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

        channel.run(main(), self)


# --- pgqueuer ---------------------------------------------------------------------------


class Pgqueuer(Library):
    key = label = "pgqueuer"
    distribution = "pgqueuer"
    modules = ("pgqueuer", "asyncpg")
    loop = "uvloop"
    job_tables = ("pgqueuer",)
    uncapped = True
    # A finished job leaves the queue table; its final status is logged in pgqueuer_log.
    counts_sql = (
        "SELECT (SELECT count(*) FROM pgqueuer),"
        " (SELECT count(*) FROM pgqueuer_log WHERE status = 'successful')"
    )

    async def _queries(self, url: str) -> tuple[Any, Any]:
        import asyncpg
        from pgqueuer import Queries

        conn = await asyncpg.connect(url)
        return conn, Queries.from_asyncpg_connection(conn)

    def install(self, url: str) -> None:
        async def main() -> None:
            conn, queries = await self._queries(url)
            try:
                await queries.install()
            finally:
                await conn.close()

        asyncio.run(main())

    def insert_one_by_one(self, url: str, n: int) -> float:
        async def main() -> float:
            conn, queries = await self._queries(url)
            try:
                payloads = [str(i).encode() for i in range(n)]
                return await atimed(lambda: each(queries.enqueue(QUEUE, p) for p in payloads))
            finally:
                await conn.close()

        return asyncio.run(main())

    def insert_bulk(self, url: str, n: int) -> float:
        async def main() -> float:
            conn, queries = await self._queries(url)
            try:
                payloads = [str(i).encode() for i in range(n)]
                return await atimed(lambda: queries.enqueue([QUEUE] * n, payloads, [0] * n))
            finally:
                await conn.close()

        return asyncio.run(main())

    def timed_inserts(self, url: str, n: int, gap: float) -> dict[int, int]:
        async def main() -> dict[int, int]:
            conn, queries = await self._queries(url)
            called: dict[int, int] = {}
            try:
                for i in range(n):
                    called[i] = now_ns()
                    await queries.enqueue(QUEUE, str(i).encode())
                    await asyncio.sleep(gap)
            finally:
                await conn.close()
            return called

        return asyncio.run(main())

    def fill_completed(self, url: str, rows: int) -> int:
        raise NotApplicable(
            "pgqueuer deletes a job from its table when it completes (pgqueuer_log keeps a "
            "row per status change)"
        )

    def serve(self, settings: WorkerSettings, channel: Channel) -> None:
        async def main() -> None:
            import asyncpg
            from pgqueuer import PgQueuer

            # Its docs: a dedicated asyncpg connection for the QueueManager.
            conn = await asyncpg.connect(settings.url)
            pgq = PgQueuer.from_asyncpg_connection(conn)

            @pgq.entrypoint(QUEUE)
            async def noop(job: Any) -> None:
                PROBE.hit(int(job.payload))

            channel.ready()
            await channel.await_line()
            if settings.concurrency is None:  # its default: as many jobs as it can fetch
                worker = asyncio.create_task(pgq.run())
            else:
                # max_concurrent_tasks caps the jobs picked by this worker (it must be at
                # least twice batch_size).
                worker = asyncio.create_task(
                    pgq.run(
                        batch_size=max(1, settings.concurrency // 2),
                        max_concurrent_tasks=settings.concurrency,
                    )
                )
            await channel.await_line()
            pgq.shutdown.set()
            await worker
            await conn.close()

        channel.run(main(), self)


# --- oban -------------------------------------------------------------------------------


class ObanNoop:
    """The no-op oban worker (``oban.worker`` is applied by ``oban_worker()``)."""

    async def process(self, job: Any) -> None:
        PROBE.hit(int(job.args["n"]))


@cache
def oban_worker() -> Any:
    from oban import worker

    return worker(queue=QUEUE)(ObanNoop)


class Oban(Library):
    key = label = "oban"
    distribution = "oban"
    modules = ("oban",)
    loop = "uvloop"
    job_tables = ("oban_jobs",)
    counts_sql = (
        "SELECT count(*) FILTER (WHERE state <> 'completed'),"
        " count(*) FILTER (WHERE state = 'completed') FROM oban_jobs WHERE id > %(floor)s"
    )

    def check(self) -> None:
        if sys.version_info < (3, 12):
            raise PeerError("oban-py needs Python >= 3.12")
        super().check()

    def install(self, url: str) -> None:
        async def main() -> None:
            from oban import Oban
            from oban.schema import install

            pool = await Oban.create_pool(url)
            try:
                await install(pool)
            finally:
                await pool.close()

        asyncio.run(main())

    def _measure(self, url: str, n: int, bulk: bool) -> float:
        async def main() -> float:
            from oban import Oban

            pool = await Oban.create_pool(url)
            try:
                oban = Oban(pool=pool)  # client mode: no queues, inserts only
                jobs = [oban_worker().new({"n": i}) for i in range(n)]
                if bulk:
                    return await atimed(lambda: oban.enqueue_many(jobs))
                return await atimed(lambda: each(oban.enqueue(job) for job in jobs))
            finally:
                await pool.close()

        return asyncio.run(main())

    def insert_one_by_one(self, url: str, n: int) -> float:
        return self._measure(url, n, bulk=False)

    def insert_bulk(self, url: str, n: int) -> float:
        return self._measure(url, n, bulk=True)

    def timed_inserts(self, url: str, n: int, gap: float) -> dict[int, int]:
        async def main() -> dict[int, int]:
            from oban import Oban

            pool = await Oban.create_pool(url)
            called: dict[int, int] = {}
            try:
                oban = Oban(pool=pool)
                jobs = [oban_worker().new({"n": i}) for i in range(n)]
                for i, job in enumerate(jobs):
                    called[i] = now_ns()
                    await oban.enqueue(job)
                    await asyncio.sleep(gap)
            finally:
                await pool.close()
            return called

        return asyncio.run(main())

    def serve(self, settings: WorkerSettings, channel: Channel) -> None:
        async def main() -> None:
            from oban import Oban

            oban_worker()
            pool = await Oban.create_pool(settings.url)
            channel.ready()
            await channel.await_line()
            oban = Oban(pool=pool, queues={QUEUE: settings.concurrency})
            await oban.start()
            await channel.await_line()
            await oban.stop()
            await pool.close()

        channel.run(main(), self)


LIBRARIES: dict[str, Library] = {
    library.key: library
    for library in (Jobsaga(), JobsagaSqlite(), Procrastinate(), Pgqueuer(), Oban())
}
