"""``jobsaga worker`` and ``jobsaga migrate``."""

from __future__ import annotations

import os
import sys
import threading

import click

from .loading import load_app
from .options import app_options, parse_queues


def exit_past_stuck_threads() -> None:
    """Python joins pool threads at exit, so a sync perform that ignored its timeout would
    keep a stopped node's process alive; its job was already written back, so leave now."""
    stuck = [
        t.name for t in threading.enumerate() if t.name.startswith("jobsaga-job") and t.is_alive()
    ]
    if stuck:
        click.echo(
            f"jobsaga: {len(stuck)} sync job thread(s) still running; exiting anyway", err=True
        )
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)


def worker_commands(cli: click.Group) -> None:
    @cli.command()
    @app_options
    @click.option(
        "-q",
        "--queue",
        "queues",
        multiple=True,
        metavar="NAME=LIMIT",
        help="A queue and its concurrency limit; repeat for more. Default: default=10.",
    )
    @click.option("--name", default=None, help="Node name (default: host-pid-random).")
    @click.option(
        "--grace",
        type=float,
        default=15.0,
        show_default=True,
        help="Seconds running jobs may finish after SIGTERM/SIGINT.",
    )
    @click.option(
        "--poll-interval",
        type=float,
        default=None,
        help="Seconds between safety polls (default 0.2 on SQLite, 1.0 on PostgreSQL).",
    )
    @click.option(
        "--migrate/--no-migrate",
        default=True,
        show_default=True,
        help="Apply pending migrations before starting.",
    )
    def worker(
        app_spec: str | None,
        url: str | None,
        queues: tuple[str, ...],
        name: str | None,
        grace: float,
        poll_interval: float | None,
        migrate: bool,
    ) -> None:
        """Run a worker node until SIGTERM or SIGINT."""
        app = load_app(app_spec, url)
        if migrate:
            app.migrate()
        node = app.node(
            parse_queues(queues) or {"default": 10},
            name=name,
            grace_period=grace,
            poll_interval=poll_interval,
        )
        click.echo(
            f"jobsaga node {node.name}: queues {node.queue_limits} on {app.dialect}", err=True
        )
        node.run()
        click.echo(f"jobsaga node {node.name}: stopped", err=True)
        app.close()
        exit_past_stuck_threads()

    @cli.command()
    @app_options
    def migrate(app_spec: str | None, url: str | None) -> None:
        """Apply pending schema migrations (idempotent)."""
        app = load_app(app_spec, url)
        applied = app.migrate()
        click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")
        app.close()
