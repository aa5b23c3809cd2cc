"""``jobsaga demo``: enqueue a shop's jobs and the analytics saga's jobs into an embedded
SQLite file, run one node until every job (follow-ups included) settles, and print what
became of each job and of each saga run.

What the node logs while the demo runs (a timed-out perform's warning) is part of the story,
so it is collected and printed in the demo's own output, in order, where it belongs, rather
than written to stderr whenever it happens, in the middle of a table.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from .. import demo
from ..app import App
from ..engines import embedded_url
from ..job import Job, JobSpec, JobState
from ..redaction import RedactingFilter
from ..telemetry_logging import seconds_text
from ..workflow import RunRecord, get_run, list_runs
from .tables import Cell, Column, echo_table, styled

STATE_STYLES = {"completed": "green", "discarded": "red", "cancelled": "yellow"}


def settled(app: App) -> bool:
    """Every stored job is final: a saga's follow-up is inserted with its job's completion,
    so none can appear once this holds."""
    return all(JobState(state).is_final for state, n in app.count_jobs().items() if n)


JOB_COLUMNS = (
    Column("ID", "right"),
    Column("WORKER"),
    Column("QUEUE"),
    Column("STATE"),
    Column("TRY", "right"),
    Column("NOTE", max_width=70),
)


def outcome_rows(jobs: list[Job[Any]], matched: dict[int, str]) -> list[list[Cell]]:
    """One row per stored job; ``matched`` notes the jobs a unique duplicate matched."""
    rows: list[list[Cell]] = []
    for job in jobs:
        note = job.errors[-1]["error"] if job.errors else ""
        if job.meta.get("snoozed"):
            note = f"snoozed {job.meta['snoozed']}x" + (f"; {note}" if note else "")
        if job.id in matched:
            note = "; ".join(filter(None, [matched[job.id], note]))
        state = job.state.value
        rows.append(
            [
                job.id,
                job.worker,
                job.queue,
                styled(state, STATE_STYLES.get(state)),
                f"{job.attempt}/{job.max_attempts}",
                note,
            ]
        )
    return rows


def duplicates(specs: Sequence[JobSpec], inserted: Sequence[Job[Any]]) -> list[str]:
    """A line per insert that a unique job matched: the duplicate's args, and which stored
    job it matched (the insert returned that job, flagged as a conflict)."""
    return [
        f"unique duplicate: {spec.worker} {json.dumps(spec.args)} matched job {job.id} "
        f"{json.dumps(job.args)} and was not stored"
        for spec, job in zip(specs, inserted, strict=True)
        if job.conflict
    ]


TRAIL = {
    "step.retried": "{step} retried after {error}",
    "step.compensate": "{step} compensated ({outcome}) after {error}",
    "step.failed": "{step} failed with {error}",
    "step.undone": "{step} undone",
    "step.undo_retried": "{step} undo retried",
    "step.undo_failed": "{step} UNDO FAILED",
    "run.interrupted": "interrupted",
    "run.resumed": "resumed",
    "run.abandoned": "abandoned",
}


def run_trail(run: RunRecord) -> str:
    """The run's events besides plain starts and successes, in order, then its follow-ups."""
    parts = []
    for event in run.events:
        if event.kind in TRAIL:
            detail = event.detail or {}
            error = str((detail.get("error") or {}).get("type", "?")).rsplit(".", 1)[-1]
            parts.append(
                TRAIL[event.kind].format(
                    step=event.step, error=error, outcome=detail.get("outcome")
                )
            )
    if run.status == "succeeded":
        parts = parts or ["every step succeeded"]
        parts += [f"follow-up {spec['worker']}" for s in run.steps for spec in s.enqueue or ()]
    return "; ".join(parts)


RUN_COLUMNS = (
    Column("RUN", "right"),
    Column("WORKFLOW"),
    Column("JOB", "right"),
    Column("ATTEMPT", "right"),
    Column("STATUS"),
    Column("INPUTS"),
    Column("TRAIL"),
)
RUN_STYLES = {"succeeded": "green", "rolled_back": "red", "failed": "red"}


