"""What ``bench_peers.py``'s libraries share: the probe their tasks report to, the worker
child's side of the handshake with the parent, and the interface each library implements
(``peer_libraries.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import json
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, ClassVar

import psycopg
from common import fresh_pg_database

QUEUE = "bench"
SAGA_QUEUE = "bench_sagas"

Counts = Callable[[], tuple[int, int]]
"""Returns (jobs not yet completed, jobs completed) as the library's tables show them."""


class PeerError(Exception):
    """A measurement that could not be made; its message goes in the table."""


class NotApplicable(Exception):
    """The library cannot do what a phase asks; the message is the table's footnote."""


def now_ns() -> int:
    """CLOCK_MONOTONIC in ns: one clock for every process on the machine (Linux), so that an
    insert timed in the parent and a start timed in the worker process can be subtracted."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class Probe:
    """Counts the jobs a worker has started and, when asked, when each one started."""

    def __init__(self) -> None:
        self.target = 0
        self.count = 0
        self.starts: dict[int, int] | None = None
        self.reached: Callable[[], None] = lambda: None

    def arm(self, target: int, record: bool, reached: Callable[[], None]) -> None:
        self.target, self.count = target, 0
        self.starts = {} if record else None
        self.reached = reached

    def hit(self, n: int) -> None:
        if self.starts is not None:
            self.starts.setdefault(n, now_ns())
        self.count += 1
        if self.count == self.target:
            self.reached()


PROBE = Probe()


@dataclass(frozen=True)
class WorkerSettings:
    """What the parent asks of the worker child (passed as JSON on its command line)."""

    library: str
    url: str
    concurrency: int | None
    """Jobs in flight; None for the library's own default without a cap (pgqueuer)."""
    target: int
    """Jobs (or sagas) whose start the child reports with a "performed" line."""
    record: bool = False
    """Keep each job's start time and report them after "stop" (latency)."""
    kind: str = "noop"
    """"noop" jobs, or "saga" jobs (jobsaga only)."""
    loop: str = "native"


class Channel:
    """The child's side of the handshake with the parent: lines on stdin and stdout."""

    def __init__(self, out: IO[str], loop: str) -> None:
        self.out = out
        self.loop = loop
        self.lock = threading.Lock()

    def say(self, line: str) -> None:
        with self.lock:
            self.out.write(line + "\n")
            self.out.flush()

    def ready(self) -> None:
        self.say("ready")

    def performed(self) -> None:
        self.say("performed")

    def report(self, starts: dict[int, int]) -> None:
        self.say("starts " + json.dumps(starts))

    def wait(self) -> None:
        sys.stdin.readline()

    async def await_line(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    def run(self, main: Coroutine[Any, Any, None], library: Library) -> None:
        """Run the worker's coroutine on the loop the library's own worker command uses."""
        if self.loop == "native" and library.loop == "uvloop":
            try:
                import uvloop
            except ImportError:
                pass
            else:
                uvloop.run(main)
                return
        asyncio.run(main)


async def each(awaitables: Iterable[Awaitable[Any]]) -> None:
    """Await one after the other (a generator keeps the coroutines from being made early)."""
    for awaitable in awaitables:
        await awaitable


@contextlib.contextmanager
def sql_counts(url: str, query: str, floor: int) -> Iterator[Counts]:
    """Progress read by ``query`` (one row: unfinished, completed; ``%(floor)s`` is the
    highest id of rows put there beforehand) on a connection of its own."""
    params = {"floor": floor} if "%(floor)s" in query else None
    with psycopg.connect(url, autocommit=True) as conn:

        def read() -> tuple[int, int]:
            row = conn.execute(query, params).fetchone()
            assert row is not None
            return int(row[0]), int(row[1])

        yield read


class Library:
    """One library (or one engine of jobsaga): a row of the table."""

    key: ClassVar[str]
    """Its name for ``--only``."""
    label: ClassVar[str]
    """Its name in the table."""
    distribution: ClassVar[str]
    modules: ClassVar[tuple[str, ...]]
    loop: ClassVar[str] = "asyncio"
    """The event loop its own worker command runs on ("uvloop" when that is importable)."""
    engine: ClassVar[str] = "postgres"
    job_tables: ClassVar[tuple[str, ...]] = ()
    """Its tables of jobs, whose autovacuum the deep-backlog phase turns off."""
    counts_sql: ClassVar[str] = ""
    """(unfinished, completed) among the jobs whose id is above ``%(floor)s``."""
    uncapped: ClassVar[bool] = False
    """Whether its worker has a default without a cap on the jobs in flight."""

    def version(self) -> str:
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    def check(self) -> None:
        """Import the library, so that a missing or broken install fails before any run."""
        for module in self.modules:
            __import__(module)

    def database(self, template: str | None = None) -> contextlib.AbstractContextManager[str]:
        """A database of its own for one measurement, dropped afterwards."""
        return fresh_pg_database(self.key, template)

    def install(self, url: str) -> None:
        raise NotImplementedError

    def insert_one_by_one(self, url: str, n: int) -> float:
        """Seconds for ``n`` calls of its single insert (on an installed schema)."""
        raise NotImplementedError

    def insert_bulk(self, url: str, n: int) -> float | None:
        """Seconds for one batch insert of ``n`` jobs, or None if the library has no batch API."""
        raise NotImplementedError

    def timed_inserts(self, url: str, n: int, gap: float) -> dict[int, int]:
        """Insert job ``i`` for ``i`` in ``range(n)`` one at a time, ``gap`` seconds apart;
        returns :func:`now_ns` at each insert call."""
        raise NotImplementedError

    def counts(self, url: str, floor: int = 0) -> contextlib.AbstractContextManager[Counts]:
        return sql_counts(url, self.counts_sql, floor)

    def fill_completed(self, url: str, rows: int) -> int:
        """Put ``rows`` completed jobs in its job table by SQL; returns the highest id."""
        raise NotApplicable(f"{self.label}: not written")

    def serve(self, settings: WorkerSettings, channel: Channel) -> None:
        """In the child process: get ready, start a worker on "go", stop it on "stop"."""
        raise NotImplementedError
