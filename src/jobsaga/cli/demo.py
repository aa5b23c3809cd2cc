"""``jobsaga demo``: enqueue a shop's jobs and the analytics saga's jobs into an embedded
SQLite file, run one node until every job (follow-ups included) settles, and print what
became of each job and of each saga run."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from .. import demo
from ..app import App
from ..engines import embedded_url
from ..job import Job, JobState
from ..workflow import RunRecord, get_run, list_runs


def settled(app: App) -> bool:
    """Every stored job is final: a saga's follow-up is inserted with its job's completion,
    so none can appear once this holds."""
    return all(JobState(state).is_final for state, n in app.count_jobs().items() if n)


def outcome_table(jobs: list[Job[Any]]) -> str:
    header = f"{'id':>3}  {'worker':<26} {'queue':<16} {'state':<10} {'tries':>5}  note"
    lines = [header, "-" * len(header)]
    for job in jobs:
        note = job.errors[-1]["error"] if job.errors else ""
        if job.meta.get("snoozed"):
            note = f"snoozed {job.meta['snoozed']}x" + (f"; {note}" if note else "")
        if len(note) > 70:
            note = note[:67] + "..."
        lines.append(
            f"{job.id:>3}  {job.worker:<26} {job.queue:<16} {job.state.value:<10} "
            f"{job.attempt:>2}/{job.max_attempts:<2}  {note}"
        )
    return "\n".join(lines)


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


def runs_table(runs: list[RunRecord]) -> str:
    header = f"{'run':>3}  {'workflow':<10} {'job':>3}/att  {'status':<15} {'inputs':<22} trail"
    lines = [header, "-" * len(header)]
    for run in runs:
        inputs = run.inputs if isinstance(run.inputs, dict) else {}
        shown = ", ".join(f"{key}={value}" for key, value in inputs.items())
        lines.append(
            f"{run.id:>3}  {run.workflow:<10} {run.job_id or '-':>3}/{run.attempt:<3}  "
            f"{run.status:<15} {shown:<22} {run_trail(run)}"
        )
    return "\n".join(lines)


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
        demo.reset()
        url = embedded_url(db)
        app = demo.build_app(url)
        app.migrate()
        inserted = app.insert_all(demo.demo_jobs())
        conflicts = [job.id for job in inserted if job.conflict]
        click.echo(
            f"inserted {len(inserted)} jobs into {db}: {len({job.id for job in inserted})} "
            f"stored, {len(conflicts)} unique duplicate returned as a conflict"
        )
        started = time.monotonic()
        with app.node(demo.DEMO_QUEUES, poll_interval=0.05, grace_period=2.0).start_in_thread():
            while not settled(app):
                if time.monotonic() - started > timeout:
                    raise click.ClickException(f"jobs did not settle within {timeout}s")
                time.sleep(0.05)
        click.echo(outcome_table(app.list_jobs(limit=None, newest_first=False)))
        click.echo(f"settled in {time.monotonic() - started:.1f}s")
        for line in demo.shop.final_failures:
            click.echo(f"on_final_failure: {line}")
        listed = sorted(list_runs(app, limit=100), key=lambda r: (r.job_id or 0, r.attempt))
        runs = [full for run in listed if run.id and (full := get_run(app, run.id))]
        click.echo("")
        click.echo(runs_table(runs))
        for message in demo.analytics.AnalyticsWorkflow.store.ui_messages:
            cleaned = "cleaned up" if message["cleaned_up"] else "an undo failed"
            click.echo(
                f"on_final_failure: prompt {message['prompt_id']} marked failed, "
                f"the UI told ({cleaned})"
            )
        app.close()
        shown = [run.id for run in runs if run.error] + [run.id for run in runs]
        if shown:
            click.echo(
                f"inspect a run: jobsaga runs show {shown[0]} "
                f"--app jobsaga.demo:build_app --url {url}"
            )
