"""The Sagas pages on both engines: the runs list and its filters, a run's page (its DAG as
SVG coloured by outcome, the trail, the timeline of tries), a composed run's parts and child
runs, rolling back a stuck run from the page (and the refusal while its job may resume it)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from jobsaga import App, StepContext, Workflow, step
from jobsaga.testing import run_workflow
from jobsaga.workflow import RunStatus, get_run, list_runs
from jobsaga.workflow.parts import Map, compose
from tests.workflow.conftest import TRAIL
from tests.workflow.test_resume import OrderWorker, cut_short


class Booking(Workflow, inputs=["fail"]):
    @step
    def reserve(self, ctx: StepContext[Any]) -> str:
        return "seat-1"

    @reserve.undo
    def release(self, result: str, ctx: StepContext[Any]) -> None:
        pass

    @step(max_retries=2, retry_on=(ConnectionError,), backoff=0.001)
    def quote(self, ctx: StepContext[Any]) -> int:
        if ctx.tries < 3:
            raise ConnectionError("pricing busy")
        return 120

    @quote.undo
    def forget(self, result: int, ctx: StepContext[Any]) -> None:
        pass

    @step(max_retries=0)
    def charge(self, reserve: str, quote: int, fail: bool) -> str:
        if fail:
            raise RuntimeError("card declined")
        return f"paid {quote} for {reserve}"


class Other(Workflow):
    @step
    def only(self) -> int:
        return 1


class Leaf(Workflow, inputs=["item"]):
    @step
    def work(self, item: int) -> int:
        return item + 1


class Fleet(Workflow, inputs=["items"]):
    class each(Map, over="items", element="item"):
        ship = compose(Leaf, inputs={"item": "item"})


def node(svg: str, name: str) -> str:
    """The opening tag of a step's box in the DAG (its class says its outcome)."""
    match = re.search(rf'<g class="([^"]*)" data-step="{re.escape(name)}">', svg)
    assert match is not None, f"no node {name!r} in {svg[:500]}"
    return match.group(1)


def svg_of(page: str, css: str) -> str:
    match = re.search(rf'<svg class="{css}".*?</svg>', page, re.S)
    assert match is not None
    return match.group(0)


def test_runs_are_listed_and_filtered_by_status_and_workflow(app: App, client: TestClient) -> None:
    failed = run_workflow(Booking, {"fail": True}, app=app)
    ok = run_workflow(Booking, {"fail": False}, app=app)
    other = run_workflow(Other, app=app)
    page = client.get("/runs")
    assert page.status_code == 200
    listed = re.findall(r'data-run="(\d+)"', page.text)
    assert listed == [str(other.run_id), str(ok.run_id), str(failed.run_id)]  # newest first
    assert f'href="http://127.0.0.1/runs/{failed.run_id}"' in page.text
    assert "at &#39;charge&#39;: RuntimeError: card declined" in page.text

    by_status = client.get("/runs", params={"status": "failed"})
    assert re.findall(r'data-run="(\d+)"', by_status.text) == [str(failed.run_id)]
    by_workflow = client.get("/runs", params={"workflow": Booking.name, "status": "succeeded"})
    assert re.findall(r'data-run="(\d+)"', by_workflow.text) == [str(ok.run_id)]
    limited = client.get("/runs", params={"limit": "1"})
    assert "newest 1 of 3 runs" in limited.text
    none = client.get("/runs", params={"workflow": "nope"})
    assert "no runs match these filters" in none.text

    bad = client.get("/runs", params={"status": "exploded"})
    assert bad.status_code == 400 and "unknown run status &#39;exploded&#39;" in bad.text
    assert client.get("/runs", params={"limit": "lots"}).status_code == 400


def test_a_rolled_back_run_draws_its_dag_trail_and_timeline(app: App, client: TestClient) -> None:
    result = run_workflow(Booking, {"fail": True}, app=app)
    assert result.status is RunStatus.ROLLED_BACK
    page = client.get(f"/runs/{result.run_id}")
    assert page.status_code == 200, page.text
    dag = svg_of(page.text, "dag")
    assert "o-undone" in node(dag, "reserve") and "o-undone" in node(dag, "quote")
    assert "o-failed" in node(dag, "charge")
    assert "<title>charge: FAILED</title>" in dag and "<title>reserve: undone</title>" in dag
    assert dag.count('class="edge"') == 2  # reserve -> charge, quote -> charge

    timeline = svg_of(page.text, "timeline")
    tries = re.findall(r'<rect class="bar b-(\w+)" data-step="quote" data-try="(\d)"', timeline)
    assert tries == [("retried", "1"), ("retried", "2"), ("succeeded", "3")]
    assert len(re.findall(r'data-step="charge" data-try', timeline)) == 1
    assert len(re.findall(r'class="undo u-undone"', timeline)) == 2

    trail = page.text[page.text.index('<table class="trail">') :]
    said = [
        "tries 1-2 failed × 2: ConnectionError: pricing busy",  # folded into one line
        "FAILED (try 1): RuntimeError: card declined",
        "undone",
    ]
    positions = [trail.index(text) for text in said]
    assert positions == sorted(positions)
    assert "rollback started by step charge" in page.text
    assert 'class="traceback"' in page.text and "in charge" in page.text
    assert "data-live" not in page.text  # a finished run does not refresh
    assert "roll back run" not in page.text  # an ended run has nothing to roll back


