"""jobsaga against its Python peers on PostgreSQL: procrastinate, pgqueuer and oban (oban-py).

    python bench/bench_peers.py [--jobs N] [--repeat K] [--only jobsaga,oban,...]

The peers come with the ``bench`` extra (``pip install -e '.[bench]'``; oban needs Python
3.12). All libraries run in the same invocation against the same PostgreSQL server
(``$JOBSAGA_BENCH_PG_URL``, default the test database), each measurement in a database of
its own, created empty and dropped afterwards. For each library, in jobs per second:

- ``insert one by one``: N jobs, one call of the library's insert API each;
- ``insert bulk``: N jobs in one call of its batch API ("n/a" without one);
- ``process``: N jobs inserted beforehand (and the tables analysed), then one worker process
  with concurrency 10 and an ``async`` no-op task, timed from the worker's start until the
  library's own tables show every job completed (the worker runs in a child process started,
  imported and connected before the clock starts), on the event loop the library's own
  worker command uses (``--loop asyncio``: plain asyncio for all).

Repeats are interleaved (each round measures every library in turn) and the table gives the
median, the range and the ratio peer / jobsaga of the medians. A library that cannot be
imported or fails is reported as ``error: ...`` and the others go on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from functools import cache
from typing import IO, Any, ClassVar

import psycopg
from bench_jobs import AsyncNoop
from common import CONCURRENCY, atimed, fresh_pg_database, spread, timed

from jobsaga import App

POLL_INTERVAL = 0.02
"""How often the parent looks at the library's tables while a worker runs (seconds)."""
QUEUE = "bench"

Progress = Callable[[], tuple[int, int]]
"""Returns (jobs not yet completed, jobs completed) as the library's tables show them."""


class PeerError(Exception):
    """A measurement that could not be made; its message goes in the table."""


async def each(awaitables: Iterable[Awaitable[Any]]) -> None:
    """Await one after the other (a generator keeps the coroutines from being made early)."""
    for awaitable in awaitables:
        await awaitable


@contextlib.contextmanager
def sql_progress(url: str, query: str) -> Iterator[Progress]:
    """A progress reader running ``query`` (one row: unfinished, completed) on its own connection."""
    with psycopg.connect(url, autocommit=True) as conn:

        def read() -> tuple[int, int]:
            row = conn.execute(query).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        yield read


class Peer:
    """One library: how it inserts, how it runs a worker, and how its tables show progress."""

    name: ClassVar[str]
    distribution: ClassVar[str]
    modules: ClassVar[tuple[str, ...]]
    loop: ClassVar[str] = "asyncio"
    """The event loop its own worker command runs on ("uvloop" when that is importable)."""

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def check(self) -> None:
        """Import the library, so that a missing or broken install fails before any run."""
        for module in self.modules:
            __import__(module)

    def insert_one_by_one(self, url: str, n: int) -> float:
        raise NotImplementedError

    def insert_bulk(self, url: str, n: int) -> float | None:
        """Seconds for one batch insert of ``n`` jobs, or None if the library has no batch API."""
        raise NotImplementedError

    def prepare(self, url: str, n: int) -> None:
        """Install the schema and insert ``n`` jobs for the worker (not timed)."""
        self.insert_bulk(url, n)

    def progress(self, url: str) -> contextlib.AbstractContextManager[Progress]:
        raise NotImplementedError

    def serve(self, url: str, channel: Channel) -> None:
        """In the child process: get ready, start a worker on "go", stop it on "stop"."""
        raise NotImplementedError


