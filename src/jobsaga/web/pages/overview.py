"""The dashboard's Overview page: what the cluster holds and does, at a glance.

Jobs by queue and state (the unfinished ones exactly, the finished ones of the last hour),
jobs completed, failed and retried per minute over the last hour as a chart, the live nodes
(from their heartbeat records, as ``jobsaga queues`` reads them) with each queue's limit and
running jobs and how old their last beat is, the leader, and the paused queues.

The page is refreshed every few seconds (live.js), so every read goes through a partial
index: counting the finished jobs of all time per state would read the whole table (0.3 s on
PostgreSQL, 1.1 s on SQLite over a million rows), so only the last hour's are counted, by a
range on the pruner's finish-time index (``dashboard.sql``).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from ...operations.queues import ALL_NODES, QueueControl
from ...plugins.leader import SCOPE
from ..charts import Series, line_chart

if TYPE_CHECKING:
    from ...app import App
    from ..server import Dashboard

TITLE = "Overview"
HOME = "overview"

MINUTES = 60
"""The chart's span: the current minute and the 59 before it."""
UNFINISHED = ("available", "scheduled", "executing", "retryable")
FINISHED = ("completed", "discarded", "cancelled")
SERIES = (
    ("completed", "#059669", "none"),
    ("failed", "#dc2626", "6 3"),
    ("retried", "#d97706", "2 3"),
)
"""The chart's lines: name, colour, dash (told apart without colour too)."""


@dataclass
class NodeView:
    """A live node as its last heartbeat described it."""

    name: str
    host: str
    pid: Any
    heartbeat_age: float
    started_at: datetime | None
    queues: list[dict[str, Any]]
    """Per queue: ``queue``, ``limit``, ``running`` (from the jobs table), ``paused``, ``stalled``."""
    leader: bool = False

    @property
    def running(self) -> int:
        return sum(int(q["running"]) for q in self.queues)


@dataclass
class Overview:
    now: datetime
    since: datetime
    """The start of the chart's first minute."""
    counts: dict[str, dict[str, int]]
    """Queue -> state -> jobs: unfinished states now, finished ones within the last hour."""
    per_minute: dict[str, list[int]]
    leader: str | None
    leader_since: datetime | None
    nodes: list[NodeView]
    paused: list[tuple[str, str]] = field(default_factory=list)
    """(queue, where): "every node", "every node but a, b", or "node a"."""

    @property
    def paused_names(self) -> set[str]:
        return {queue for queue, _ in self.paused}

    @property
    def totals(self) -> dict[str, int]:
        found: dict[str, int] = defaultdict(int)
        for states in self.counts.values():
            for state, n in states.items():
                found[state] += n
        return {state: found.get(state, 0) for state in UNFINISHED + FINISHED}


def read_overview(app: App) -> Overview:
    """Everything the page shows, read in one transaction (the live nodes in a second)."""
    engine, sql = app.engine, app.engine.queries
    now = app.clock()
    since = now.replace(second=0, microsecond=0) - timedelta(minutes=MINUTES - 1)
    hour_ago = engine.time_param(now - timedelta(hours=1))
    with engine.read() as tx:
        unfinished = tx.execute(sql["queue_state_counts"])
        finished = tx.execute(sql["dashboard_finished_by_queue"], {"since": hour_ago})
        throughput = tx.execute(sql["dashboard_throughput"], {"since": engine.time_param(since)})
        running_rows = tx.execute(sql["running_by_node"])
        controls = tx.execute(sql["all_controls"])
        lease = tx.execute(sql["current_leader"], {"scope": SCOPE})
    live = QueueControl(app).live_nodes()

    counts: dict[str, dict[str, int]] = defaultdict(dict)
    for row in [*unfinished, *finished]:
        counts[str(row["queue"])][str(row["state"])] = int(row["n"])
    per_minute = {name: [0] * MINUTES for name, _, _ in SERIES}
    for row in throughput:
        minute = int(row["minute"])
        if 0 <= minute < MINUTES:
            per_minute[str(row["kind"])][minute] += int(row["n"])

    leader = leader_since = None
    if lease:
        expires = engine.time_value(lease[0]["expires_at"])
        if expires is not None and expires > now:
            leader = str(lease[0]["node"])
            leader_since = engine.time_value(lease[0]["elected_at"])

    running = {(str(r["queue"]), str(r["node"])): int(r["n"]) for r in running_rows}
    nodes = []
    for node in live:
        beat = node.heartbeat_at or now
        queues = [
            {
                "queue": queue,
                "limit": values.get("limit"),
                "running": running.get((queue, node.name), 0),
                "paused": bool(values.get("paused")),
                "stalled": bool(values.get("stalled")),
            }
            for queue, values in sorted(node.queues().items())
        ]
        for name in node.queues():
            counts.setdefault(name, {})
        nodes.append(
            NodeView(
                name=node.name,
                host=str(node.record.get("host") or ""),
                pid=node.record.get("pid"),
                heartbeat_age=max((now - beat).total_seconds(), 0.0),
                started_at=node.started_at,
                queues=queues,
                leader=node.name == leader,
            )
        )
    paused = paused_queues(controls)
    for name, _ in paused:
        counts.setdefault(name, {})
    return Overview(
        now=now,
        since=since,
        counts=dict(sorted(counts.items())),
        per_minute=per_minute,
        leader=leader,
        leader_since=leader_since,
        nodes=nodes,
        paused=paused,
    )


def paused_queues(controls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Each paused queue and where, from the persisted controls (what every node, now or
    later, obeys): a pause for every node, less the nodes resumed on their own; or a node's."""
    by_queue: dict[str, dict[str, Any]] = defaultdict(dict)
    for row in controls:
        if row["paused"] is not None:
            by_queue[str(row["queue"])][str(row["node"])] = bool(row["paused"])
    found = []
    for queue, nodes in sorted(by_queue.items()):
        if nodes.get(ALL_NODES):
            resumed = sorted(n for n, p in nodes.items() if n != ALL_NODES and not p)
            found.append(
                (queue, f"every node but {', '.join(resumed)}" if resumed else "every node")
            )
        else:
            found += [(queue, f"node {n}") for n, p in sorted(nodes.items()) if p and n]
    return found


def throughput_chart(overview: Overview) -> Markup:
    """Completed, failed and retried per minute, ticked every 10 minutes (UTC clock)."""
    ticks = [
        (index, (overview.since + timedelta(minutes=index)).strftime("%H:%M"))
        for index in range(MINUTES - 1, -1, -10)
    ]
    return line_chart(
        [Series(name, overview.per_minute[name], colour, dash) for name, colour, dash in SERIES],
        sorted(ticks),
        title="jobs completed, failed and retried per minute, last hour",
        x_title="minute (UTC)",
        y_title="jobs per minute",
    )


def age(seconds: float) -> str:
    """A duration as a person reads it at a glance: 0.4 s, 12 s, 3 min 5 s, 2 h 10 min."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    async def home(request: Request) -> Response:
        overview = await asyncio.to_thread(read_overview, dashboard.app)
        return dashboard.page(
            request,
            "overview.html",
            overview=overview,
            chart=throughput_chart(overview),
            series=SERIES,
            unfinished=UNFINISHED,
            finished=FINISHED,
            age=age,
        )

    return [Route("/", home, name=HOME)]