def test_a_composed_run_draws_its_part_and_links_its_child_runs(
    app: App, client: TestClient
) -> None:
    result = run_workflow(Fleet, {"items": [1, 2, 3, 4, 5, 6]}, app=app)
    assert result.ok, result.error
    assert result.run_id is not None
    run = get_run(app, result.run_id)
    assert run is not None and len(run.children) == 6
    page = client.get(f"/runs/{result.run_id}")
    dag = svg_of(page.text, "dag")
    assert "part" in node(dag, "each") and "o-succeeded" in node(dag, "each")
    assert "o-succeeded" in node(dag, "each[0].ship")
    assert 'data-step="each[4].ship"' not in dag  # past the first few: counted
    assert "… 3 more elements: 3 ok" in dag
    first = run.children[0]
    assert first.parent_step == "each[0].ship"
    assert f'href="http://127.0.0.1/runs/{first.id}"' in dag
    child = client.get(f"/runs/{first.id}")
    assert child.status_code == 200
    assert f'class="parent-run" href="http://127.0.0.1/runs/{result.run_id}"' in child.text
    assert "o-succeeded" in node(svg_of(child.text, "dag"), "work")


def stuck_run(app: App) -> tuple[int, int]:
    """A run left 'running' by an attempt cut short (its job still available)."""
    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"fail": False}))
    TRAIL.clear()
    asyncio.run(cut_short(app, job, False, "charge"))
    [run] = list_runs(app, job_id=job.id)
    assert run.status == "running" and run.id is not None
    return run.id, job.id


def test_a_stuck_run_is_rolled_back_from_its_page(
    app: App, client: TestClient, post: Callable[..., Any]
) -> None:
    run_id, job_id = stuck_run(app)
    page = client.get(f"/runs/{run_id}")
    assert "roll back run" in page.text and "data-live" in page.text
    assert "o-interrupted" in node(svg_of(page.text, "dag"), "charge")

    refused = post(f"/runs/{run_id}/rollback", {"reason": "cleanup"})
    assert refused.status_code == 200 and str(refused.url).startswith(
        f"http://127.0.0.1/runs/{run_id}?"
    )
    assert f"belongs to job {job_id}, which is available: its next attempt resumes" in refused.text
    assert 'class="message refusal"' in refused.text
    record = get_run(app, run_id)
    assert record is not None and record.status == "running"

    done = post(f"/runs/{run_id}/rollback", {"reason": "cleanup", "force": "1"})
    assert done.status_code == 200
    assert f"run {run_id}: rolled_back; undone: reserve" in done.text
    dag = svg_of(done.text, "dag")
    assert "o-undone" in node(dag, "reserve") and "o-not_started" in node(dag, "ship")
    assert "roll back run" not in done.text
    record = get_run(app, run_id)
    assert record is not None and record.status == "rolled_back"
    assert record.events_of("run.abandoned")[0].detail == {
        "reason": "cleanup",
        "type": "RunAbandoned",
    }

    again = post(f"/runs/{run_id}/rollback", {"force": "1"})
    assert "has ended already (rolled_back)" in again.text


def test_a_stuck_run_whose_job_was_discarded_rolls_back_unforced(
    app: App, post: Callable[..., Any]
) -> None:
    run_id, job_id = stuck_run(app)
    param = "%(id)s" if app.engine.dialect == "postgres" else ":id"
    with app.engine.transaction() as tx:  # as the lifeline does after a crash on the last attempt
        tx.execute(
            f"UPDATE jobsaga_jobs SET state = 'discarded' WHERE id = {param}", {"id": job_id}
        )
    done = post(f"/runs/{run_id}/rollback", {"reason": "node died"})
    assert f"run {run_id}: rolled_back; undone: reserve" in done.text


def test_an_unknown_run_is_a_404_page(client: TestClient, post: Callable[..., Any]) -> None:
    page = client.get("/runs/999999")
    assert page.status_code == 404 and "no run 999999" in page.text
    assert post("/runs/999999/rollback", {"force": "1"}).status_code == 404


def test_read_only_sees_no_rollback_button(app: App, viewer: TestClient) -> None:
    run_id, _ = stuck_run(app)
    page = viewer.get(f"/runs/{run_id}")
    assert page.status_code == 200
    assert "roll back run" not in page.text and "rollback-form" not in page.text
