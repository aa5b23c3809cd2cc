"""The phases of ``bench_peers.py`` and how each is measured (the parent's side).

A worker always runs in a child process (``bench_peers.py --serve``), started, imported and
connected before the clock starts; the parent tells it "go" and stops the clock when the
library's own tables show the jobs it waits for as completed. The parent does not poll the
database while the jobs run: the child says "performed" when its task has started the last of
them, and only then does the parent read the tables (every 2 ms) until they show them
completed. A phase that takes longer than ``--cap`` seconds stops there, and its figure is the
jobs completed by then over the time taken (marked in the table).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import IO

import psycopg
from common import CONCURRENCY, database_name, percentile
from peer_base import Library, NotApplicable, PeerError, WorkerSettings
from peer_libraries import Jobsaga, JobsagaSqlite
from psycopg import sql

SERVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_peers.py")
"""The script the worker child runs (``--serve``)."""
SETTLE = 1.0
"""Seconds a worker runs idle before the latency phase's first insert."""


@dataclass(frozen=True)
class Options:
    """Sizes and limits of a run (the command line's options)."""

    jobs: int = 10_000
    high: int = 100
    latency_jobs: int = 400
    latency_gap: float = 0.01
    backlog: int = 100_000
    backlog_timed: int = 10_000
    completed: int = 1_000_000
    sagas: int = 2_000
    cap: float = 10.0
    loop: str = "native"

    @property
    def backlog_target(self) -> int:
        return min(self.backlog_timed, self.backlog)


@dataclass(frozen=True)
class Sample:
    """One measurement: jobs (or sagas) per second, or (p50, p95, p99) in ms."""

    value: float | tuple[float, float, float]
    capped: tuple[int, int] | None = None
    """(completed, expected) when the measurement stopped at ``--cap`` seconds."""
    analysed: bool = False
    """Whether the job table had been analysed by the end of a stale-statistics phase."""

    @property
    def log(self) -> str:
        """What the round's log line adds to the figure."""
        parts = []
        if self.capped:
            parts.append(f"stopped at --cap: {self.capped[0]:,} of {self.capped[1]:,} completed")
        if self.analysed:
            parts.append("the job table was analysed during the phase")
        return f" ({'; '.join(parts)})" if parts else ""


@dataclass
class Timing:
    seconds: float
    completed: int
    capped: bool
    starts: dict[int, int] = field(default_factory=dict)


class Scratch:
    """Databases that outlive one measurement (the completed-rows templates), dropped at the
    end of the run, also on an error or Ctrl-C."""

    def __init__(self) -> None:
        self.stack = contextlib.ExitStack()
        self.templates: dict[str, tuple[str, int]] = {}

    def completed_template(self, library: Library, rows: int) -> tuple[str, int]:
        """A database with the library's schema and ``rows`` completed jobs, vacuumed and
        analysed as autovacuum would leave it (its name, and the highest job id in it)."""
        if library.key not in self.templates:
            with contextlib.ExitStack() as local:
                url = local.enter_context(library.database())
                library.install(url)
                started = time.perf_counter()
                floor = library.fill_completed(url, rows)
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute("VACUUM ANALYZE")
                took = time.perf_counter() - started
                print(
                    f"{library.label}: {rows:,} completed rows put in {took:.0f}s", file=sys.stderr
                )
                self.stack.enter_context(local.pop_all())
            self.templates[library.key] = (database_name(url), floor)
        return self.templates[library.key]

    def close(self) -> None:
        self.stack.close()


# --- the worker child -------------------------------------------------------------------


def last_line(stream: IO[str]) -> str:
    stream.seek(0)
    lines = [line.strip() for line in stream.read().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


class Child:
    """A worker process and the lines it writes (read by a thread, so none is lost)."""

    def __init__(self, settings: WorkerSettings, errors: IO[str]) -> None:
        command = [sys.executable, SERVE, "--serve", json.dumps(asdict(settings))]
        self.errors = errors
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, word: str, deadline: float) -> str | None:
        """The next line starting with ``word``, or None if ``deadline`` passes first."""
        while (left := deadline - time.perf_counter()) > 0:
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.process.wait()
                raise PeerError(
                    f"worker exited ({self.process.returncode}): {last_line(self.errors)}"
                )
            if line.startswith(word):
                return line
        return None

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise PeerError(f"worker exited ({self.process.returncode}): {last_line(self.errors)}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def run_worker(
    library: Library,
    url: str,
    options: Options,
    *,
    concurrency: int | None,
    target: int,
    cap: float,
    floor: int = 0,
    kind: str = "noop",
    record: bool = False,
    before: Callable[[], object] | None = None,
    during: Callable[[], object] | None = None,
) -> Timing:
    """Seconds from telling a ready worker to start until ``target`` jobs above ``floor`` are
    completed in the library's tables (or ``cap`` seconds have passed).

    ``before`` runs once the worker is ready, just before "go" (the deep-backlog burst);
    ``during`` right after it (the latency phase's inserts)."""
    settings = WorkerSettings(library.key, url, concurrency, target, record, kind, options.loop)
    with tempfile.TemporaryFile("w+") as errors, library.counts(url, floor) as counts:
        child = Child(settings, errors)
        try:
            if child.expect("ready", time.perf_counter() + 120) is None:
                raise PeerError(f"worker did not start: {last_line(errors)}")
            if before is not None:
                before()
            started = time.perf_counter()
            deadline = started + cap
            child.send("go")
            if during is not None:
                during()
            child.expect("performed", deadline)
            while (completed := counts()[1]) < target and time.perf_counter() < deadline:
                child.alive()
                time.sleep(0.002)
            took = time.perf_counter() - started
            child.send("stop")
            starts: dict[int, int] = {}
            if record:
                line = child.expect("starts", time.perf_counter() + 60)
                if line is None:
                    raise PeerError(f"worker did not report its starts: {last_line(errors)}")
                starts = {int(n): at for n, at in json.loads(line.split(" ", 1)[1]).items()}
            try:
                child.process.wait(60)
            except subprocess.TimeoutExpired:
                raise PeerError(f"worker did not stop: {last_line(errors)}") from None
            return Timing(took, completed, completed < target, starts)
        finally:
            child.kill()


