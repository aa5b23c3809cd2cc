"""``jobsaga jobs ...``: list, show, count, cancel, retry and delete jobs from the terminal.

Bulk forms take the same filters as ``list`` (state, queue, worker, tag, since/until) and ask
for confirmation, showing how many jobs match, unless given ``--yes``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import click

from ..app import App
from ..errors import FilterError
from ..job import Job, JobState
from ..operations import JobFilter
from ..operations.filters import TIME_FIELDS
from .configured import AppSource
from .options import NO_LIMIT, config_options, limit_option

F = TypeVar("F", bound=Callable[..., Any])
DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(value: str | None, now: datetime) -> datetime | None:
    """``90s``/``15m``/``2h``/``7d`` ago, or an ISO 8601 time (UTC when it has no offset).

    A duration reaching before year 1 (``99999999999d``) is a usage error naming the value,
    not an OverflowError from the date arithmetic."""
    if value is None:
        return None
    found = DURATION.match(value.strip())
    if found:
        try:
            return now - timedelta(seconds=float(found.group(1)) * UNITS[found.group(2)])
        except (OverflowError, ValueError):
            raise click.BadParameter(
                f"{value!r} reaches back before year 1; give a shorter duration"
            ) from None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: give a duration ago (90s, 15m, 2h, 7d) or an ISO time "
            "(2026-11-28T09:00:00+00:00)"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


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
        click.option("--since", default=None, help="At or after: 2h (ago) or an ISO time."),
        click.option("--until", default=None, help="Before: 30m (ago) or an ISO time."),
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
            since=parse_time(given["since"], now),
            until=parse_time(given["until"], now),
            time_field=given["time_field"],
        )
    except (ValueError, FilterError) as exc:
        raise click.UsageError(f"invalid filter: {exc}") from None


def jobs_table(jobs: list[Job[Any]]) -> str:
    """Columns sized to what is shown; times in UTC."""
    queue_w = max(5, *(len(j.queue) for j in jobs))
    worker_w = max(6, *(len(j.worker) for j in jobs))
    lines = [
        f"{'ID':>8}  {'STATE':<10} {'QUEUE':<{queue_w}} {'WORKER':<{worker_w}} {'TRY':>5}  "
        f"{'WHEN (UTC)':<19}  LAST ERROR"
    ]
    for job in jobs:
        when = job.attempted_at or job.scheduled_at
        last = job.errors[-1]["error"] if job.errors else ""
        tries = f"{job.attempt}/{job.max_attempts}"
        lines.append(
            f"{job.id:>8}  {job.state.value:<10} {job.queue:<{queue_w}} {job.worker:<{worker_w}} "
            f"{tries:>5}  {when:%Y-%m-%d %H:%M:%S}  {last[:60]}".rstrip()
        )
    return "\n".join(lines)


def job_json(job: Job[Any]) -> dict[str, Any]:
    times = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at")
    data: dict[str, Any] = {
        "id": job.id,
        "state": job.state.value,
        "queue": job.queue,
        "worker": job.worker,
        "args": job.raw_args,
        "meta": job.meta,
        "tags": list(job.tags),
        "attempt": job.attempt,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "attempted_by": job.attempted_by,
        "errors": list(job.errors),
    }
    for name in (*times, "cancelled_at"):
        value = getattr(job, name)
        data[name] = value.isoformat() if value is not None else None
    return data


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
        """Jobs matching the filters, newest first."""
        with source.open() as app:
            found = app.list_jobs(
                build_filter(app, (), **given),
                limit=None if limit == NO_LIMIT else limit,
                newest_first=not oldest_first,
            )
        if as_json:
            for job in found:
                click.echo(json.dumps(job_json(job)))
            return
        if not found:
            click.echo("no jobs match")
            return
        click.echo(jobs_table(found))

    @jobs.command("show")
    @config_options
    @click.option("--json", "as_json", is_flag=True)
    @click.argument("job_id", type=int)
    def show(source: AppSource, as_json: bool, job_id: int) -> None:
        """Show one job with its errors."""
        with source.open() as app:
            job = app.get_job(job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        if as_json:
            click.echo(json.dumps(job_json(job), indent=2))
            return
        click.echo(f"job {job.id}  {job.worker}  queue={job.queue}  state={job.state.value}")
        click.echo(
            f"  attempt {job.attempt}/{job.max_attempts}  priority {job.priority}  "
            f"tags {list(job.tags)}"
        )
        click.echo(
            f"  inserted {job.inserted_at:%Y-%m-%d %H:%M:%S}  "
            f"scheduled {job.scheduled_at:%Y-%m-%d %H:%M:%S}"
        )
        if job.attempted_at is not None:
            click.echo(f"  attempted {job.attempted_at:%Y-%m-%d %H:%M:%S} by {job.attempted_by}")
        for label in ("completed_at", "discarded_at", "cancelled_at"):
            value = getattr(job, label)
            if value is not None:
                click.echo(f"  {label.removesuffix('_at')} {value:%Y-%m-%d %H:%M:%S}")
        click.echo(f"  args {json.dumps(job.args)}")
        if job.meta:
            click.echo(f"  meta {json.dumps(job.meta)}")
        for error in job.errors:
            click.echo(
                f"  attempt {error['attempt']} at {error['at']} "
                f"[{error.get('kind', 'error')}]: {error['error']}"
            )
            if error.get("traceback"):
                click.echo("    " + error["traceback"].rstrip().replace("\n", "\n    "))

    @jobs.command("counts")
    @config_options
    def counts(source: AppSource) -> None:
        """Jobs per queue and state."""
        with source.open() as app:
            found = app.engine.queue_counts()
        for queue, states in sorted(found.items()):
            click.echo(f"{queue}: " + ", ".join(f"{s}={n}" for s, n in sorted(states.items())))

    def bulk_command(
        name: str,
        verb: str,
        doc: str,
        act: Callable[[App, JobFilter, str | None], list[int]],
        *,
        with_reason: bool = False,
    ) -> None:
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
                        f"nothing is {verb} without one"
                    )
                if not ids and not yes:
                    matching = sum(app.count_jobs(flt).values())
                    click.confirm(f"{name} up to {matching} matching jobs?", abort=True)
                changed = act(app, flt, reason)
            click.echo(f"{verb}: {len(changed)} job(s)" + (f" {changed}" if changed else ""))
            if ids and len(changed) < len(ids):
                skipped = sorted(set(ids) - set(changed))
                click.echo(f"not {verb}: {skipped} (missing, or in a state that does not allow it)")

        decorated: Any = click.argument("ids", type=int, nargs=-1)(command)
        decorated = click.option("--yes", "-y", is_flag=True, help="Do not ask to confirm.")(
            decorated
        )
        if with_reason:
            decorated = click.option(
                "--reason",
                default="cancelled from the command line",
                show_default=True,
                help="Recorded on each job.",
            )(decorated)
        decorated = filter_options(decorated)
        decorated = config_options(decorated)
        jobs.command(name, help=doc)(decorated)

    bulk_command(
        "cancel",
        "cancelled",
        "Cancel jobs by id or filter; executing ones are stopped on their nodes.",
        lambda app, flt, reason: app.cancel_jobs(flt, reason=reason or "cancelled"),
        with_reason=True,
    )
    bulk_command(
        "retry",
        "retried",
        "Give retryable, completed, discarded or cancelled jobs another attempt now.",
        lambda app, flt, _: app.retry_jobs(flt),
    )
    bulk_command(
        "delete",
        "deleted",
        "Delete jobs by id or filter (executing jobs are left alone: cancel them first).",
        lambda app, flt, _: app.delete_jobs(flt),
    )
