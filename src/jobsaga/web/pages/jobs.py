"""The dashboard's Jobs pages: the filtered listing, one job, and batch cancel/retry/delete.

The listing pages by keyset (``after``/``before`` an id, on the primary key) rather than by
offset, so the thousandth page of a million jobs costs what the first does, and a page does
not shift when new jobs arrive. Its count stops at :data:`COUNT_CAP` ("10,000+"): an exact
count of a million rows on every refresh would cost more than the page. The confirmation of a
batch action counts exactly (per state, once). Batch actions go through the operations the
CLI uses, :data:`BATCH` jobs per transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, NoMatchFound, Route

from ...cli.job_view import parked_on
from ...cli.jobs import job_when, last_error
from ...cli.tables import clock, relative, when
from ...errors import ActionRefused
from ...job import MAX_JOB_ID, Job
from ...operations import JobFilter
from ...operations.jobs import ELIGIBLE, BulkKind, JobOperations, Preview
from ...workflow.records import FollowUpJob, RunRecord, follow_up_jobs, list_runs
from .jobs_query import JobQuery, form_fields, form_items, parse_query, selected_ids

if TYPE_CHECKING:
    from ...app import App
    from ..server import Dashboard

TITLE = "Jobs"
HOME = "jobs"
COUNT_CAP = 10_000
"""The listing counts matches up to this many, then says "10,000+"."""
BATCH = 1000
"""Jobs changed per transaction by a batch action (the CLI's bulk size)."""
ACTIONS: tuple[BulkKind, ...] = ("cancel", "retry", "delete")
PAST = {"cancel": "cancelled", "retry": "retried", "delete": "deleted"}
LEFT = {
    "cancel": "{n} {were} already finished",
    "retry": "{n} could not be retried (still pending or executing)",
    "delete": "{n} {were} executing (cancel them first)",
}


@dataclass(frozen=True)
class Page:
    jobs: list[Job[Any]]
    older: int | None
    """The cursor of the next page in the sort's order (None: this is the last)."""
    newer: int | None
    """The cursor of the page before (None: this is the first)."""
    count: int
    capped: bool


def _states(action: BulkKind) -> str:
    states = list(ELIGIBLE[action])
    return ", ".join(states[:-1]) + f" and {states[-1]}"


def list_page(app: App, query: JobQuery) -> Page:
    """One page of the listing: ``limit + 1`` rows read to know whether another page follows."""
    forward = query.sort == "newest"  # newest first walks ids downwards
    flt, newest_first, reverse = query.flt, forward, False
    if query.after is not None:
        bound = {"max_id": query.after - 1} if forward else {"min_id": query.after + 1}
        flt = flt.model_copy(update=bound)
    elif query.before is not None:
        bound = {"min_id": query.before + 1} if forward else {"max_id": query.before - 1}
        flt, newest_first, reverse = flt.model_copy(update=bound), not forward, True
    found = app.list_jobs(flt, limit=query.limit + 1, newest_first=newest_first)
    more = len(found) > query.limit
    found = found[: query.limit]
    if reverse:
        found.reverse()
    has_newer = more if reverse else query.after is not None
    has_older = True if reverse else more
    count = count_capped(app, query.flt)
    return Page(
        jobs=found,
        older=found[-1].id if found and has_older else None,
        newer=found[0].id if found and has_newer else None,
        count=count,
        capped=count >= COUNT_CAP,
    )


def count_capped(app: App, flt: JobFilter) -> int:
    engine = app.engine
    with engine.read() as tx:
        rows = tx.execute(
            engine.queries["count_jobs_capped"], {**flt.params(engine), "cap": COUNT_CAP}
        )
    return int(rows[0]["n"])


def run_link(request: Request, run_id: int) -> str:
    """The Sagas page of a run (``/runs/<id>``), by route name when that page exists."""
    try:
        return str(request.url_for("run", run_id=run_id))
    except NoMatchFound:
        return str(request.url_for(HOME)).removesuffix("/jobs") + f"/runs/{run_id}"


def job_id_of(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_JOB_ID:
        raise HTTPException(404, f"no job {text!r}: job ids are whole numbers from 1")
    return int(text)


@dataclass(frozen=True)
class JobDetail:
    job: Job[Any]
    runs: list[RunRecord]
    follow_ups: dict[int, list[FollowUpJob]]
    now: datetime


def read_job(app: App, job_id: int) -> JobDetail:
    job = app.get_job(job_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id} (never inserted, or deleted or pruned since)")
    runs = list_runs(app, job_id=job_id, top_level=True, limit=None)
    follow_ups = {run.id: follow_up_jobs(app, run.id) for run in runs if run.id is not None}
    return JobDetail(job, runs, {k: v for k, v in follow_ups.items() if v}, app.now())


def timings(job: Job[Any]) -> list[tuple[str, str]]:
    """How long the job waited and ran, as far as its times tell."""
    found: list[tuple[str, str]] = []
    if job.attempted_at is not None:
        waited = (job.attempted_at - job.scheduled_at).total_seconds()
        found.append(("waited (scheduled to attempted)", f"{max(waited, 0):.3f} s"))
        ended = job.completed_at or job.discarded_at or job.cancelled_at
        if ended is not None and ended >= job.attempted_at:
            ran = (ended - job.attempted_at).total_seconds()
            found.append(("last attempt to its end", f"{ran:.3f} s"))
    return found


def outcome(action: BulkKind, done: int, before: Preview, asked: int | None) -> str:
    """``cancelled 37; 2 were already finished (2 completed)``."""
    text = f"{PAST[action]} {done} job" + ("" if done == 1 else "s")
    left = before.total - done
    if left > 0:
        states = ", ".join(f"{n} {state}" for state, n in before.unchangeable.items())
        words = LEFT[action].format(n=left, were="was" if left == 1 else "were")
        text += f"; {words}" + (f" ({states})" if states else "")
    if asked is not None and asked > before.total:
        gone = asked - before.total
        text += f"; {gone} no longer existed"
    return text


def routes(dashboard: Dashboard) -> list[BaseRoute]:
    app = dashboard.app

    def home(request: Request) -> Response:
        query = parse_query(request.query_params, app.now())
        page = list_page(app, query)
        return dashboard.page(
            request,
            "jobs.html",
            query=query,
            page=page,
            fields=form_fields(query),
            msg=request.query_params.get("msg", ""),
            now=app.now(),
            when=when,
            job_when=job_when,
            last_error=last_error,
            actions=ACTIONS,
        )

    def confirm(request: Request) -> Response:
        params = request.query_params
        query = parse_query(params, app.now())
        action, scope = _action_of(params.get("do", ""))
        ids = selected_ids(params)
        flt = _target(query, scope, ids)
        preview = JobOperations(app).preview(action, flt)
        acting = [("do", f"{action}:{scope}"), *form_items(query), *(("id", i) for i in ids)]
        return dashboard.page(
            request,
            "jobs_confirm.html",
            query=query,
            action=action,
            past=PAST[action],
            scope=scope,
            ids=ids,
            preview=preview,
            applies=_states(action),
            fields=form_fields(query),
            back=query.url(str(request.url_for(HOME))),
            act_url=f"{request.url_for('jobs_act')}?{urlencode(acting)}",
        )

    async def act(request: Request) -> Response:
        # what to act on rides in the confirmation form's URL (the body carries the CSRF
        # value); fields posted in the body count too
        params = Merged(request.query_params, await request.form())
        query = parse_query(params, app.now())
        action, scope = _action_of((params.getlist("do") or [""])[-1])
        ids = selected_ids(params)
        flt = _target(query, scope, ids)

        def run() -> str:
            ops = JobOperations(app)
            before = ops.preview(action, flt)
            change = {"cancel": ops.cancel, "retry": ops.retry, "delete": ops.delete}[action]
            done = change(flt, batch_size=BATCH)
            dashboard.acted(
                request,
                f"jobs.{action}",
                count=len(done),
                scope=scope,
                filter=query.description if scope == "all" else None,
                ids=ids if scope == "selected" else None,
            )
            return outcome(action, len(done), before, len(ids) if scope == "selected" else None)

        message = await asyncio.to_thread(run)
        target = query.url(str(request.url_for(HOME)), msg=message)
        return RedirectResponse(target, 303)

    def show(request: Request) -> Response:
        detail = read_job(app, job_id_of(request.path_params["job_id"]))
        job = detail.job
        return dashboard.page(
            request,
            "job.html",
            detail=detail,
            job=job,
            parked=parked_on(job),
            enqueued_by=_enqueued_by(job),
            timings=timings(job),
            msg=request.query_params.get("msg", ""),
            run_link=lambda run_id: run_link(request, run_id),
            clock=clock,
            relative=relative,
            now=detail.now,
            eligible={a: job.state.value in ELIGIBLE[a] for a in ACTIONS},
            actions=ACTIONS,
        )

    def act_one(request: Request) -> Response:
        job_id = job_id_of(request.path_params["job_id"])
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404, f"no action {action!r} (cancel, retry or delete)")
        ops = JobOperations(app)
        state = ops.states_of([job_id]).get(job_id)
        if state is None:
            raise HTTPException(404, f"no job {job_id} (never inserted, or deleted since)")
        if state not in ELIGIBLE[action]:
            raise ActionRefused(
                f"job {job_id} is {state}: {action} applies only to {_states(action)} jobs"
            )
        change = {"cancel": ops.cancel, "retry": ops.retry, "delete": ops.delete}[action]
        done = change(JobFilter(ids=[job_id]))
        dashboard.acted(request, f"job.{action}", job_id=job_id, changed=bool(done))
        if not done:  # it changed state between the read and the write
            message = f"job {job_id} changed state meanwhile; nothing was {PAST[action]}"
        else:
            message = f"{PAST[action]} job {job_id}"
        if action == "delete" and done:
            return RedirectResponse(f"{request.url_for(HOME)}?{_msg(message)}", 303)
        return RedirectResponse(
            f"{request.url_for('job', job_id=str(job_id))}?{_msg(message)}", 303
        )

    return [
        Route("/jobs", home, name=HOME),
        Route("/jobs/confirm", confirm, name="jobs_confirm"),
        Route("/jobs/act", act, methods=["POST"], name="jobs_act"),
        Route("/jobs/{job_id}", show, name="job"),
        Route("/jobs/{job_id}/{action}", act_one, methods=["POST"], name="job_act"),
    ]


def _msg(message: str) -> str:
    return urlencode({"msg": message})


class Merged:
    """A query string and a form read as one multi-dict."""

    def __init__(self, *sources: Any) -> None:
        self.sources = sources

    def getlist(self, key: Any) -> list[Any]:
        return [value for source in self.sources for value in source.getlist(key)]


def _action_of(value: str) -> tuple[BulkKind, str]:
    """``cancel:selected`` / ``retry:all`` from the listing's buttons."""
    action, _, scope = value.partition(":")
    if action not in ACTIONS or scope not in ("selected", "all"):
        raise ActionRefused(f"do={value!r}: give cancel, retry or delete, then :selected or :all")
    return action, scope  # type: ignore[return-value]


def _target(query: JobQuery, scope: str, ids: list[int]) -> JobFilter:
    if scope == "selected":
        if not ids:
            raise ActionRefused("no jobs selected: tick the jobs to act on first")
        return JobFilter(ids=ids)
    if query.flt.is_empty:
        raise ActionRefused(
            "an action on all matching jobs needs a filter (a state will do): with none, it "
            "would change every job"
        )
    return query.flt


def _enqueued_by(job: Job[Any]) -> int | None:
    run_id = job.meta.get("enqueued_by_run")
    return run_id if isinstance(run_id, int) and not isinstance(run_id, bool) else None
