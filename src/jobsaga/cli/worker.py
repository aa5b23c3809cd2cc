"""``jobsaga worker``, ``jobsaga migrate`` and ``jobsaga config``."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from ..engines.sqlite import SqliteEngine
from ..errors import ConfigError, DatabaseError, MigrationError
from ..redaction import redact_url
from ..telemetry_logging import (
    JOB_EVENT_LEVELS,
    attach_default_logger,
    attach_job_lines,
    seconds_text,
)
from .configured import AppSource, command_error, require_schema
from .options import config_options, node_options, parse_queues
from .tables import on_terminal

if TYPE_CHECKING:
    from ..app import App
    from ..config import NodeConfig
    from ..runtime.node import Node

R = TypeVar("R")

SUMMARY_LOGGER = "jobsaga.runtime.summary"


IDLE_EXIT = 1.0
"""Seconds the threads of pools shut down with the node get to end before they count as
stuck: an idle pool thread ends as soon as it sees the pool's shutdown."""


def stuck_threads(wait: float = IDLE_EXIT) -> list[threading.Thread]:
    """Threads that would keep the process alive at exit: every non-daemon thread but this
    one still running after ``wait`` seconds. A sync perform's (``jobsaga-job``), a saga's own
    step pool's (``jobsaga-step``), the event loop's default executor's (``asyncio.to_thread``
    in an async perform) or one the user's code started: Python joins them all before the
    process may end."""
    current = threading.current_thread()
    deadline = time.monotonic() + wait
    stuck = []
    for thread in threading.enumerate():
        if thread is current or thread.daemon or thread is threading.main_thread():
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            stuck.append(thread)
    return stuck


def exit_at_once(node: Node, sig: signal.Signals) -> NoReturn:
    """A signal once the node has stopped: the process leaves there and then, not after
    the job threads Python would join at exit (a perform that overran its timeout, a held
    job's). What the node held stays executing, for the lifeline, as after a crash."""
    held = sorted(node.held)
    click.echo(
        f"jobsaga: {sig.name} while stopping: exiting at once"
        + (f"; job(s) {held} stay executing until they are rescued" if held else ""),
        err=True,
    )
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(128 + sig.value)


