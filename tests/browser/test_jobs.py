"""The jobs pages in a browser: filter the list, open a failed job, retry it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served
from .shop import fill


def test_filter_jobs_open_a_failed_one_and_retry_it(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    page.goto(served.url("/"))
    page.get_by_role("link", name="Jobs", exact=True).click()
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(8)  # every job of the shop, newest first

    page.get_by_label("queue").fill("mailers")
    page.get_by_role("button", name="filter").click()
    expect(rows).to_have_count(4)
    expect(page.locator("#count")).to_contain_text("4 jobs match")

    page.get_by_role("link", name="clear").click()
    page.locator("select[name=state]").select_option("discarded")
    page.get_by_role("button", name="filter").click()
    expect(rows).to_have_count(2)  # the declined card and the checkout whose saga failed
    page.get_by_label("queue").fill("payments")
    page.get_by_role("button", name="filter").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("card declined for order o-2")
    assert "state=discarded" in page.url and "queue=payments" in page.url
    shot(page, "jobs-filtered")

    rows.first.get_by_role("link", name=str(ids["declined"])).click()
    expect(page.locator("h1")).to_contain_text(f"job {ids['declined']}")
    expect(page.locator("h1 .badge")).to_have_text("discarded")
    expect(page.locator("table.errors")).to_contain_text("RuntimeError: card declined")
    shot(page, "job-failed")

    page.get_by_role("button", name="retry").click()
    expect(page.locator(".message")).to_be_visible()
    expect(page.locator("h1 .badge")).to_have_text("available")
    assert page.asked == [f"retry job {ids['declined']}?"]  # type: ignore[attr-defined]
    assert app.get_job(ids["declined"]).state.value == "available"
