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
    shot(page, "jobs")

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


def test_retry_the_failed_jobs_in_one_go_through_the_confirmation(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    page.goto(served.url("/jobs?state=discarded"))
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(2)
    page.get_by_role("button", name="retry all 2 matching").click()
    expect(page.locator("h1")).to_contain_text("retry 2 jobs matching")
    shot(page, "jobs-confirm")
    page.get_by_role("button", name="retry 2 jobs").click()
    expect(page.locator(".message")).to_contain_text("retried 2")
    states = {app.get_job(ids[name]).state.value for name in ("declined", "lost")}  # type: ignore[union-attr]
    assert states == {"available"}


def test_a_read_only_token_sees_no_action(app: App, served: Served, viewer_page: Page) -> None:
    ids = fill(app)
    viewer_page.goto(served.url(f"/jobs/{ids['declined']}"))
    expect(viewer_page.locator("h1 .badge")).to_have_text("discarded")
    expect(viewer_page.locator("main form[method=post]")).to_have_count(0)
    viewer_page.goto(served.url("/jobs"))
    expect(viewer_page.locator("table.jobs tbody tr")).to_have_count(8)
    expect(viewer_page.locator("input[type=checkbox]")).to_have_count(0)
    expect(viewer_page.get_by_role("button", name="retry selected")).to_have_count(0)
