"""jobsaga against its Python peers on PostgreSQL: procrastinate, pgqueuer and oban (oban-py).

    .venv/bin/python bench/bench_peers.py            # every phase, 3 rounds (~15 min here)
    .venv/bin/python bench/bench_peers.py --quick    # every phase, small sizes, 1 round
    .venv/bin/python bench/bench_peers.py --phases process,latency --only jobsaga,pgqueuer

The peers come with the ``bench`` extra (``pip install -e '.[bench]'``; oban-py needs Python
3.12 and shows as an error row without it). All libraries run in the same invocation against
the same PostgreSQL server (``$JOBSAGA_BENCH_PG_URL``, default the test database), each
measurement in a database of its own, created for it and dropped afterwards (also on an error
or Ctrl-C); jobsaga also runs on its embedded engine, a SQLite file, as the row
"jobsaga (sqlite)". The phases (``--phases``; docs/benchmarks.md says how each is made):

- ``insert``: N jobs, one call of the library's insert API each (jobs/s);
- ``bulk``: N jobs in one call of its batch API;
- ``process``: N jobs queued (and analysed), one worker process at 10 jobs in flight, async
  no-op task, timed from the worker's start until its tables show them completed;
- ``process-high``: the same at a concurrency of jobsaga's choosing (``--high``, 100) against
  pgqueuer's default, which puts no cap on the jobs in flight;
- ``latency``: insert-to-start with an idle worker, p50 / p95 / p99 in ms;
- ``backlog``: a burst of ``--backlog`` jobs (bulk API) into tables that were never analysed,
  autovacuum off for them, then the worker starts at once; the first ``--backlog-timed`` are
  timed;
- ``completed``: N jobs processed with ``--completed`` completed rows in the job table;
- ``saga``: jobsaga only, four-step saga jobs (a diamond of async no-op steps, with the run
  log) through one node (sagas/s).

Rounds are interleaved (each round measures every library in turn, phase by phase) and the
table gives the median, the range, and the ratio jobsaga / best peer of the medians. A
library that cannot be imported or fails is reported as ``error``, one that cannot do what a
phase asks as ``n/a``, each with the reason in a note, and the others go on. With
``pgbench`` installed, the server's own single-row commit rate is printed under the table.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields, replace
from types import FrameType
from typing import Any

import pgbench_ceiling
import psycopg
from common import PG_URL, spread
from peer_base import PROBE, Channel, Library, NotApplicable, WorkerSettings
from peer_libraries import LIBRARIES, Jobsaga
from peer_phases import PHASES, Options, Phase, Sample, Scratch

Cell = list[Sample] | str
"""The samples of each round, or "n/a: <reason>", or "error: <one line>"."""

QUICK = Options(
    jobs=1_000,
    latency_jobs=50,
    backlog=10_000,
    backlog_timed=2_000,
    completed=50_000,
    sagas=200,
)
"""``--quick``: every phase end to end in a few minutes (options given beside it win)."""
DEFAULT_REPEAT, QUICK_REPEAT = 3, 1
DEFAULT_PGBENCH, QUICK_PGBENCH = 3, 1


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    message = text[0] if text else ""
    return f"{type(error).__name__}: {message}"[:100] if message else type(error).__name__


def describe(sample: Sample) -> str:
    if isinstance(sample.value, tuple):
        return " / ".join(f"{v:.2f}" for v in sample.value)
    return f"{sample.value:,.0f}"


def measure(
    phase: Phase, library: Library, options: Options, scratch: Scratch, round_: int
) -> Sample | str:
    """One measurement, logged on stderr; a string ("n/a: ..." or "error: ...") when none
    could be made."""
    label = f"round {round_} {phase.key:<12} {library.label:<16}"
    began = time.perf_counter()
    try:
        sample = phase.measure(library, options, scratch)
    except NotApplicable as reason:
        return f"n/a: {reason}"
    except Exception as error:
        print(f"{label} error: {one_line(error)}", file=sys.stderr)
        return f"error: {one_line(error)}"
    took = f"[{time.perf_counter() - began:.0f}s]"
    print(f"{label} {describe(sample):>22} {phase.unit} {took}{sample.log}", file=sys.stderr)
    return sample


def run(
    phases: list[Phase],
    libraries: list[Library],
    options: Options,
    repeat: int,
    pgbench_seconds: int,
) -> tuple[dict[tuple[str, str], Cell], dict[str, list[float]], bool]:
    """Measure every phase of every library ``repeat`` times, rounds interleaved; also says
    whether the run was interrupted (Ctrl-C or SIGTERM)."""
    interrupted = False
    results: dict[tuple[str, str], Cell] = {}
    ceiling: dict[str, list[float]] = {}
    broken: dict[str, str] = {}
    for library in libraries:
        try:
            library.check()
        except Exception as error:  # reported in the table, the others go on
            broken[library.key] = f"error: {one_line(error)}"
    pgbench = pgbench_ceiling.find_pgbench() if pgbench_seconds > 0 else None
    scratch = Scratch()
    try:
        for round_ in range(1, repeat + 1):
            if pgbench is not None:
                try:
                    for name, tps in pgbench_ceiling.measure(pgbench, pgbench_seconds).items():
                        ceiling.setdefault(name, []).append(tps)
                        print(
                            f"round {round_} pgbench {name:<29} {tps:>9,.0f} tx/s", file=sys.stderr
                        )
                except Exception as error:
                    print(f"round {round_} pgbench {one_line(error)}", file=sys.stderr)
            for phase in phases:
                for library in libraries:
                    key = (phase.key, library.key)
                    if library.key in broken:
                        results[key] = broken[library.key]
                        continue
                    if isinstance(results.get(key), str):
                        continue  # n/a, or failed in an earlier round
                    found = measure(phase, library, options, scratch, round_)
                    if isinstance(found, str):
                        results[key] = found
                    else:
                        samples = results.setdefault(key, [])
                        assert isinstance(samples, list)
                        samples.append(found)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        scratch.close()
    return results, ceiling, interrupted


# --- the table --------------------------------------------------------------------------


def medians(samples: list[Sample]) -> tuple[float, ...]:
    """The median of each figure (jobs/s; or p50, p95, p99) over the rounds."""
    columns = zip(
        *[s.value if isinstance(s.value, tuple) else (s.value,) for s in samples], strict=True
    )
    return tuple(spread(list(column))[0] for column in columns)


def best_peer(
    phase: Phase, libraries: list[Library], results: dict[tuple[str, str], Cell]
) -> tuple[str, tuple[float, ...]] | None:
    """The peer with the best median (highest rate, or lowest latency per percentile)."""
    found: list[tuple[str, tuple[float, ...]]] = []
    for library in libraries:
        cell = results.get((phase.key, library.key))
        if not isinstance(library, Jobsaga) and isinstance(cell, list) and cell:
            found.append((library.key, medians(cell)))
    if not found:
        return None
    if phase.unit.startswith("ms"):
        lowest = tuple(min(m[i] for _, m in found) for i in range(len(found[0][1])))
        best = min(found, key=lambda item: item[1][0])[0]
        return best, lowest
    return max(found, key=lambda item: item[1][0])


class Notes:
    """Numbered notes under the table."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def mark(self, text: str) -> str:
        if text not in self.texts:
            self.texts.append(text)
        return f"[{self.texts.index(text) + 1}]"


