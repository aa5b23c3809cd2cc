"""The sagas pages in a browser: find a rolled-back run, open it, read its DAG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served
from .shop import fill


def test_a_rolled_back_run_shows_its_undone_steps_in_the_dag(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    page.goto(served.url("/"))
    page.get_by_role("link", name="Sagas", exact=True).click()
    runs = page.locator("table.runs tr.run")
    expect(runs).to_have_count(2)
    page.locator("select[name=status]").select_option("rolled_back")
    page.get_by_role("button", name="filter").click()
    expect(runs).to_have_count(1)
    expect(runs.first).to_contain_text(str(ids["lost"]))  # the job whose shipment failed
    shot(page, "runs-rolled-back")

    runs.first.locator("td a").first.click()
    expect(page.locator("h1 .badge")).to_have_text("rolled_back")
    dag = page.locator("svg.dag")
    expect(dag).to_be_visible()
    for name, outcome in (("reserve", "undone"), ("charge", "undone"), ("ship", "failed")):
        expect(dag.locator(f"g.step[data-step={name}]")).to_have_class(f"step o-{outcome}")
    expect(page.locator(".run-error")).to_contain_text("ConnectionError: carrier unreachable")
    expect(page.locator("table.steps tr[data-step=reserve]")).to_contain_text("undone")
    shot(page, "run-rolled-back")
