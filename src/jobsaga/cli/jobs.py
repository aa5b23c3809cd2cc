"""``jobsaga jobs ...``: look at jobs from the terminal."""

from __future__ import annotations

import json

import click

from .loading import load_app
from .options import app_options


def jobs_commands(cli: click.Group) -> None:
    @cli.group()
    def jobs() -> None:
        """Inspect jobs."""

    @jobs.command("show")
    @app_options
    @click.argument("job_id", type=int)
    def show(app_spec: str | None, url: str | None, job_id: int) -> None:
        """Show one job with its errors."""
        app = load_app(app_spec, url)
        job = app.get_job(job_id)
        if job is None:
            raise click.ClickException(f"no job {job_id}")
        click.echo(f"job {job.id}  {job.worker}  queue={job.queue}  state={job.state.value}")
        click.echo(
            f"  attempt {job.attempt}/{job.max_attempts}  priority {job.priority}  tags {list(job.tags)}"
        )
        click.echo(
            f"  inserted {job.inserted_at:%Y-%m-%d %H:%M:%S}  scheduled {job.scheduled_at:%Y-%m-%d %H:%M:%S}"
        )
        click.echo(f"  args {json.dumps(job.args)}")
        if job.meta:
            click.echo(f"  meta {json.dumps(job.meta)}")
        for error in job.errors:
            click.echo(f"  attempt {error['attempt']} at {error['at']}: {error['error']}")
            if error.get("traceback"):
                click.echo("    " + error["traceback"].rstrip().replace("\n", "\n    "))
        app.close()

    @jobs.command("counts")
    @app_options
    def counts(app_spec: str | None, url: str | None) -> None:
        """Jobs per queue and state."""
        app = load_app(app_spec, url)
        for queue, states in sorted(app.engine.queue_counts().items()):
            click.echo(f"{queue}: " + ", ".join(f"{s}={n}" for s, n in sorted(states.items())))
        app.close()
