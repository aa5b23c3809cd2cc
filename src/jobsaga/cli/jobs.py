"""``jobsaga jobs ...``: list, show, count, cancel, retry, delete and prune jobs from the
terminal (how one job is shown lives in ``job_view.py``).

Bulk forms take the same filters as ``list`` (state, queue, worker, tag, since/until). They
count first what the change applies to (a cancel does not apply to a completed job), say so
and stop when that is nothing, and otherwise ask before acting unless given ``--yes`` or job
ids. They change jobs a batch at a time (a progress bar on a terminal), each batch committed
before the next: stopped midway, the jobs already reported are done. Named ids that could not
be changed are listed (no such job, or the state each is in) and make the exit status 1.
``prune`` is the pruner's rule by hand, with the same count, prompt, batches and Ctrl-C.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, TypeVar

import click

from ..app import App
from ..errors import FilterError
from ..job import Job, JobState
from ..operations import JobFilter
from ..operations.filters import TIME_FIELDS
from ..operations.jobs import ELIGIBLE, BulkKind, JobOperations, Preview
from ..workflow.records import list_runs
from .configured import AppSource
from .job_view import echo_job, job_json, run_summary_json
from .options import NO_LIMIT, config_options, limit_option
from .progress import progress
from .tables import (
    TIME_ZONE,
    Cell,
    Column,
    clock,
    echo_json_lines,
    echo_table,
    on_terminal,
    relative,
    state_cell,
    time_header,
    when,
)

F = TypeVar("F", bound=Callable[..., Any])
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
BULK_BATCH = 1000
"""Jobs changed per transaction by the bulk commands: small enough that a batch commits in
well under a second and progress moves, large enough that thousands take few round trips."""
IDS_SHOWN = 20
"""A bulk command's summary lists the ids it changed up to this many; beyond, only the count."""
WHEN_FIELD = {
    "available": "scheduled_at",
    "scheduled": "scheduled_at",
    "retryable": "scheduled_at",
    "executing": "attempted_at",
    "completed": "completed_at",
    "discarded": "discarded_at",
    "cancelled": "cancelled_at",
}
"""The time ``jobs list`` shows for a job in each state: the next run for a job that waits
(scheduled, retryable) or since when it is due (available), when its attempt started
(executing), when it ended (completed, discarded, cancelled)."""


def parse_time(value: str | None, now: datetime, option: str | None = None) -> datetime | None:
    """``90s``/``15m``/``2h``/``7d`` ago, or an ISO 8601 time (UTC when it has no offset).

    A bad value is a usage error naming ``option`` (``--until``) and the value: a word
    (``yesterday``), a duration reaching before year 1 (``99999999999d``, not an
    OverflowError from the date arithmetic), or a time out of range once in UTC."""
    if value is None:
        return None
    hint = None if option is None else f"'{option}'"  # quoted as click quotes its own
    found = DURATION.match(value.strip())
    if found:
        try:
            return now - timedelta(seconds=float(found.group(1)) * UNITS[found.group(2)])
        except (OverflowError, ValueError):
            raise click.BadParameter(
                f"{value!r} reaches back before year 1; give a shorter duration",
                param_hint=hint,
            ) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a duration ago (90s, 15m, 2h, 7d) or an ISO time "
            "(2026-11-28T09:00:00+00:00)",
            param_hint=hint,
        ) from None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        raise click.BadParameter(f"{value!r} is out of range in UTC", param_hint=hint) from None