def run_rows(runs: list[RunRecord]) -> list[list[Cell]]:
    """One row per saga run, by run id (the order they started in)."""
    rows: list[list[Cell]] = []
    for run in sorted(runs, key=lambda r: r.id or 0):
        inputs = run.inputs if isinstance(run.inputs, dict) else {}
        shown = ", ".join(f"{key}={value}" for key, value in inputs.items())
        rows.append(
            [
                run.id,
                run.workflow,
                run.job_id,
                run.attempt,
                styled(run.status, RUN_STYLES.get(run.status)),
                shown,
                run_trail(run),
            ]
        )
    return rows


class NodeLog(logging.Handler):
    """Holds what jobsaga logs during the demo, to be printed in the demo's own output."""

    def __init__(self) -> None:
        root = logging.getLogger()
        super().__init__(level=root.getEffectiveLevel())
        self.records: list[logging.LogRecord] = []
        for handler in root.handlers:  # the invocation's secrets are masked here too
            for found in handler.filters:
                if isinstance(found, RedactingFilter):
                    self.addFilter(found)

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def echo(self, title: str) -> None:
        """Print (and forget) what was logged since the last call, under ``title``."""
        taken, self.records = self.records, []
        if taken:
            click.echo(title)
        for record in taken:
            click.echo(f"  {record.levelname.lower()}: {record.getMessage()}")


@contextmanager
def collected_logs() -> Iterator[NodeLog]:
    """jobsaga's log records go to a :class:`NodeLog` instead of stderr, until the end."""
    logger = logging.getLogger("jobsaga")
    handler = NodeLog()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def demo_commands(cli: click.Group) -> None:
    @cli.command("demo")
    @click.option(
        "--db", default="jobsaga-demo.db", show_default=True, help="SQLite file to use (recreated)."
    )
    @click.option("--timeout", type=float, default=30.0, show_default=True)
    def demo_command(db: str, timeout: float) -> None:
        """Run the demo on an embedded SQLite file: print each job's and each saga run's outcome."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        with collected_logs() as log:
            run_demo(db, timeout, log)
            log.echo("logged after the tables:")


def run_demo(db: str, timeout: float, log: NodeLog) -> None:
    demo.reset()
    url = embedded_url(db)
    app = demo.build_app(url)
    app.migrate()
    specs = demo.demo_jobs()
    inserted = app.insert_all(specs)
    matched = duplicates(specs, inserted)
    click.echo(
        f"inserted {len(inserted)} jobs into {db}: {len({job.id for job in inserted})} "
        f"stored, {len(matched)} unique duplicate returned as a conflict"
    )
    for line in matched:
        click.echo(line)
    started = time.monotonic()
    with app.node(demo.DEMO_QUEUES, poll_interval=0.05, grace_period=2.0).start_in_thread():
        while not settled(app):
            if time.monotonic() - started > timeout:
                raise click.ClickException(f"jobs did not settle within {timeout}s")
            time.sleep(0.05)
    click.echo(f"settled in {seconds_text(time.monotonic() - started)}")
    log.echo("the node logged:")
    click.echo("")
    notes = {job.id: "matched by the unique duplicate" for job in inserted if job.conflict}
    echo_table(JOB_COLUMNS, outcome_rows(app.list_jobs(limit=None, newest_first=False), notes))
    for line in demo.shop.final_failures:
        click.echo(f"on_final_failure: {line}")
    listed = list_runs(app, limit=100)
    runs = [full for run in listed if run.id and (full := get_run(app, run.id))]
    click.echo("")
    echo_table(RUN_COLUMNS, run_rows(runs))
    for message in demo.analytics.AnalyticsWorkflow.store.ui_messages:
        cleaned = "cleaned up" if message["cleaned_up"] else "an undo failed"
        click.echo(
            f"on_final_failure: prompt {message['prompt_id']} marked failed, "
            f"the UI told ({cleaned})"
        )
    app.close()
    ordered = sorted(runs, key=lambda r: r.id or 0)
    shown = [run.id for run in ordered if run.error] + [run.id for run in ordered]
    if shown:
        click.echo(
            f"inspect a run: jobsaga runs show {shown[0]} --app jobsaga.demo:build_app --url {url}"
        )
