"""The queues page in a browser: pause a queue a live node serves, then resume it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from jobsaga import App

from .conftest import Served, reload_until
from .shop import SendReceipt, fill, settles


def test_pause_and_resume_a_queue_a_node_serves(
    app: App, served: Served, page: Page, shot: Callable[[Page, str], Path]
) -> None:
    ids = fill(app)
    node = app.node(
        {"mailers": 2}, poll_interval=0.05, heartbeat_interval=0.1, control_interval=0.05
    )
    with node.start_in_thread():
        assert settles(app, ids["waiting"]) == "completed"
        page.goto(served.url("/"))
        page.get_by_role("link", name="Queues & cron", exact=True).click()
        mailers = page.locator("tr.queue[data-queue=mailers]")
        on_node = page.locator(f"tr.node[data-queue=mailers][data-node='{node.name}']")
        reload_until(page, lambda: on_node.count() == 1, "the live node under mailers")

        mailers.get_by_role("button", name="pause all").click()
        expect(page.locator(".message").first).to_contain_text("mailers")
        expect(mailers).to_contain_text("paused")
        # The node's heartbeat says it stopped fetching: only then is a new job sure to wait.
        reload_until(page, lambda: "paused" in on_node.inner_text(), "the node paused")
        held = app.insert(SendReceipt.new({"order": "o-10"}))
        assert settles(app, held.id, within=0.5) == "available"  # the node no longer fetches
        page.reload()
        expect(mailers.locator("td").nth(1)).to_have_text("1")  # available, waiting
        shot(page, "queues-paused")

        mailers.get_by_role("button", name="resume all").click()
        expect(mailers).not_to_contain_text("paused")
        assert settles(app, held.id) == "completed"
