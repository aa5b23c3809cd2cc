"""``jobsaga worker``, ``jobsaga migrate`` and ``jobsaga config``."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import TYPE_CHECKING

import click

from ..errors import ConfigError, DatabaseError, MigrationError
from ..redaction import redact_url
from ..telemetry_logging import attach_default_logger
from .configured import AppSource, command_error, require_schema
from .options import config_options, node_options, parse_queues

if TYPE_CHECKING:
    from ..runtime.node import Node


def exit_past_stuck_threads(node: Node) -> None:
    """Python joins pool threads at exit, so a sync perform that ignored its timeout or the
    grace period would keep a stopped node's process alive. Leave now: the process exiting is
    what stops those threads. A job whose perform overran its timeout was already written
    back; a job still running at shutdown was left executing under this node (``node.held``),
    and is rescued, attempt counted, once this node's last heartbeat lapses (``rescue_after``):
    never while its thread could still run."""
    stuck = [
        t.name for t in threading.enumerate() if t.name.startswith("jobsaga-job") and t.is_alive()
    ]
    if stuck or node.lingering:
        held = sorted(node.held)
        click.echo(
            f"jobsaga: {len(stuck)} sync job thread(s) still running; exiting anyway"
            + (
                f"; job(s) {held} stay executing until this node's heartbeat lapses, "
                "then they are rescued"
                if held
                else ""
            ),
            err=True,
        )
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)


def worker_commands(cli: click.Group) -> None:
    @cli.command()
    @config_options
    @click.option(
        "-q",
        "--queue",
        "queues",
        multiple=True,
        metavar="NAME=LIMIT",
        help="A queue and its concurrency limit; repeat for more. Default: default=10.",
    )
    @node_options
    @click.option(
        "--migrate/--no-migrate",
        default=True,
        show_default=True,
        help="Apply pending migrations before starting.",
    )
    def worker(
        source: AppSource,
        queues: tuple[str, ...],
        node_options: dict[str, object],
        migrate: bool,
    ) -> None:
        """Run a worker node until SIGTERM or SIGINT.

        Settings come from the TOML file, then JOBSAGA_* variables, then these flags, each
        named as the key it sets (see docs/configuration.md)."""
        config = source.config(queues=parse_queues(queues) or None, **node_options)
        app = source.app(config)
        with contextlib.suppress(ValueError):  # the app attached it itself
            attach_default_logger(app)
        try:
            if migrate:
                app.migrate()
            else:
                require_schema(app)
        except (ConfigError, MigrationError, DatabaseError) as exc:
            raise command_error(app, exc) from None
        try:
            node = config.node(app)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(
            f"jobsaga node {node.name}: queues {node.queue_limits} on {redact_url(app.url)}",
            err=True,
        )
        try:
            node.run()
        except (ConfigError, MigrationError, DatabaseError) as exc:
            # The start failed (a node name held by a live process, the database away): it
            # was undone; one line, not a traceback.
            raise command_error(app, exc) from None
        click.echo(f"jobsaga node {node.name}: stopped", err=True)
        exit_past_stuck_threads(node)  # before closing the app its heartbeat may still use
        app.close()

    @cli.command()
    @config_options
    def migrate(source: AppSource) -> None:
        """Apply pending schema migrations (idempotent); creates a SQLite file if needed."""
        with source.open(migrated=False) as app:
            applied = app.migrate()
        click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")

    @cli.command("config")
    @config_options
    def show_config(source: AppSource) -> None:
        """Print the effective node configuration (file + environment + flags), as JSON."""
        config = source.config()
        click.echo(config.model_dump_json(indent=2, exclude_none=True))
