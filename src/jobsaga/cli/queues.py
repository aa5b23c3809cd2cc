"""``jobsaga queues``: list queues across nodes; pause, resume and scale them at runtime.

Everything a node says comes from its heartbeat record, the one liveness record
(``jobsaga_nodes``), read as live while its deadline has not passed: per queue its limit,
whether it is paused, and its health (a queue that stopped fetching because threads of
timed-out performs still run, "stalled"); and a stopped node still vouching for jobs whose
threads run on.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from ..operations import NodeQueue, QueueInfo
from ..operations.queues import QueueControl
from ..worker import check_queue_name
from .configured import AppSource
from .options import config_options
from .tables import Cell, Column, colour_wanted, render_table, styled, time_header, when

if TYPE_CHECKING:
    from ..app import App

Health = dict[str, dict[str, Any]]
"""Node name -> its last beat's record (``meta``)."""


def node_health(app: App) -> Health:
    """The records of the nodes whose heartbeat deadline has not passed."""
    return {node.name: node.record for node in QueueControl(app).live_nodes()}


def health_text(node: NodeQueue) -> str:
    if node.stalled:
        return (
            f"STALLED: {node.abandoned_threads} thread(s) of timed-out performs still run "
            f"(cap {node.abandon_cap}), not fetching"
        )
    if node.abandoned_threads:
        return f"{node.abandoned_threads} abandoned thread(s)"
    return "ok"


def unhealthy_lines(health: Health) -> list[str]:
    lines = []
    for node, meta in sorted(health.items()):
        stalled = sorted(
            queue
            for queue, values in (meta.get("queues") or {}).items()
            if isinstance(values, dict) and values.get("stalled")
        )
        if stalled:
            lines.append(
                f"UNHEALTHY node {node}: queue(s) {', '.join(stalled)} stopped fetching while "
                "threads of performs that overran their timeout still run"
            )
        if meta.get("held_jobs"):
            lines.append(
                f"node {node}: job(s) {meta['held_jobs']} still run in threads past a shutdown; "
                "they stay executing until those threads return"
            )
    return lines


def control_text(info: QueueInfo) -> str:
    parts = []
    if info.paused is not None:
        parts.append("paused" if info.paused else "resumed")
    if info.concurrency is not None:
        parts.append(f"limit {info.concurrency}")
    for node, values in sorted(info.node_controls.items()):
        found = [
            ("paused" if values["paused"] else "resumed") if values["paused"] is not None else "",
            f"limit {values['concurrency']}" if values["concurrency"] is not None else "",
        ]
        parts.append(f"{node}: " + ", ".join(p for p in found if p))
    return "; ".join(parts) or "-"


QUEUE_COLUMNS = (
    # A queue name is at most 64 characters: piped, never cut (it is what a reader greps
    # for); on a narrow terminal it is the column that narrows, with an ellipsis.
    Column("QUEUE", max_width=64),
    Column("AVAILABLE", "right"),
    Column("SCHEDULED", "right"),
    Column("EXECUTING", "right"),  # the states in JobState's order, as `jobs counts` has them
    Column("RETRYABLE", "right"),
    Column("CONTROL", max_width=80),
)
NODE_COLUMNS = (
    Column("NODE", max_width=80),
    Column("QUEUE", max_width=64),
    Column("LIMIT", "right"),
    Column("RUNNING", "right"),
    Column("FETCHING"),
    Column(time_header("STARTED")),
    Column("HEALTH", max_width=120),
)


def queue_rows(queues: list[QueueInfo]) -> list[list[Cell]]:
    return [
        [
            q.queue,
            q.available,
            q.scheduled,
            q.executing,
            q.retryable,
            styled(control_text(q), "yellow") if q.paused else control_text(q),
        ]
        for q in queues
    ]


def fetching_text(node: NodeQueue) -> Cell:
    """Whether the node's queue fetches: paused by a control, stalled by threads of timed-out
    performs (said again in HEALTH), or yes."""
    if node.paused:
        return styled("paused", "yellow")
    if node.stalled:
        return styled("no (stalled)", "red")
    return "yes"


def node_rows(queues: list[QueueInfo], now: datetime) -> list[list[Cell]]:
    """One row per live node and queue, by node: what each process runs."""
    found = sorted(((n.node, q.queue, n) for q in queues for n in q.nodes), key=lambda r: r[:2])
    return [
        [
            name,
            queue,
            node.concurrency,
            node.running,
            fetching_text(node),
            when(node.started_at, now),
            styled(health_text(node), "red" if node.stalled else None),
        ]
        for name, queue, node in found
    ]