def exit_on_signal_from_now(node: Node) -> None:
    """From the node's stop to the process's exit (the wait for job threads, closing the
    app), SIGINT or SIGTERM exits at once: a stop already happened, so another signal can
    only mean "leave now"."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: exit_at_once(node, signal.Signals(signum)))


def exit_past_stuck_threads(node: Node) -> None:
    """Python joins non-daemon threads at exit, so a sync perform that ignored its timeout or
    the grace period would keep a stopped node's process alive. Leave now: the process exiting
    is what stops those threads. A job whose perform overran its timeout was already written
    back; a job still running at shutdown was left executing under this node (``node.held``),
    and is rescued, attempt counted, once this node's last heartbeat lapses (``rescue_after``):
    never while its thread could still run."""
    stuck = stuck_threads()
    if stuck or node.lingering:
        held = sorted(node.held)
        names = sorted({t.name.rstrip("0123456789_").rstrip("-") or t.name for t in stuck})
        click.echo(
            # named as they are: a job's (jobsaga-job, asyncio) or one the app started itself
            f"jobsaga: {len(stuck)} thread(s) still running"
            + (f" ({', '.join(names)})" if names else "")
            + "; exiting anyway"
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


def queue_option(fn: Callable[..., R]) -> Callable[..., R]:
    return click.option(
        "-q",
        "--queue",
        "queues",
        multiple=True,
        metavar="NAME=LIMIT",
        help="A queue and its concurrency limit; repeat for more. Default: default=10.",
    )(fn)


def database_text(app: App) -> str:
    """The database as the banner names it: a SQLite file's absolute path, else the URL with
    its password masked."""
    engine = app.engine
    if isinstance(engine, SqliteEngine):
        return f"SQLite {engine.shown_path}"
    return redact_url(app.url)


def new_sqlite_file(app: App) -> str | None:
    """The path of ``app``'s SQLite file when it does not exist yet (the migration about to
    run creates it): a typo in ``--url`` would otherwise silently start an empty database."""
    engine = app.engine
    if not isinstance(engine, SqliteEngine):
        return None
    path = engine.path
    if path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return None
    return engine.shown_path


def names_text(names: list[str], limit: int = 12) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return shown + more


def banner(app: App, node: Node, config: NodeConfig, created: str | None) -> list[str]:
    """What the node will do, said at its start: name, database, queues, workers, workflows;
    and warnings for what is likely a mistake (no app, a database that was just created)."""
    from ..workflow.inputs import known_workflows

    workers = sorted(app.workers)
    workflows = sorted(known_workflows(app))
    queues = ", ".join(f"{queue}={limit}" for queue, limit in node.queue_limits.items())
    lines = [
        f"jobsaga node {node.name} starting",
        f"  database:  {database_text(app)}",
        f"  queues:    {queues} (grace period {node.grace_period:g} s)",
        f"  workers:   {names_text(workers)}",
        f"  workflows: {names_text(workflows)}",
    ]
    if not workers:
        hint = (
            f"--app {config.app} registers none"
            if config.app
            else "give your App with --app module:app (or app in jobsaga.toml, $JOBSAGA_APP)"
        )
        lines.append(
            f"warning: no workers are registered, so every job this node fetches fails "
            f"(unknown worker): {hint}"
        )
    if created is not None:
        lines.append(
            f"warning: created a new, empty SQLite database at {created}; if you meant an "
            "existing one, check --url"
        )
    return lines


def duration(value: float) -> str:
    """``3.1 ms`` under a second (most migrations take a few: ``3 ms`` would round them all
    alike), else as every jobsaga line says a duration (``1.4 s``, ``3 min 5 s``)."""
    return f"{value * 1000:.1f} ms" if value < 1 else seconds_text(value)


class MigrationLines:
    """``applying 0007_follow_up_link ... 0.02 s`` per migration, for a person at a terminal:
    the name first, so a slow migration is seen while it runs."""

    def __init__(self) -> None:
        self.open_line = False
        self.said = 0

    def __call__(self, version: str, took: float | None) -> None:
        if took is None:
            click.echo(f"applying {version} ... ", nl=False)
            self.open_line = True
            self.said += 1
        else:
            click.echo(duration(took))
            self.open_line = False

    def rolled_back(self) -> None:
        """After a failure: all pending migrations commit together, so none said stayed."""
        if self.open_line:
            click.echo("failed")
        if self.said:
            click.echo("rolled back: none of the migrations above was applied", err=True)


def show_finished_jobs(app: App) -> None:
    """Per finished job one line at ``-v`` (``jobsaga.jobs``); the summary at the default
    level; job events' JSON lines at ``-vv``."""
    with contextlib.suppress(ValueError):  # the app attached it itself
        attach_default_logger(app, levels=JOB_EVENT_LEVELS)
    with contextlib.suppress(ValueError):
        attach_job_lines(app)
    summary = logging.getLogger(SUMMARY_LOGGER)
    if not summary.isEnabledFor(logging.INFO):
        summary.setLevel(logging.INFO)