def marks(row: str, title: str, cell: list[Sample], options: Options, notes: Notes) -> str:
    """The notes a figure points to: rounds stopped by --cap, tables analysed when they
    should have stayed stale."""
    found = []
    capped = [s.capped for s in cell if s.capped]
    if capped:
        counts = ", ".join(f"{done:,}" for done, _ in capped)
        found.append(
            f"{row}, {title}: stopped at --cap {options.cap:g}s in {len(capped)} of "
            f"{len(cell)} rounds, with {counts} of {capped[0][1]:,} completed; the figure is "
            "the jobs completed by then over the time taken"
        )
    analysed = sum(s.analysed for s in cell)
    if analysed:
        found.append(
            f"{row}, {title}: the job table had been analysed by the end of the phase in "
            f"{analysed} of {len(cell)} rounds (autovacuum was off for it: the library, or a "
            "setting that overrides it), so its statistics were not stale throughout"
        )
    return "".join(f" {notes.mark(text)}" for text in found)


def table(
    phases: list[Phase],
    libraries: list[Library],
    results: dict[tuple[str, str], Cell],
    options: Options,
) -> list[str]:
    notes = Notes()
    lines = [f"{'phase / library':<40} {'median':>22}  {'range of rounds':<18} jobsaga / best peer"]
    for phase in phases:
        lines.append(f"{phase.title(options)} ({phase.unit})")
        best = best_peer(phase, libraries, results)
        for library in libraries:
            cell = results.get((phase.key, library.key))
            if cell is None:
                continue
            row = f"  {phase.row(library, options):<38}"
            if isinstance(cell, str):  # "n/a: <reason>" or "error: <one line>"
                kind, text = cell.split(": ", 1)
                if kind == "error":
                    text = f"{library.label}: {text}"
                lines.append(f"{row} {kind} {notes.mark(text)}")
                continue
            middle = medians(cell)
            mark = marks(phase.row(library, options), phase.title(options), cell, options, notes)
            if len(middle) == 1:
                low, high = spread(
                    [float(s.value) for s in cell if not isinstance(s.value, tuple)]
                )[1:]
                value, span = f"{middle[0]:,.0f}{mark}", f"{low:,.0f}-{high:,.0f}"
            else:
                p50s = [s.value[0] for s in cell if isinstance(s.value, tuple)]
                value = " / ".join(f"{m:.2f}" for m in middle) + mark
                span = f"p50 {min(p50s):.2f}-{max(p50s):.2f}"
            ratio = ""
            if best is not None and isinstance(library, Jobsaga):
                ratio = (
                    " / ".join(f"{m / b:.2f}" for m, b in zip(middle, best[1], strict=True)) + "x"
                )
            elif best is not None and best[0] == library.key:
                ratio = "(best peer)"
            lines.append(f"{row} {value:>22}  {span:<18} {ratio}".rstrip())
    lines.extend(baselines(libraries, results, options))
    if notes.texts:
        lines.append("")
        lines.extend(f"[{i}] {text}" for i, text in enumerate(notes.texts, 1))
    return lines