def queues_table(queues: list[QueueInfo], health: Health | None = None) -> str:
    """The queues, then the live nodes' queues (if any), then what is unhealthy."""
    parts = [render_table(QUEUE_COLUMNS, queue_rows(queues))]
    nodes = node_rows(queues, datetime.now(UTC))
    parts.append(render_table(NODE_COLUMNS, nodes) if nodes else "no live nodes")
    return "\n\n".join(parts + ["\n".join(unhealthy_lines(health or {}))]).rstrip()


def queue_json(info: QueueInfo) -> dict[str, Any]:
    data = asdict(info)
    for node in data["nodes"]:
        started = node["started_at"]
        node["started_at"] = started.isoformat() if started is not None else None
    return data


def queues_commands(cli: click.Group) -> None:
    @cli.group(invoke_without_command=True)
    @config_options
    @click.option("--json", "as_json", is_flag=True, help="One JSON document.")
    @click.pass_context
    def queues(ctx: click.Context, source: AppSource, as_json: bool) -> None:
        """Queues across nodes: with no command, list them; or pause, resume, scale."""
        if ctx.invoked_subcommand is None:
            show_queues(source, as_json)

    @queues.command("list")
    @config_options
    @click.option("--json", "as_json", is_flag=True, help="One JSON document.")
    def list_queues(source: AppSource, as_json: bool) -> None:
        """Queues with their controls, job counts, and each live node's limit and running jobs."""
        show_queues(source, as_json)

    node_option = click.option(
        "--node", default=None, help="Only this node (default: every node, now and later)."
    )

    @queues.command()
    @config_options
    @node_option
    @click.argument("queue")
    def pause(source: AppSource, node: str | None, queue: str) -> None:
        """Stop fetching from QUEUE; running jobs finish. Persists until resumed."""
        with source.open() as app:
            _checked(app, queue, node)
            _run(lambda: app.pause_queue(queue, node=node))
        click.echo(f"paused {queue} on {node or 'every node'}")

    @queues.command()
    @config_options
    @node_option
    @click.argument("queue")
    def resume(source: AppSource, node: str | None, queue: str) -> None:
        """Fetch from QUEUE again."""
        with source.open() as app:
            _checked(app, queue, node)
            _run(lambda: app.resume_queue(queue, node=node))
        click.echo(f"resumed {queue} on {node or 'every node'}")

    @queues.command()
    @config_options
    @node_option
    @click.argument("queue")
    @click.argument("limit")
    def scale(source: AppSource, node: str | None, queue: str, limit: str) -> None:
        """Set QUEUE's concurrency LIMIT (a number, or "default" for each node's own)."""
        if limit == "default":
            value: int | None = None
        elif limit.isdigit() and int(limit) >= 1:
            value = int(limit)
        else:
            raise click.BadParameter(
                f"{limit!r}: give a number >= 1, or 'default'", param_hint="LIMIT"
            )
        with source.open() as app:
            _checked(app, queue, node)
            _run(lambda: app.scale_queue(queue, value, node=node))
        shown = limit if value is not None else "each node's own limit"
        click.echo(f"scaled {queue} to {shown} on {node or 'every node'}")


def show_queues(source: AppSource, as_json: bool) -> None:
    with source.open() as app:
        found = app.list_queues()
        health = {} if as_json else node_health(app)
    if as_json:
        click.echo(json.dumps([queue_json(q) for q in found], indent=2))
    elif not found:
        click.echo("no queues: no jobs, no live nodes, no controls")
    else:
        click.echo(queues_table(found, health), color=colour_wanted())


def _checked(app: App, queue: str, node: str | None) -> None:
    """Refuse a node that is not known; warn (on stderr) about a queue nothing uses, which is
    likely a typo, yet still set: a queue may be paused before the nodes that run it start."""
    _run(lambda: check_queue_name(queue))
    control = QueueControl(app)
    problem = control.unknown_node(node)
    if problem is not None:
        raise click.BadParameter(problem, param_hint="--node")
    warning = control.unused_queue(queue)
    if warning is not None:
        click.echo(f"warning: {warning}", err=True)


def _run(action: Any) -> None:
    try:
        action()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
