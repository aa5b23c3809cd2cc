"""The live refresh (static/live.js) in a browser: a page takes in what changed without a
reload, and holds still while a box is ticked on it."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served
from .shop import SendReceipt

FAST = pytest.mark.parametrize("refresh_seconds", [0.1])


@FAST
def test_the_overview_takes_in_new_jobs_by_itself(app: App, served: Served, page: Page) -> None:
    expect(page.locator("#queues")).to_have_count(0)  # no jobs yet
    app.insert_all([SendReceipt.new({"order": f"o-{n}"}) for n in range(3)])
    available = page.locator("#queues tr[data-queue=mailers] td[data-state=available]")
    expect(available).to_have_text("3")
    assert page.evaluate("document.body.dataset.refreshed") is not None


@FAST
def test_a_ticked_box_holds_the_jobs_list_still(app: App, served: Served, page: Page) -> None:
    """Also when a refresh was under way as the box was ticked: live.js looks again before it
    swaps the page in (without that, about 1 run in 3 here lost the tick)."""
    app.insert(SendReceipt.new({"order": "o-1"}))
    page.goto(served.url("/jobs"))
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(1)
    box = rows.first.locator("input[type=checkbox]")
    box.check()
    app.insert(SendReceipt.new({"order": "o-2"}))
    page.wait_for_timeout(500)  # five refresh periods
    assert box.is_checked()  # a refresh under way when the box was ticked did not undo it
    expect(rows).to_have_count(1)
    box.uncheck()  # it keeps the focus: a focused checkbox alone does not hold the page
    expect(rows).to_have_count(2)