class Channel:
    """The child's side of the start/stop handshake with the parent (lines on stdin/stdout)."""

    def __init__(self, out: IO[str], loop: str) -> None:
        self.out = out
        self.loop = loop

    def ready(self) -> None:
        self.out.write("ready\n")
        self.out.flush()

    def wait(self) -> None:
        sys.stdin.readline()

    async def await_line(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    def run(self, main: Coroutine[Any, Any, None], peer: Peer) -> None:
        """Run the worker's coroutine on the loop the library's own worker command uses."""
        if self.loop == "native" and peer.loop == "uvloop":
            try:
                import uvloop
            except ImportError:
                pass
            else:
                uvloop.run(main)
                return
        asyncio.run(main)


# --- jobsaga ----------------------------------------------------------------------------


class Jobsaga(Peer):
    name = "jobsaga"
    distribution = "jobsaga"
    modules = ("jobsaga",)

    def _app(self, url: str) -> App:
        app = App(url, workers=[AsyncNoop])
        app.migrate()
        return app

    def insert_one_by_one(self, url: str, n: int) -> float:
        with self._app(url) as app:
            specs = [AsyncNoop.new({"n": i}) for i in range(n)]
            return timed(lambda: [app.insert(spec) for spec in specs])

    def insert_bulk(self, url: str, n: int) -> float:
        with self._app(url) as app:
            specs = [AsyncNoop.new({"n": i}) for i in range(n)]
            return timed(lambda: app.insert_all(specs))

    @contextlib.contextmanager
    def progress(self, url: str) -> Iterator[Progress]:
        with App(url, workers=[AsyncNoop]) as app:

            def read() -> tuple[int, int]:
                counts = app.engine.queue_counts().get("async", {})
                done = counts.get("completed", 0)
                return sum(counts.values()) - done, done

            yield read

    def serve(self, url: str, channel: Channel) -> None:
        with App(url, workers=[AsyncNoop]) as app:
            app.engine.queue_counts()  # the connection pool is open before the clock starts
            channel.ready()
            channel.wait()
            with app.node({"async": CONCURRENCY}).start_in_thread():
                channel.wait()


# --- procrastinate ----------------------------------------------------------------------


def procrastinate_app(url: str, **pool: Any) -> tuple[Any, Any]:
    import procrastinate

    # It warns that an app made in __main__ cannot be imported by its worker command; the
    # worker here runs this same code, so that does not apply.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url, **pool))

    @app.task(name="bench.noop", queue=QUEUE)
    async def noop(n: int) -> None:
        return None

    return app, noop


class Procrastinate(Peer):
    name = "procrastinate"
    distribution = "procrastinate"
    modules = ("procrastinate",)

    def insert_one_by_one(self, url: str, n: int) -> float:
        async def main() -> float:
            app, noop = procrastinate_app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                return await atimed(lambda: each(noop.defer_async(n=i) for i in range(n)))

        return asyncio.run(main())

    def insert_bulk(self, url: str, n: int) -> float:
        async def main() -> float:
            app, noop = procrastinate_app(url)
            async with app.open_async():
                await app.schema_manager.apply_schema_async()
                args = [{"n": i} for i in range(n)]
                return await atimed(lambda: noop.batch_defer_async(*args))

        return asyncio.run(main())

    def progress(self, url: str) -> contextlib.AbstractContextManager[Progress]:
        return sql_progress(
            url,
            "SELECT count(*) FILTER (WHERE status <> 'succeeded'),"
            " count(*) FILTER (WHERE status = 'succeeded') FROM procrastinate_jobs",
        )

    def serve(self, url: str, channel: Channel) -> None:
        async def main() -> None:
            # Its docs: for short jobs, a pool with as many connections as the concurrency
            # (the LISTEN connection is outside the pool).
            app, _ = procrastinate_app(url, min_size=CONCURRENCY, max_size=CONCURRENCY)
            async with app.open_async():
                channel.ready()
                await channel.await_line()
                worker = asyncio.create_task(
                    app.run_worker_async(queues=[QUEUE], concurrency=CONCURRENCY)
                )
                await channel.await_line()
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

        channel.run(main(), self)


# --- pgqueuer ---------------------------------------------------------------------------


class Pgqueuer(Peer):
    name = "pgqueuer"
    distribution = "pgqueuer"
    modules = ("pgqueuer", "asyncpg")
    loop = "uvloop"

    async def _queries(self, url: str) -> tuple[Any, Any]:
        import asyncpg
        from pgqueuer import Queries

        conn = await asyncpg.connect(url)
        queries = Queries.from_asyncpg_connection(conn)
        await queries.install()
        return conn, queries

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

    def progress(self, url: str) -> contextlib.AbstractContextManager[Progress]:
        # A finished job leaves the queue table; its final status is logged in pgqueuer_log.
        return sql_progress(
            url,
            "SELECT (SELECT count(*) FROM pgqueuer),"
            " (SELECT count(*) FROM pgqueuer_log WHERE status = 'successful')",
        )

    def serve(self, url: str, channel: Channel) -> None:
        async def main() -> None:
            import asyncpg
            from pgqueuer import PgQueuer

            # Its docs: a dedicated asyncpg connection for the QueueManager.
            conn = await asyncpg.connect(url)
            pgq = PgQueuer.from_asyncpg_connection(conn)

            @pgq.entrypoint(QUEUE)
            async def noop(job: Any) -> None:
                return None

            channel.ready()
            await channel.await_line()
            # max_concurrent_tasks caps the jobs picked by this worker (it must be at least
            # twice batch_size); without it a worker takes as many jobs as it can fetch.
            worker = asyncio.create_task(
                pgq.run(batch_size=CONCURRENCY // 2, max_concurrent_tasks=CONCURRENCY)
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
        return None


@cache
def oban_worker() -> Any:
    from oban import worker

    return worker(queue=QUEUE)(ObanNoop)


class Oban(Peer):
    name = "oban"
    distribution = "oban"
    modules = ("oban",)
    loop = "uvloop"

    def check(self) -> None:
        if sys.version_info < (3, 12):
            raise PeerError("oban-py needs Python >= 3.12")
        super().check()

    def _measure(self, url: str, n: int, bulk: bool) -> float:
        async def main() -> float:
            from oban import Oban
            from oban.schema import install

            pool = await Oban.create_pool(url)
            try:
                await install(pool)
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

    def progress(self, url: str) -> contextlib.AbstractContextManager[Progress]:
        return sql_progress(
            url,
            "SELECT count(*) FILTER (WHERE state <> 'completed'),"
            " count(*) FILTER (WHERE state = 'completed') FROM oban_jobs",
        )

    def serve(self, url: str, channel: Channel) -> None:
        async def main() -> None:
            from oban import Oban

            oban_worker()
            pool = await Oban.create_pool(url)
            channel.ready()
            await channel.await_line()
            oban = Oban(pool=pool, queues={QUEUE: CONCURRENCY})
            await oban.start()
            await channel.await_line()
            await oban.stop()
            await pool.close()

        channel.run(main(), self)


PEERS: dict[str, Peer] = {
    peer.name: peer for peer in (Jobsaga(), Procrastinate(), Pgqueuer(), Oban())
}

# --- the parent side --------------------------------------------------------------------


def last_line(stream: IO[str]) -> str:
    stream.seek(0)
    lines = [line.strip() for line in stream.read().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def process(peer: Peer, url: str, n: int, loop: str, timeout: float) -> float:
    """Seconds from telling a ready worker process to start until all ``n`` jobs completed."""
    command = [sys.executable, os.path.abspath(__file__), "--serve", peer.name, "--url", url]
    command += ["--loop", loop]
    with tempfile.TemporaryFile("w+") as errors, peer.progress(url) as progress:
        child = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert child.stdin is not None and child.stdout is not None

        def send(line: str) -> None:
            assert child.stdin is not None
            child.stdin.write(line + "\n")
            child.stdin.flush()

        try:
            readable, _, _ = select.select([child.stdout], [], [], 60)
            if not readable or child.stdout.readline().strip() != "ready":
                child.kill()
                child.wait()
                raise PeerError(f"worker did not start: {last_line(errors)}")
            started = time.perf_counter()
            send("go")
            while (left := progress()[0]) > 0:
                if child.poll() is not None:
                    raise PeerError(f"worker exited ({child.returncode}): {last_line(errors)}")
                if time.perf_counter() - started > timeout:
                    raise PeerError(f"timed out after {timeout:.0f}s, {left} jobs left")
                time.sleep(POLL_INTERVAL)
            took = time.perf_counter() - started
            send("stop")
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                raise PeerError(f"worker did not stop: {last_line(errors)}") from None
            completed = progress()[1]
            if completed != n:
                raise PeerError(f"{completed} of {n} jobs completed: {last_line(errors)}")
            return took
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()


PHASES = ("insert one by one", "insert bulk", f"process, concurrency {CONCURRENCY}")


def measure(peer: Peer, phase: str, n: int, loop: str) -> float | None:
    """Jobs per second for one phase in a fresh database; None when the library lacks the API."""
    with fresh_pg_database(peer.name) as url:
        if phase == PHASES[0]:
            took: float | None = peer.insert_one_by_one(url, n)
        elif phase == PHASES[1]:
            took = peer.insert_bulk(url, n)
        else:
            peer.prepare(url, n)
            with psycopg.connect(url, autocommit=True) as conn:
                # Statistics as autovacuum would have them on a live server: on a table never
                # analysed, some fetch queries are planned as a sort of every waiting job.
                conn.execute("ANALYZE")
            took = process(peer, url, n, loop, timeout=120 + n / 50)
        if took is not None and phase != PHASES[2]:
            with peer.progress(url) as progress:
                if sum(progress()) != n:
                    raise PeerError(f"{sum(progress())} jobs stored, {n} expected")
    return None if took is None else n / took


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}"[:90] if message else type(error).__name__


Cell = list[float] | str
"""Jobs per second of each run, or "n/a", or "error: <one line>"."""


def run(names: list[str], n: int, repeat: int, loop: str) -> dict[tuple[str, str], Cell]:
    results: dict[tuple[str, str], Cell] = {}
    broken: dict[str, str] = {}
    for name in names:
        try:
            PEERS[name].check()
        except Exception as error:  # reported in the table, the others go on
            broken[name] = f"error: {one_line(error)}"
    for round_ in range(1, repeat + 1):
        for name in names:
            for phase in PHASES:
                key = (name, phase)
                if name in broken:
                    results[key] = broken[name]
                    continue
                if isinstance(results.get(key), str):
                    continue  # n/a, or failed in an earlier round
                try:
                    rate = measure(PEERS[name], phase, n, loop)
                except Exception as error:
                    results[key] = f"error: {one_line(error)}"
                    print(f"round {round_} {name:<13} {phase:<24} {results[key]}", file=sys.stderr)
                    continue
                if rate is None:
                    results[key] = "n/a"
                    continue
                rates = results.setdefault(key, [])
                assert isinstance(rates, list)
                rates.append(rate)
                print(f"round {round_} {name:<13} {phase:<24} {rate:>8.0f} jobs/s", file=sys.stderr)
    return results


def table(names: list[str], results: dict[tuple[str, str], Cell]) -> list[str]:
    lines = [
        f"{'phase':<24} {'library':<14} {'jobs/s':>8}  {'range':<13} {'peer/jobsaga':>12}",
    ]
    for phase in PHASES:
        base = results.get(("jobsaga", phase))
        base_median = spread(base)[0] if isinstance(base, list) and base else None
        for name in names:
            cell = results.get((name, phase), "error: not run")
            if isinstance(cell, str):
                lines.append(f"{phase:<24} {name:<14} {cell}")
                continue
            median, low, high = spread(cell)
            ratio = f"{median / base_median:.2f}x" if base_median else "n/a"
            span = f"{low:,.0f}-{high:,.0f}"
            lines.append(f"{phase:<24} {name:<14} {median:>8,.0f}  {span:<13} {ratio:>12}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase (10000)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of measurements (3)")
    parser.add_argument(
        "--only", help=f"comma-separated libraries (default: all of {','.join(PEERS)})"
    )
    parser.add_argument(
        "--loop",
        choices=["native", "asyncio"],
        default="native",
        help="worker event loop: the one each library's own worker command uses (uvloop for "
        "pgqueuer and oban when installed), or plain asyncio for all",
    )
    parser.add_argument("--serve", choices=sorted(PEERS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)

    if options.serve:  # the child process running one worker
        out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library output must not block
        sys.stdout = sys.stderr
        PEERS[options.serve].serve(options.url, Channel(out, options.loop))
        return 0

    if options.jobs < 1 or options.repeat < 1:
        parser.error("--jobs and --repeat must be >= 1")
    names = options.only.split(",") if options.only else list(PEERS)
    unknown = sorted(set(names) - set(PEERS))
    if unknown:
        parser.error(f"unknown libraries {unknown}; choose from {sorted(PEERS)}")

    started = time.perf_counter()
    results = run(names, options.jobs, options.repeat, options.loop)
    versions = ", ".join(f"{name} {PEERS[name].version()}" for name in names)
    print(f"{options.jobs} jobs per phase, {options.repeat} rounds; {versions}")
    print(f"Python {sys.version.split()[0]}, worker loop: {options.loop}")
    print("\n".join(table(names, results)))
    print(f"took {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