# --- conditions -------------------------------------------------------------------------


def analyze(library: Library, url: str) -> None:
    """Statistics as autovacuum would have them on a live server (PostgreSQL): on a table
    never analysed, some fetch queries are planned as a sort of every waiting job."""
    if library.engine == "postgres":
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")


def stale_statistics(library: Library, url: str) -> None:
    """Keep autovacuum from analysing the library's job tables during the phase, so that
    their statistics stay those of the empty tables (PostgreSQL; SQLite has no such thing)."""
    if library.engine != "postgres":
        return
    with psycopg.connect(url, autocommit=True) as conn:
        for table in library.job_tables:
            conn.execute(
                sql.SQL(
                    "ALTER TABLE {} SET (autovacuum_enabled = false,"
                    " toast.autovacuum_enabled = false)"
                ).format(sql.Identifier(table))
            )


def was_analysed(library: Library, url: str) -> bool:
    """Whether anything (the library, or autovacuum despite the setting) analysed one of the
    library's job tables: the stale-statistics phase would then measure something else."""
    if library.engine != "postgres":
        return False
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname = ANY(%s)"
            " AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
            (list(library.job_tables),),
        ).fetchone()
    return bool(row and row[0])


def check_completed(library: Library, url: str, n: int, floor: int = 0) -> None:
    with library.counts(url, floor) as counts:
        unfinished, completed = counts()
    if completed != n or unfinished:
        raise PeerError(f"{completed} of {n} jobs completed, {unfinished} not")


def check_stored(library: Library, url: str, n: int) -> None:
    with library.counts(url) as counts:
        stored = sum(counts())
    if stored != n:
        raise PeerError(f"{stored} jobs stored, {n} expected")


def rate(timing: Timing, target: int, analysed: bool = False) -> Sample:
    capped = (timing.completed, target) if timing.capped else None
    return Sample(timing.completed / timing.seconds, capped, analysed)


@contextlib.contextmanager
def queued(library: Library, n: int) -> Iterator[str]:
    """A fresh database with ``n`` jobs inserted in bulk and analysed (not timed)."""
    with library.database() as url:
        library.install(url)
        if library.insert_bulk(url, n) is None:
            library.insert_one_by_one(url, n)
        analyze(library, url)
        yield url


# --- the phases -------------------------------------------------------------------------


def insert_one_by_one(library: Library, options: Options, scratch: Scratch) -> Sample:
    with library.database() as url:
        library.install(url)
        took = library.insert_one_by_one(url, options.jobs)
        check_stored(library, url, options.jobs)
    return Sample(options.jobs / took)


def insert_bulk(library: Library, options: Options, scratch: Scratch) -> Sample:
    with library.database() as url:
        library.install(url)
        took = library.insert_bulk(url, options.jobs)
        if took is None:
            raise NotApplicable(f"{library.label} has no batch insert")
        check_stored(library, url, options.jobs)
    return Sample(options.jobs / took)


def process(library: Library, options: Options, scratch: Scratch) -> Sample:
    n = options.jobs
    with queued(library, n) as url:
        timing = run_worker(
            library, url, options, concurrency=CONCURRENCY, target=n, cap=options.cap
        )
        if not timing.capped:
            check_completed(library, url, n)
    return rate(timing, n)


def high_concurrency(library: Library, options: Options) -> int | None:
    if isinstance(library, Jobsaga):
        return options.high
    if library.uncapped:
        return None
    raise NotApplicable(
        f"{library.label}: no default without a cap on jobs in flight (its row at "
        f"{CONCURRENCY} in flight is above)"
    )


