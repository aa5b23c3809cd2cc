"""The queues page in a browser: pause a queue a live node serves, then resume it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served
from .shop import SendReceipt, fill, settles


def test_pause_and_resume_a_queue_a_node_serves(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    node = app.node({"mailers": 2}, poll_interval=0.05, grace_period=1.0)
    with node.start_in_thread():
        assert settles(app, ids["waiting"]) == "completed"
        page.goto(served.url("/"))
        page.get_by_role("link", name="Queues & cron", exact=True).click()
        mailers = page.locator("tr.queue[data-queue=mailers]")
        expect(page.locator("tr.node[data-queue=mailers]")).to_have_count(1)  # the live node

        mailers.get_by_role("button", name="pause all").click()
        expect(page.locator(".message").first).to_contain_text("mailers")
        expect(mailers).to_contain_text("paused")
        held = app.insert(SendReceipt.new({"order": "o-10"}))
        assert settles(app, held.id, within=0.5) == "available"  # the node no longer fetches
        page.reload()
        expect(mailers.locator("td").nth(1)).to_have_text("1")  # available, waiting
        shot(page, "queues-paused")

        mailers.get_by_role("button", name="resume all").click()
        expect(mailers).not_to_contain_text("paused")
        assert settles(app, held.id) == "completed"
