"""The dashboard's Sagas pages: runs filtered by status and workflow, and a run's page (its
DAG coloured by outcome, the trail, the timeline of tries), from which a stuck run is rolled
back under the rules of ``jobsaga runs rollback``.

What the page says of each step and event is what ``jobsaga runs show`` says: both read it
from :mod:`jobsaga.workflow.trail_text`.
"""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from ...errors import ActionRefused, RunStateError
from ...workflow import RunStatus, get_run, list_runs, roll_back_run
from ...workflow.inputs import known_workflows
from ...workflow.records import RunRecord, count_runs, follow_up_jobs
from ...workflow.trail_text import (
    event_numbers,
    fold_traceback,
    folded_text,
    seconds,
    trail_lines,
)
from ..dag_svg import outcome_class, outcomes_of, run_dag_svg
from ..timeline_svg import run_timeline_svg

if TYPE_CHECKING:
    from ..server import Dashboard

TITLE = "Sagas"
HOME = "runs"
STATUSES = ["failed", *(s.value for s in RunStatus if s.value != "failed")]
"""The status filter's choices: ``failed`` is every failed ending, as in ``runs list``."""
UNFINISHED = (RunStatus.RUNNING.value, RunStatus.ROLLING_BACK.value, RunStatus.HALTED.value)
LIMIT, MOST = 50, 500


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    app = dashboard.app

    async def home(request: Request) -> Response:
        q = request.query_params
        status = q.get("status") or None
        workflow = (q.get("workflow") or "").strip() or None
        limit = _limit(q.get("limit"))
        filters: dict[str, Any] = {"status": status, "workflow": workflow}
        found = await asyncio.to_thread(list_runs, app, **filters, limit=limit)
        total = (
            await asyncio.to_thread(count_runs, app, **filters)
            if len(found) == limit
            else len(found)
        )
        return dashboard.page(
            request,
            "runs.html",
            runs=[_row(run) for run in found],
            total=total,
            status=status or "",
            workflow=workflow or "",
            limit=limit,
            statuses=STATUSES,
            workflows=sorted(known_workflows(app)),
        )

    async def show(request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        run = await asyncio.to_thread(get_run, app, run_id)
        if run is None:
            raise HTTPException(404, f"no run {run_id}")
        job_runs = (
            await asyncio.to_thread(list_runs, app, job_id=run.job_id, top_level=True, limit=20)
            if run.job_id is not None
            else []
        )
        follow_ups = await asyncio.to_thread(follow_up_jobs, app, run_id)
        outcomes = outcomes_of(run)

        def link(child: int) -> str:
            return str(request.url_for("run", run_id=child))

        return dashboard.page(
            request,
            "run.html",
            run=run,
            took=_took(run),
            steps=[
                {
                    "record": s,
                    "outcome": outcomes[s.step],
                    "css": outcome_class(outcomes[s.step].split(" → ")[0]),
                    "traceback": _traceback(s.error),
                }
                for s in run.steps
            ],
            dag_svg=run_dag_svg(run, link, outcomes),
            timeline_svg=run_timeline_svg(run),
            trail=_trail(run),
            error_traceback=_traceback(run.error),
            halt=_halt(run) if run.status == RunStatus.HALTED.value else None,
            job_runs=[r for r in job_runs if r.id != run.id],
            follow_ups=follow_ups,
            can_roll_back=run.status in UNFINISHED and run.parent_step is None,
            live=run.status in UNFINISHED,
            msg=request.query_params.get("msg", ""),
            refused=request.query_params.get("refused") == "1",
        )

    async def rollback(request: Request) -> Response:
        run_id = int(request.path_params["run_id"])
        form = await request.form()
        reason = str(form.get("reason") or "").strip() or "rolled back by an operator"
        force = str(form.get("force") or "") in ("1", "on", "true", "yes")
        back = str(request.url_for("run", run_id=run_id))
        try:
            result = await asyncio.to_thread(roll_back_run, app, run_id, reason=reason, force=force)
        except RunStateError as exc:
            if await asyncio.to_thread(get_run, app, run_id) is None:
                raise HTTPException(404, f"no run {run_id}") from None
            dashboard.acted(request, "run.rollback", run=run_id, force=force, refused=str(exc))
            return RedirectResponse(f"{back}?{urlencode({'msg': str(exc), 'refused': 1})}", 303)
        error = result.error
        if error is None:  # a rollback always ends with the error that started it
            raise ActionRefused(f"run {run_id}: {result.status.value}")
        undone = ", ".join(error.undone) or "nothing"
        text = f"run {run_id}: {result.status.value}; undone: {undone}"
        for failure in error.undo_errors:
            text += f"; undo of {failure.step!r} failed: {failure.error}"
        dashboard.acted(
            request, "run.rollback", run=run_id, force=force, reason=reason, status=result.status
        )
        query = {"msg": text, **({"refused": 1} if error.undo_errors else {})}
        return RedirectResponse(f"{back}?{urlencode(query)}", 303)

    return [
        Route("/runs", home, name=HOME),
        Route("/runs/{run_id:int}", show, name="run"),
        Route("/runs/{run_id:int}/rollback", rollback, methods=["POST"], name="run_rollback"),
    ]


def _limit(text: str | None) -> int:
    if not text:
        return LIMIT
    try:
        limit = int(text)
    except ValueError:
        raise ActionRefused(f"limit must be a number of runs, not {text!r}") from None
    if not 1 <= limit <= MOST:
        raise ActionRefused(f"limit must be between 1 and {MOST}, not {limit}")
    return limit


def _took(run: RunRecord) -> str:
    if run.finished_at is None:
        return ""
    return seconds((run.finished_at - run.started_at).total_seconds())


def _row(run: RunRecord) -> dict[str, Any]:
    error = run.error or {}
    step = str(error.get("step") or "")
    if not error:
        said = ""
    elif step.startswith("("):
        said = f"{step.strip('()')}: {error.get('message', '')}"
    else:
        kind = str(error.get("type", "")).rsplit(".", 1)[-1]
        said = f"at {step!r}: {kind}: {error.get('message', '')}"
    return {"run": run, "took": _took(run), "error": said}


def _traceback(error: dict[str, Any] | None) -> dict[str, str] | None:
    """A recorded error's traceback: the user's frames with jobsaga's folded, and all of it."""
    text = str((error or {}).get("traceback") or "")
    if not text.strip():
        return None
    return {
        "folded": "\n".join(fold_traceback(text, command="the full traceback")),
        "full": text.rstrip(),
    }


def _trail(run: RunRecord) -> list[dict[str, Any]]:
    """The trail's lines as ``runs show`` folds them, with their clock times (UTC)."""
    rows = []
    for line in trail_lines(run):
        at = line.at.astimezone(UTC) if line.at.tzinfo else line.at.replace(tzinfo=UTC)
        rows.append(
            {
                "numbers": event_numbers(line),
                "at": at.strftime("%H:%M:%S.%f")[:-3],
                "attempt": line.attempt,
                "step": line.step or "",
                "kind": line.kind,
                "text": folded_text(line) if line.folded else line.text,
            }
        )
    return rows


def _halt(run: RunRecord) -> str:
    """Why a halted run halted, from its trail's own words (its last halt event)."""
    for line in reversed(trail_lines(run)):
        if line.kind in ("step.halted", "run.halted"):
            who = f"step {line.step!r} " if line.step else ""
            return f"{who}{line.text}"
    return "halted (no halting step recorded)"