def process_high(library: Library, options: Options, scratch: Scratch) -> Sample:
    n = options.jobs
    concurrency = high_concurrency(library, options)
    with queued(library, n) as url:
        timing = run_worker(
            library, url, options, concurrency=concurrency, target=n, cap=options.cap
        )
        if not timing.capped:
            check_completed(library, url, n)
    return rate(timing, n)


def latency(library: Library, options: Options, scratch: Scratch) -> Sample:
    n, gap = options.latency_jobs, options.latency_gap
    timeout = SETTLE + n * (gap + 0.1) + 60
    with library.database() as url:
        library.install(url)
        if isinstance(library, JobsagaSqlite):
            called, starts = library.latency_in_process(url, n, gap, SETTLE, timeout)
        else:
            called = {}

            def insert() -> None:
                time.sleep(SETTLE)
                called.update(library.timed_inserts(url, n, gap))

            timing = run_worker(
                library,
                url,
                options,
                concurrency=CONCURRENCY,
                target=n,
                cap=timeout,
                record=True,
                during=insert,
            )
            starts = timing.starts
    missing = len(set(called) - set(starts))
    if missing or not called:
        raise PeerError(f"{missing} of {n} jobs did not start")
    waits = [(starts[i] - called[i]) / 1e6 for i in called]
    return Sample((percentile(waits, 0.50), percentile(waits, 0.95), percentile(waits, 0.99)))


def backlog(library: Library, options: Options, scratch: Scratch) -> Sample:
    target = options.backlog_target
    with library.database() as url:
        library.install(url)
        stale_statistics(library, url)

        def burst() -> None:
            if library.insert_bulk(url, options.backlog) is None:
                raise NotApplicable(f"{library.label} has no batch insert")

        timing = run_worker(
            library,
            url,
            options,
            concurrency=CONCURRENCY,
            target=target,
            cap=options.cap,
            before=burst,
        )
        analysed = was_analysed(library, url)
    return rate(timing, target, analysed)


def completed_rows(library: Library, options: Options, scratch: Scratch) -> Sample:
    n = options.jobs
    if library.engine != "postgres":
        raise NotApplicable(f"{library.label}: the completed-rows phase is PostgreSQL only")
    template, floor = scratch.completed_template(library, options.completed)
    with library.database(template) as url:
        if library.insert_bulk(url, n) is None:
            library.insert_one_by_one(url, n)
        analyze(library, url)
        timing = run_worker(
            library, url, options, concurrency=CONCURRENCY, target=n, cap=options.cap, floor=floor
        )
        if not timing.capped:
            check_completed(library, url, n, floor)
    return rate(timing, n)


def sagas(library: Library, options: Options, scratch: Scratch) -> Sample:
    if not isinstance(library, Jobsaga):
        raise NotApplicable(f"{library.label} has no sagas")
    if library.engine != "postgres":
        raise NotApplicable("jobsaga (sqlite): the saga phase is PostgreSQL only")
    n = options.sagas
    with library.database() as url:
        library.install(url)
        library.insert_sagas(url, n)
        analyze(library, url)
        timing = run_worker(
            library, url, options, concurrency=CONCURRENCY, target=n, cap=options.cap, kind="saga"
        )
        if not timing.capped:
            check_completed(library, url, n)
    return rate(timing, n)


Measure = Callable[[Library, Options, Scratch], Sample]


@dataclass(frozen=True)
class Phase:
    key: str
    """Its name for ``--phases``."""
    title: Callable[[Options], str]
    measure: Measure
    unit: str = "jobs/s"
    row: Callable[[Library, Options], str] = lambda library, options: library.label
    """The library's name on this phase's line."""


def high_row(library: Library, options: Options) -> str:
    if isinstance(library, Jobsaga):
        return f"{library.label}, {options.high} in flight"
    return f"{library.label} (uncapped)" if library.uncapped else library.label


PHASES: dict[str, Phase] = {
    phase.key: phase
    for phase in (
        Phase("insert", lambda o: "insert one by one", insert_one_by_one),
        Phase("bulk", lambda o: f"insert bulk ({o.jobs:,})", insert_bulk),
        Phase("process", lambda o: f"process, {CONCURRENCY} in flight", process),
        Phase(
            "process-high",
            lambda o: "process, own choice: jobsaga's concurrency vs pgqueuer uncapped",
            process_high,
            row=high_row,
        ),
        Phase(
            "latency",
            lambda o: f"insert-to-start, idle worker ({o.latency_jobs} jobs)",
            latency,
            unit="ms p50/p95/p99",
        ),
        Phase(
            "backlog",
            lambda o: f"deep backlog: first {o.backlog_target:,} of a {o.backlog:,} burst",
            backlog,
        ),
        Phase(
            "completed",
            lambda o: f"process with {o.completed:,} completed rows",
            completed_rows,
        ),
        Phase("saga", lambda o: f"4-step saga jobs, {CONCURRENCY} in flight", sagas, "sagas/s"),
    )
}