def ratio_of(
    results: dict[tuple[str, str], Cell], a: tuple[str, str], b: tuple[str, str]
) -> str | None:
    top, bottom = results.get(a), results.get(b)
    if isinstance(top, list) and top and isinstance(bottom, list) and bottom:
        return f"{medians(top)[0] / medians(bottom)[0]:.2f}"
    return None


def baselines(
    libraries: list[Library], results: dict[tuple[str, str], Cell], options: Options
) -> list[str]:
    """Each library against its own figures: the targets compare backlog and completed rows
    with the 10-in-flight figure, and SQLite with PostgreSQL."""
    lines: list[str] = []
    for phase, title in (
        ("backlog", "deep backlog / process"),
        ("completed", f"{options.completed:,} completed rows / process"),
    ):
        found = [
            f"{library.label} {ratio}"
            for library in libraries
            if (ratio := ratio_of(results, (phase, library.key), ("process", library.key)))
        ]
        if found:
            lines.append(f"  {title}: " + ", ".join(found))
    found = [
        f"{phase} {ratio}"
        for phase in ("insert", "bulk", "process", "process-high", "backlog", "latency")
        if (ratio := ratio_of(results, (phase, "sqlite"), (phase, "jobsaga")))
    ]
    if found:
        lines.append("  jobsaga (sqlite) / jobsaga (p50 for latency): " + ", ".join(found))
    return ["", "Against its own figures (ratio of medians):", *lines] if lines else []


# --- the header ---------------------------------------------------------------------------


def jobsaga_commit() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "../src"],
            cwd=here,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown commit"
    return f"{commit or 'unknown commit'}{' + uncommitted changes in src/' if dirty else ''}"


def server() -> str:
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        autovacuum = conn.execute("SHOW autovacuum").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
    assert version and autovacuum and commit
    return (
        f"PostgreSQL {version[0]} (autovacuum {autovacuum[0]} server-wide, "
        f"synchronous_commit {commit[0]})"
    )


def load() -> str:
    return " ".join(f"{n:.2f}" for n in os.getloadavg())


def header(libraries: list[Library], options: Options, repeat: int) -> list[str]:
    versions = []
    for library in libraries:
        if library.key == "sqlite":
            continue
        version = library.version()
        if library.key == "jobsaga":
            version += f" at {jobsaga_commit()}"
        versions.append(f"{library.key} {version}")
    return [
        "; ".join(versions),
        f"Python {sys.version.split()[0]}, {server()}, {os.cpu_count()} CPUs",
        f"{options.jobs:,} jobs per phase, {repeat} round(s), medians; worker loop: "
        f"{options.loop}; --cap {options.cap:g}s",
    ]


def ceiling_lines(ceiling: dict[str, list[float]], pgbench_seconds: int) -> list[str]:
    if pgbench_seconds <= 0:
        return []
    if pgbench_ceiling.find_pgbench() is None:
        return ["pgbench ceiling: pgbench not found (PATH, /usr/lib/postgresql/*/bin)"]
    if not ceiling:
        return ["pgbench ceiling: failed (see the log above)"]
    parts = []
    for name, values in ceiling.items():
        median, low, high = spread(values)
        parts.append(f"{name} {median:,.0f} tx/s ({low:,.0f}-{high:,.0f})")
    return [
        f"pgbench ceiling, {pgbench_seconds}s each, single-row transactions: " + "; ".join(parts)
    ]