def _check_time(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Refuse a bad ``--since``/``--until`` at once, before any database is opened (click
    names the option); the value is kept as given and resolved against the app's clock
    later."""
    parse_time(value, datetime.now(UTC))
    return value


def filter_options(fn: F) -> F:
    options = [
        click.option(
            "--state",
            "states",
            multiple=True,
            type=click.Choice([s.value for s in JobState]),
            help="Repeat for several.",
        ),
        click.option("--queue", "queues", multiple=True, help="Repeat for several."),
        click.option("--worker", "workers", multiple=True, help="Worker name; repeatable."),
        click.option("--tag", "tags", multiple=True, help="Jobs carrying every tag given."),
        click.option(
            "--since",
            default=None,
            callback=_check_time,
            help="At or after: 2h (ago) or an ISO time.",
        ),
        click.option(
            "--until", default=None, callback=_check_time, help="Before: 30m (ago) or an ISO time."
        ),
        click.option(
            "--time-field",
            type=click.Choice(TIME_FIELDS),
            default="inserted_at",
            show_default=True,
            help="Which time --since/--until look at.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def build_filter(app: App, ids: tuple[int, ...], **given: Any) -> JobFilter:
    now = app.now()
    try:
        return JobFilter(
            ids=ids or None,
            state=given["states"] or None,
            queue=given["queues"] or None,
            worker=given["workers"] or None,
            tags=given["tags"] or None,
            since=parse_time(given["since"], now, "--since"),
            until=parse_time(given["until"], now, "--until"),
            time_field=given["time_field"],
        )
    except (ValueError, FilterError) as exc:
        raise click.UsageError(f"invalid filter: {exc}") from None


JOB_COLUMNS = [
    Column("ID", "right"),
    Column("STATE"),
    Column("QUEUE", max_width=64),
    Column("WORKER", max_width=80),
    Column("TRY", "right"),
    Column(time_header("WHEN")),
    Column("LAST ERROR", max_width=60),
]


def job_when(job: Job[Any]) -> datetime:
    """The moment :data:`WHEN_FIELD` picks for the job's state (inserted_at if unset)."""
    moment = getattr(job, WHEN_FIELD.get(job.state.value, "inserted_at"), None)
    return moment if moment is not None else job.inserted_at


def last_error(job: Job[Any]) -> str:
    """The last attempt's error, its first line (a line break would break the row; ``jobs
    show`` has the whole), with `` …`` when more lines follow."""
    if not job.errors:
        return ""
    lines = str(job.errors[-1].get("error", "")).strip().splitlines() or [""]
    return lines[0].rstrip() + (" …" if len(lines) > 1 else "")


def job_row(job: Job[Any], now: datetime) -> list[Any]:
    return [
        job.id,
        state_cell(job.state.value),
        job.queue,
        job.worker,
        f"{job.attempt}/{job.max_attempts}",
        when(job_when(job), now),
        last_error(job),
    ]


def jobs_commands(cli: click.Group) -> None:
    @cli.group()
    def jobs() -> None:
        """List, inspect, cancel, retry and delete jobs."""

    @jobs.command("list")
    @config_options
    @filter_options
    @limit_option
    @click.option("--oldest-first", is_flag=True, help="Oldest first (default newest first).")
    @click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
    def list_jobs(
        source: AppSource, limit: int, oldest_first: bool, as_json: bool, **given: Any
    ) -> None:
        """Jobs matching the filters, newest first.

        WHEN is the next run for scheduled and retryable jobs, since when an available job
        is due, when an executing one started, and when a finished one ended; in UTC."""
        with source.open() as app:
            flt = build_filter(app, (), **given)
            found = app.list_jobs(
                flt,
                limit=None if limit == NO_LIMIT else limit,
                newest_first=not oldest_first,
            )
            total = len(found)
            if limit != NO_LIMIT and len(found) >= limit:
                total = sum(app.count_jobs(flt).values())
            now = app.now()
        if as_json:
            echo_json_lines([job_json(job) for job in found], total=total)
            return
        if not found:
            click.echo("no jobs match")
            return
        rows = [job_row(job, now) for job in found]
        columns = JOB_COLUMNS
        if on_terminal() and not any(row[-1] for row in rows):
            # an empty LAST ERROR column would only take room a worker's name needs; piped,
            # the columns stay the same whatever the rows hold
            columns, rows = columns[:-1], [row[:-1] for row in rows]
        echo_table(columns, rows, total=total)

    @jobs.command("show")
    @config_options
    @click.option("--json", "as_json", is_flag=True)
    @click.option("-v", "--verbose", is_flag=True, help="Tracebacks with every frame.")
    @click.argument("job_id", type=int)
    def show(source: AppSource, as_json: bool, verbose: bool, job_id: int) -> None:
        """Show one job with its errors and its saga runs (times in UTC).

        An error repeated by consecutive attempts is shown once, counted, with the last
        traceback; jobsaga's own frames are folded (-v shows them)."""
        with source.open() as app:
            job = app.get_job(job_id)
            runs = (
                list_runs(app, job_id=job_id, top_level=True, limit=None) if job is not None else []
            )
            now = app.now()
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        if as_json:
            click.echo(
                json.dumps({**job_json(job), "runs": [run_summary_json(r) for r in runs]}, indent=2)
            )
            return
        # `jobsaga -v jobs show` (the group's logging flag) means the same as `jobs show -v`
        verbose = verbose or bool(click.get_current_context().find_root().params.get("verbose"))
        echo_job(job, runs, now, verbose=verbose, same_database=source.flags_text())

    @jobs.command("counts")
    @config_options
    def counts(source: AppSource) -> None:
        """Jobs per queue and state."""
        with source.open() as app:
            found = app.engine.queue_counts()
        if not found:
            click.echo("no jobs")
            return
        states = [s.value for s in JobState]
        columns = [Column("QUEUE", max_width=64)]
        columns += [Column(state.upper(), "right") for state in states]
        columns.append(Column("TOTAL", "right"))
        rows: list[list[Cell]] = [
            [queue, *(by_state.get(s, 0) for s in states), sum(by_state.values())]
            for queue, by_state in sorted(found.items())
        ]
        echo_table(columns, rows)

    for action in BULK_ACTIONS:
        jobs.command(action.name, help=action.doc)(bulk_command(action))
    jobs.command("prune", help=PRUNE.doc)(prune_command)


@dataclass(frozen=True)
class BulkAction:
    """One bulk command: its name and words, and the operation that changes a batch."""

    name: BulkKind
    past: str
    gerund: str
    doc: str
    run: Callable[..., list[int]]
    with_reason: bool = False

    @property
    def eligible(self) -> tuple[str, ...]:
        return ELIGIBLE[self.name]

    def applies_to(self) -> str:
        states = list(self.eligible)
        return f"{self.name} applies only to {', '.join(states[:-1])} and {states[-1]} jobs"


def _plural(count: int, noun: str = "job") -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _matching(count: int, *, noun: bool = True) -> str:
    """``12 jobs match``, ``1 job matches`` (``12 match`` without the noun)."""
    counted = _plural(count) if noun else str(count)
    return f"{counted} {'matches' if count == 1 else 'match'}"


def _ids_text(ids: Sequence[int]) -> str:
    if not ids or len(ids) > IDS_SHOWN:
        return ""
    return " [" + ", ".join(str(i) for i in ids) + "]"


def _states_text(by_state: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in by_state.items())


def nothing_to_do(action: BulkAction, preview: Preview) -> str:
    if preview.total == 0:
        return f"nothing to {action.name}: no job matches"
    return (
        f"nothing to {action.name}: {_matching(preview.total)} "
        f"({_states_text(preview.unchangeable)}) but {action.applies_to()}"
    )


def confirm_text(action: BulkAction, preview: Preview) -> str:
    text = f"{action.name} {_plural(preview.changeable)}"
    left = preview.unchangeable
    if left:
        text += f" ({_matching(preview.total, noun=False)}; {_states_text(left)} left as they are)"
    return text + "?"


def unchanged_ids(
    action: BulkAction, ops: JobOperations, ids: Sequence[int], changed: Sequence[int]
) -> list[str]:
    """Lines naming each requested id that was not changed, and why."""
    rest = sorted(set(ids) - set(changed))
    if not rest:
        return []
    states = ops.states_of(rest)
    missing = [i for i in rest if i not in states]
    refused = [i for i in rest if i in states and states[i] not in action.eligible]
    filtered = [i for i in rest if i in states and states[i] in action.eligible]
    lines = []
    if missing:
        lines.append(f"not {action.past}: no such job: {', '.join(map(str, missing))}")
    if refused:
        listed = ", ".join(f"{i} ({states[i]})" for i in refused)
        lines.append(f"not {action.past}: {listed}: {action.applies_to()}")
    if filtered:
        lines.append(
            f"not {action.past}: {', '.join(map(str, filtered))}: "
            "not matching the other filters given"
        )
    return lines


def bulk_command(action: BulkAction) -> Any:
    def command(
        source: AppSource,
        yes: bool,
        ids: tuple[int, ...],
        reason: str | None = None,
        **given: Any,
    ) -> None:
        with source.open() as app:
            flt = build_filter(app, ids, **given)
            if flt.is_empty:
                raise click.UsageError(
                    f"give job ids or at least one filter (--state, --queue, ...): "
                    f"nothing is {action.past} without one"
                )
            ops = JobOperations(app)
            preview = ops.preview(action.name, flt)
            if not ids and preview.changeable == 0:
                click.echo(nothing_to_do(action, preview))
                return
            if not ids and not yes:
                click.confirm(confirm_text(action, preview), abort=True)
            change = functools.partial(action.run, ops, flt, reason)
            changed = _run_in_batches(action, change, preview.changeable)
            click.echo(f"{action.past}: {_plural(len(changed))}{_ids_text(changed)}")
            problems = unchanged_ids(action, ops, ids, changed) if ids else []
        for line in problems:
            click.echo(line, err=True)
        if problems:
            raise click.exceptions.Exit(1)

    decorated: Any = click.argument("ids", type=int, nargs=-1)(command)
    decorated = click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm.")(decorated)
    if action.with_reason:
        decorated = click.option(
            "--reason",
            default="cancelled from the command line",
            show_default=True,
            help="Recorded on each job.",
        )(decorated)
    decorated = filter_options(decorated)
    return config_options(decorated)


Change = Callable[..., list[int]]
"""A batched change: called with ``batch_size`` and ``on_batch`` (given each batch's ids once
committed), it returns every id changed."""


def _run_in_batches(
    action: BulkAction, change: Change, expected: int, batch_size: int | None = None
) -> list[int]:
    """Run ``change`` a batch at a time (``batch_size``, default :data:`BULK_BATCH`), with a
    bar on a terminal. Ctrl-C lets the batch under way commit and stops before the next (a
    second Ctrl-C stops at once, rolling that batch back), so the count it then prints is
    what was done; exit status 130 as a shell's."""
    done: list[int] = []

    with _stop_between_batches() as stop_asked:

        def on_batch(ids: list[int]) -> None:
            done.extend(ids)
            advance(len(ids))
            if stop_asked():
                raise KeyboardInterrupt

        try:
            with progress(action.gerund, total=expected) as advance:
                change(batch_size=batch_size or BULK_BATCH, on_batch=on_batch)
        except KeyboardInterrupt:
            click.echo(
                f"interrupted: {action.past} {_plural(len(done))} before stopping (each batch "
                f"is committed); run the command again for the rest",
                err=True,
            )
            raise click.exceptions.Exit(130) from None
    return done


@contextmanager
def _stop_between_batches() -> Iterator[Callable[[], bool]]:
    """While a bulk change runs, a first SIGINT only asks it to stop after the batch under
    way; a second raises KeyboardInterrupt as usual. (Off the main thread, where Python
    allows no signal handler, SIGINT is left as it is.)"""
    asked = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield asked.is_set
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if asked.is_set():
            raise KeyboardInterrupt
        asked.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield asked.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


BULK_ACTIONS = [
    BulkAction(
        "cancel",
        "cancelled",
        "cancelling",
        "Cancel jobs by id or filter; executing ones are stopped on their nodes.",
        lambda ops, flt, reason, **kw: ops.cancel(flt, reason=reason or "cancelled", **kw),
        with_reason=True,
    ),
    BulkAction(
        "retry",
        "retried",
        "retrying",
        "Give retryable, completed, discarded or cancelled jobs another attempt now.",
        lambda ops, flt, _, **kw: ops.retry(flt, **kw),
    ),
    BulkAction(
        "delete",
        "deleted",
        "deleting",
        "Delete jobs by id or filter (executing jobs are left alone: cancel them first).",
        lambda ops, flt, _, **kw: ops.delete(flt, **kw),
    ),
]


# --- prune -----------------------------------------------------------------------------------

PRUNE = BulkAction(
    "prune",
    "pruned",
    "pruning",
    "Delete finished jobs (completed, discarded, cancelled) older than --older-than, with "
    "their saga runs: the pruner's rule, run by hand (before a migration, or where no node "
    "prunes). Default age: prune_after; batch: prune_limit.",
    lambda ops, before, **kw: ops.prune(before, **kw),
)


def pruner_settings(source: AppSource, app: App) -> tuple[float | None, int]:
    """``prune_after`` and ``prune_limit`` as a node given the same configuration would
    prune with (a default resolved where the node keeps it)."""
    options = source.node(source.config(), app).effective_options()
    return options["prune_after"], int(options["prune_limit"])


def prune_before(given: str | None, prune_after: float | None, now: datetime) -> datetime:
    """The time a job must have finished before to be pruned: ``--older-than``, else the
    configured ``prune_after``; with neither, nothing says how old is old enough."""
    if given is not None:
        before = parse_time(given, now, "--older-than")
        assert before is not None
        return before
    if prune_after is None:
        raise click.UsageError(
            "give --older-than (e.g. 7d): prune_after is not configured (in jobsaga.toml, "
            "$JOBSAGA_PRUNE_AFTER or --set prune_after=SECONDS), so no age is the default"
        )
    return now - timedelta(seconds=prune_after)


@config_options
@click.option(
    "--older-than",
    default=None,
    callback=_check_time,
    metavar="AGE",
    help="Jobs that finished this long ago or more (90m, 12h, 7d) or before an ISO time. "
    "Default: the configured prune_after.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Jobs deleted per transaction. Default: the configured prune_limit.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm.")
def prune_command(source: AppSource, older_than: str | None, batch: int | None, yes: bool) -> None:
    with source.open() as app:
        prune_after, prune_limit = pruner_settings(source, app)
        now = app.now()
        before = prune_before(older_than, prune_after, now)
        since = f"finished before {clock(before)} {TIME_ZONE} ({relative(before, now)})"
        ops = JobOperations(app)
        preview = ops.preview_prune(before)
        if preview.total == 0:
            click.echo(f"nothing to prune: no job {since}")
            return
        if not yes:
            found = {s: preview.matched[s] for s in PRUNE.eligible if preview.matched.get(s)}
            text = f"prune {_plural(preview.total)} ({_states_text(found)}) that {since}?"
            click.confirm(text, abort=True)
        change = functools.partial(PRUNE.run, ops, before)
        pruned = _run_in_batches(PRUNE, change, preview.total, batch or prune_limit)
    gone = preview.total - len(pruned)
    note = f" ({gone} fewer than counted: retried or pruned by another process meanwhile)"
    shown = f"pruned: {_plural(len(pruned))}{_ids_text(sorted(pruned))}"
    click.echo(shown + (note if gone > 0 else ""))
