"""``jobsaga demo``: enqueue a realistic mix of jobs into an embedded SQLite file, run a node
until they settle, and print what became of each."""

from __future__ import annotations

import os
import time
from typing import Any

import click

from .. import demo
from ..app import App
from ..job import Job, JobSpec


def demo_jobs() -> list[JobSpec]:
    return [
        demo.SendReceipt.new({"order_id": "o-1001", "email": "ada@example.com"}),
        demo.SendReceipt.new({"order_id": "o-1002", "email": "grace@example.com"}, priority=0),
        demo.ChargeCard.new({"order_id": "o-1001", "cents": 4200}),
        demo.SyncInventory.new({"warehouse": "north"}),
        demo.FetchExchangeRate.new({"currency": "EUR"}),
        demo.FetchExchangeRate.new({"currency": "XTS"}),
        demo.BuildReport.new({"customer": "c-7", "customer_deleted": True}),
        demo.NotifyPartner.new({"partner": "acme-logistics"}),
        demo.ResizeImages.new({"seconds": 1.0}),
        demo.ImportCatalog.new({"supplier": "s-1", "since": "2026-11-01"}),
        demo.ImportCatalog.new({"supplier": "s-1", "since": "2026-11-02"}),  # duplicate
        demo.SendReceipt.new({"order_id": "o-1003", "email": "linus@example.com"}, schedule_in=1.0),
    ]


def settled(app: App, ids: list[int]) -> bool:
    return all(job is not None and job.state.is_final for job in map(app.get_job, ids))


def outcome_table(jobs: list[Job[Any]]) -> str:
    header = f"{'id':>3}  {'worker':<26} {'queue':<8} {'state':<10} {'tries':>5}  note"
    lines = [header, "-" * len(header)]
    for job in jobs:
        note = job.errors[-1]["error"] if job.errors else ""
        if job.meta.get("snoozed"):
            note = f"snoozed {job.meta['snoozed']}x" + (f"; {note}" if note else "")
        lines.append(
            f"{job.id:>3}  {job.worker:<26} {job.queue:<8} {job.state.value:<10} "
            f"{job.attempt:>2}/{job.max_attempts:<2}  {note[:70]}"
        )
    return "\n".join(lines)


def demo_commands(cli: click.Group) -> None:
    @cli.command("demo")
    @click.option(
        "--db", default="jobsaga-demo.db", show_default=True, help="SQLite file to use (recreated)."
    )
    @click.option("--timeout", type=float, default=30.0, show_default=True)
    def demo_command(db: str, timeout: float) -> None:
        """Run the demo on an embedded SQLite file and print each job's outcome."""
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(db + suffix):
                os.remove(db + suffix)
        app = App(f"sqlite:///{db}", workers=demo.DEMO_WORKERS)
        app.migrate()
        inserted = app.insert_all(demo_jobs())
        conflicts = [job.id for job in inserted if job.conflict]
        ids = sorted({job.id for job in inserted})
        click.echo(
            f"inserted {len(inserted)} jobs into {db}: {len(ids)} stored, "
            f"{len(conflicts)} unique duplicate returned as a conflict"
        )
        started = time.monotonic()
        with app.node(demo.DEMO_QUEUES, poll_interval=0.05, grace_period=2.0).start_in_thread():
            while not settled(app, ids):
                if time.monotonic() - started > timeout:
                    raise click.ClickException(f"jobs did not settle within {timeout}s")
                time.sleep(0.05)
        jobs = [job for job in map(app.get_job, ids) if job is not None]
        click.echo(outcome_table(jobs))
        click.echo(f"settled in {time.monotonic() - started:.1f}s")
        for line in demo.final_failures:
            click.echo(f"on_final_failure: {line}")
        app.close()