# --- the command --------------------------------------------------------------------------


def serve(raw: str) -> int:
    """The worker child: one library's worker, driven by lines on stdin (see peer_phases)."""
    settings = WorkerSettings(**json.loads(raw))
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library output must not block
    sys.stdout = sys.stderr
    channel = Channel(out, settings.loop)
    PROBE.arm(settings.target, settings.record, channel.performed)
    LIBRARIES[settings.library].serve(settings, channel)
    if settings.record:
        channel.report(PROBE.starts or {})
    return 0


def terminated(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # so that SIGTERM, too, drops the scratch databases


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = Options()

    def sized(name: str, kind: type, text: str) -> None:
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag,
            type=kind,
            help=f"{text} ({getattr(default, name)}; --quick: {getattr(QUICK, name)})",
        )

    parser.add_argument(
        "--phases", help=f"comma-separated phases (default: all of {','.join(PHASES)})"
    )
    parser.add_argument(
        "--only", help=f"comma-separated libraries (default: all of {','.join(LIBRARIES)})"
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument(
        "--repeat", type=int, help=f"rounds ({DEFAULT_REPEAT}; --quick: {QUICK_REPEAT})"
    )
    sized("jobs", int, "jobs per phase")
    sized("high", int, "jobsaga's concurrency in process-high")
    sized("latency_jobs", int, "jobs inserted one at a time in the latency phase")
    sized("latency_gap", float, "seconds between two of them")
    sized("backlog", int, "jobs in the deep-backlog burst")
    sized("backlog_timed", int, "of which the first are timed")
    sized("completed", int, "completed rows in the completed phase")
    sized("sagas", int, "saga jobs in the saga phase")
    sized("cap", float, "seconds after which a processing phase stops and reports its rate so far")
    parser.add_argument(
        "--pgbench-seconds",
        type=int,
        help=f"seconds per pgbench run, 0 to skip ({DEFAULT_PGBENCH}; --quick: {QUICK_PGBENCH})",
    )
    parser.add_argument(
        "--loop",
        choices=["native", "asyncio"],
        default="native",
        help="worker event loop: the one each library's own worker command uses (uvloop for "
        "pgqueuer and oban when installed), or plain asyncio for all",
    )
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.serve:
        return serve(args.serve)

    base = QUICK if args.quick else Options()
    given: dict[str, Any] = {
        f.name: getattr(args, f.name)
        for f in fields(Options)
        if getattr(args, f.name, None) is not None
    }
    options = replace(base, **given)
    repeat = args.repeat or (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    pgbench_seconds = args.pgbench_seconds
    if pgbench_seconds is None:
        pgbench_seconds = QUICK_PGBENCH if args.quick else DEFAULT_PGBENCH
    if (
        min(
            options.jobs, options.high, options.latency_jobs, options.backlog, options.sagas, repeat
        )
        < 1
    ):
        parser().error("sizes and --repeat must be >= 1")
    if (
        options.backlog_timed < 1
        or options.completed < 0
        or options.cap <= 0
        or options.latency_gap < 0
    ):
        parser().error(
            "--backlog-timed must be >= 1, --completed >= 0, --cap > 0, --latency-gap >= 0"
        )
    phase_keys = args.phases.split(",") if args.phases else list(PHASES)
    library_keys = args.only.split(",") if args.only else list(LIBRARIES)
    for asked, known, what in (
        (phase_keys, PHASES, "phases"),
        (library_keys, LIBRARIES, "libraries"),
    ):
        unknown = sorted(set(asked) - set(known))
        if unknown:
            parser().error(f"unknown {what} {unknown}; choose from {list(known)}")
    phases = [PHASES[key] for key in PHASES if key in phase_keys]
    libraries = [LIBRARIES[key] for key in LIBRARIES if key in library_keys]

    signal.signal(signal.SIGTERM, terminated)
    started = time.perf_counter()
    before = load()
    lines = header(libraries, options, repeat)
    print("\n".join(lines), file=sys.stderr)
    results, ceiling, stopped = run(phases, libraries, options, repeat, pgbench_seconds)
    lines.append(f"load average (1/5/15 min) before: {before}, after: {load()}")
    print("\n".join(lines))
    print("\n".join(table(phases, libraries, results, options)))
    for line in ceiling_lines(ceiling, pgbench_seconds):
        print(line)
    print(f"took {time.perf_counter() - started:.0f}s")
    if stopped:
        print("interrupted: the table shows what was measured until then")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
