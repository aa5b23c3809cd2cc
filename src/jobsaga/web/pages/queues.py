"""The dashboard's Queues & cron pages: each queue across the live nodes, with pause, resume
and scale on every node or one; the crontab the cluster runs.

The actions are the CLI's (``jobsaga queues pause|resume|scale``): the same operations
(:class:`~jobsaga.operations.queues.QueueControl` through the app), so a control persists,
reaches the nodes at once and holds for nodes that start later, exactly as from a terminal;
and the same checks, worded the same (an unknown node names the known ones, a misspelt
queue gets a did-you-mean hint, a limit is a number >= 1 or ``default``). One difference:
the CLI only warns about a queue nothing uses (a control may be set before its nodes
start), while the dashboard refuses it, since its forms only ever name listed queues: such a
name came from an edited URL, most likely a typo, and the terminal remains the way to set a
control ahead of the nodes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...cli.cron import cron_entries, current_leader, schedule_text
from ...cli.queues import control_text, health_text, unhealthy_lines
from ...cli.tables import when
from ...errors import ActionRefused
from ...operations import QueueInfo
from ...operations.queues import QueueControl
from ...suggest import did_you_mean
from ...worker import check_queue_name

if TYPE_CHECKING:
    from ...app import App
    from ..server import Dashboard

TITLE = "Queues & cron"
HOME = "queues"
CRON = "cron"


# --- reading ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueuesView:
    """What the queues page shows, read in one go (off the event loop)."""

    queues: list[QueueInfo]
    unhealthy: list[str]
    now: datetime


def read_queues(app: App) -> QueuesView:
    control = QueueControl(app)
    health = {node.name: node.record for node in control.live_nodes()}
    # not every queue any finished job ever named: that reads the whole jobs table
    queues = control.overview(every_queue=False)
    return QueuesView(queues, unhealthy_lines(health), app.clock())


@dataclass(frozen=True, slots=True)
class CronRow:
    """A recorded cron entry, its next tick and the job its last tick inserted."""

    entry: dict[str, Any]
    schedule: str
    next_tick: str
    last_tick: str
    last_job: Any
    """The newest job carrying the entry's name (None when it never ticked, or was pruned)."""


def last_cron_job(app: App, entry: dict[str, Any]) -> Any:
    """The newest job an entry inserted: its jobs carry ``meta.cron_name`` (one keyset
    lookup, newest first, limit 1; skipped for an entry that never ticked)."""
    if not entry["ticks"]:
        return None
    found = app.list_jobs(worker=entry["worker"], meta={"cron_name": entry["name"]}, limit=1)
    return found[0] if found else None


def read_cron(app: App) -> tuple[list[CronRow], str | None]:
    now = app.clock()
    rows = [
        CronRow(
            entry=entry,
            schedule=schedule_text(entry),
            next_tick=when(entry["next_run"], now) or "at boot",
            last_tick=when(entry["last_tick"], now) or "never",
            last_job=last_cron_job(app, entry),
        )
        for entry in cron_entries(app)
    ]
    return rows, current_leader(app)


# --- acting ----------------------------------------------------------------------------------


def parse_limit(text: str) -> int | None:
    """A limit as ``jobsaga queues scale`` takes it: a number >= 1, or ``default`` (None:
    each node's own configured limit)."""
    text = text.strip()
    if text == "default":
        return None
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ActionRefused(f"limit {text!r}: give a number >= 1, or 'default'")


def checked(app: App, queue: str, node: str | None, verb: str) -> None:
    """The CLI's checks before a control: a valid queue name, a known node (the known ones
    listed, the closest suggested), and a queue something uses (see the module's doc)."""
    check_queue_name(queue)
    control = QueueControl(app)
    problem = control.unknown_node(node)
    if problem is not None:
        raise ActionRefused(problem)
    if control.unused_queue(queue) is not None:
        hint = did_you_mean(queue, sorted(control.queues_in_use()))
        suggestion = f"; {hint}" if hint else ""
        raise ActionRefused(
            f"no job, node, control or registered worker uses queue {queue!r}{suggestion} "
            f"(to set a control before the nodes that run it start: jobsaga queues {verb} "
            f"{queue})"
        )


def node_of(form: Any) -> str | None:
    """The form's ``node``: absent or blank means every node."""
    value = str(form.get("node") or "").strip()
    return value or None


def where(node: str | None) -> str:
    return node or "every node"


# --- routes ----------------------------------------------------------------------------------


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    app = dashboard.app

    async def home(request: Request) -> Response:
        view = await asyncio.to_thread(read_queues, app)
        return dashboard.page(
            request,
            "queues.html",
            view=view,
            when=when,
            control_text=control_text,
            health_text=health_text,
            msg=request.query_params.get("msg", ""),
        )

    async def cron(request: Request) -> Response:
        rows, leader = await asyncio.to_thread(read_cron, app)
        return dashboard.page(request, "cron.html", rows=rows, leader=leader)

    def back(request: Request, message: str) -> Response:
        target = request.url_for(HOME).include_query_params(msg=message)
        return RedirectResponse(str(target), status_code=303)

    async def pause(request: Request) -> Response:
        return await toggle(request, paused=True)

    async def resume(request: Request) -> Response:
        return await toggle(request, paused=False)

    async def toggle(request: Request, *, paused: bool) -> Response:
        queue = request.path_params["queue"]
        node = node_of(await request.form())
        verb = "pause" if paused else "resume"

        def run() -> None:
            checked(app, queue, node, verb)
            if paused:
                app.pause_queue(queue, node=node)
            else:
                app.resume_queue(queue, node=node)

        await asyncio.to_thread(run)
        dashboard.acted(request, f"queue.{verb}", queue=queue, node=node)
        return back(request, f"{verb}d {queue} on {where(node)}")

    async def scale(request: Request) -> Response:
        queue = request.path_params["queue"]
        form = await request.form()
        node = node_of(form)
        limit = parse_limit(str(form.get("limit") or ""))

        def run() -> None:
            checked(app, queue, node, "scale")
            app.scale_queue(queue, limit, node=node)

        await asyncio.to_thread(run)
        dashboard.acted(request, "queue.scale", queue=queue, node=node, limit=limit)
        shown = str(limit) if limit is not None else "each node's own limit"
        return back(request, f"scaled {queue} to {shown} on {where(node)}")

    return [
        Route("/queues", home, name=HOME),
        Route("/queues/{queue}/pause", pause, methods=["POST"], name="queue_pause"),
        Route("/queues/{queue}/resume", resume, methods=["POST"], name="queue_resume"),
        Route("/queues/{queue}/scale", scale, methods=["POST"], name="queue_scale"),
        Route("/cron", cron, name=CRON),
    ]