def worker_commands(cli: click.Group) -> None:
    @cli.command()
    @config_options
    @queue_option
    @node_options
    @click.option(
        "--migrate/--no-migrate",
        default=True,
        show_default=True,
        help="Apply pending migrations before starting.",
    )
    @click.option(
        "-v",
        "--verbose",
        count=True,
        help="More logging, as jobsaga -v worker: -v a line per finished job, -vv debug.",
    )
    def worker(
        source: AppSource,
        queues: tuple[str, ...],
        node_options: dict[str, object],
        migrate: bool,
        verbose: int,
    ) -> None:
        """Run a worker node until SIGTERM or SIGINT (a second one forces the stop).

        Settings come from the TOML file, then JOBSAGA_* variables, then these flags, each
        named as the key it sets (see docs/configuration.md)."""
        given_queues = parse_queues(queues) or None
        config = source.config(queues=given_queues, **node_options)
        app = source.app(config)
        if verbose:  # given after the command: the same as before it
            root = logging.getLogger()
            root.setLevel(min(root.level, logging.WARNING - 10 * min(verbose, 2)))
        show_finished_jobs(app)
        try:
            # Reading the engine builds it: a URL it cannot use is a one-line error here.
            created = new_sqlite_file(app) if migrate else None
            if migrate:
                app.migrate()
            else:
                require_schema(app)
        except (ConfigError, MigrationError, DatabaseError) as exc:
            raise command_error(app, exc) from None
        node = source.node(config, app, queues=given_queues, **node_options)
        for line in banner(app, node, config, created):
            click.echo(line, err=True)

        def announce(text: str) -> None:
            click.echo(f"jobsaga node {node.name}: {text}", err=True)

        try:
            try:
                node.run(announce=announce)
            except (ConfigError, MigrationError, DatabaseError) as exc:
                # The start failed (a node name held by a live process, the database away):
                # it was undone; one line, not a traceback.
                raise command_error(app, exc) from None
            exit_on_signal_from_now(node)
            click.echo(f"jobsaga node {node.name}: stopped", err=True)
            exit_past_stuck_threads(node)  # before closing the app its heartbeat may still use
            app.close()
        except KeyboardInterrupt:
            # A signal as the node's own handlers were let go (the stop had ended): no
            # "Aborted!" and then an exit that waits for job threads; leave now.
            exit_at_once(node, signal.SIGINT)

    @cli.command()
    @config_options
    def migrate(source: AppSource) -> None:
        """Apply pending schema migrations (idempotent); creates a SQLite file if needed.

        On a terminal each migration is said as it runs, with its time; piped, one line
        ("applied: ..." or "up to date")."""
        if not on_terminal():
            with source.open(migrated=False) as app:
                applied = app.migrate()
            click.echo(f"applied: {', '.join(applied)}" if applied else "up to date")
            return
        said = MigrationLines()
        started = time.perf_counter()
        try:
            with source.open(migrated=False) as app:
                applied = app.migrate(said)
        except click.ClickException:
            said.rolled_back()
            raise
        if applied:
            took = duration(time.perf_counter() - started)
            noun = "migration" if len(applied) == 1 else "migrations"
            click.echo(f"applied {len(applied)} {noun} in {took} (one transaction)")
        else:
            click.echo("up to date")

    @cli.command("config")
    @config_options
    @queue_option
    @node_options
    def show_config(
        source: AppSource, queues: tuple[str, ...], node_options: dict[str, object]
    ) -> None:
        """Print the configuration a worker given the same flags would run with, as JSON:
        file + environment + flags, and every default (the URL's password masked)."""
        given_queues = parse_queues(queues) or None
        config = source.config(queues=given_queues, **node_options)
        app = source.app(config)
        node = source.node(config, app, queues=given_queues, **node_options)
        click.echo(json.dumps(effective_config(config, app, node), indent=2))


def effective_config(config: NodeConfig, app: App, node: Node) -> dict[str, Any]:
    """Every key of ``config`` with the value a node runs with: what was set, else the
    default (derived ones resolved for this database); the URL is the app's, masked."""
    given: Mapping[str, Any] = config.model_dump(mode="json")
    effective = node.effective_options()
    shown: dict[str, Any] = {
        "url": redact_url(app.url),
        "app": config.app,
        "queues": dict(node.queue_limits),
    }
    for key, value in effective.items():
        if given.get(key) is not None:
            shown[key] = given[key]
        elif key == "name":
            shown[key] = f"{socket.gethostname()}-<pid>-<random> (made at start)"
        elif key == "crontab":
            shown[key] = []
        else:
            shown[key] = value
    return shown
