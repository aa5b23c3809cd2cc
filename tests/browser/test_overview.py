"""The overview in a browser: jobs by queue and state, the per-minute chart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served, reload_until
from .shop import fill, settles


def test_the_overview_counts_jobs_by_queue_and_state(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    page.goto(served.url("/"))
    mailers = page.locator("#queues tr[data-queue=mailers]")
    expect(mailers.locator("td[data-state=available]")).to_have_text("1")
    expect(mailers.locator("td[data-state=completed]")).to_have_text("3")
    payments = page.locator("#queues tr[data-queue=payments]")
    expect(payments.locator("td[data-state=discarded]")).to_have_text("1")
    expect(page.locator("#throughput svg").first).to_be_visible()
    node = app.node({"mailers": 2, "payments": 1}, poll_interval=0.05, heartbeat_interval=0.1)
    with node.start_in_thread():
        assert settles(app, ids["waiting"]) == "completed"
        on_node = page.locator(f"#nodes tr[data-node='{node.name}']")  # a row per queue
        reload_until(page, lambda: on_node.count() == 2, "the live node's two queues")
        expect(mailers.locator("td[data-state=completed]")).to_have_text("4")
        shot(page, "overview")
