"""The Overview page on both engines: counts by queue and state, the per-minute chart, live
nodes with their queues and heartbeat age, the leader, paused queues; signed in only."""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobsaga import App
from jobsaga.web import dashboard
from jobsaga.web.charts import Series, line_chart, nice_ceiling
from jobsaga.web.pages.overview import paused_queues, read_overview
from tests.helpers import wait_until
from tests.operations import workers as w
from tests.plugins.support import FakeClock, update_job
from tests.web.conftest import FULL, cookie_of

NOW = datetime(2026, 3, 1, 12, 0, 30, tzinfo=UTC)
"""The fixed clock's time: the chart's minutes run from 11:01 (minute 0) to 12:00 (59)."""
NODE: dict[str, Any] = {
    "poll_interval": 0.05,
    "control_interval": 0.1,
    "heartbeat_interval": 0.1,
    "rescue_after": 5.0,
    "leader_lease": 1.0,
    "grace_period": 2.0,
}


@contextlib.contextmanager
def signed_in(app: App) -> Iterator[TestClient]:
    board = dashboard(app, token=f"ops={FULL}")
    with TestClient(board.asgi, base_url="http://127.0.0.1") as test_client:
        test_client.cookies.set("jobsaga_token", cookie_of(board, FULL))
        yield test_client


@pytest.fixture
def fixed(make_app: Callable[..., App]) -> App:
    """An app whose clock stands at NOW, holding jobs in every state in two queues."""
    app = make_app(w.Noop, clock=FakeClock(NOW))

    def job(queue: str, **columns: Any) -> None:
        inserted = app.insert(w.Noop.new({}, queue=queue))
        if columns:
            update_job(app, inserted.id, **columns)

    at = NOW.replace(second=0)  # 12:00:00, minute 59
    for _ in range(2):
        job("default")  # available
    job("default", state="scheduled", scheduled_at=NOW + timedelta(hours=1))
    job("default", state="retryable", attempt=3, attempted_at=at - timedelta(minutes=1))  # 58
    job("default", state="executing", attempt=2, attempted_at=at, attempted_by="gone")  # 59
    job("mailers", state="completed", attempt=1, completed_at=at + timedelta(seconds=10))  # 59
    job(
        "mailers",
        state="completed",
        attempt=2,
        attempted_at=at - timedelta(minutes=2, seconds=5),  # 11:57:55, minute 56
        completed_at=at - timedelta(minutes=2),  # minute 57
    )
    job("mailers", state="completed", attempt=1, completed_at=at - timedelta(minutes=30))  # 29
    job("mailers", state="discarded", attempt=1, discarded_at=at - timedelta(minutes=15))  # 44
    job("mailers", state="cancelled", cancelled_at=at - timedelta(minutes=5))
    for _ in range(2):  # finished two hours ago: neither counted nor charted
        job(
            "mailers",
            state="completed",
            attempt=2,
            attempted_at=NOW - timedelta(hours=2),
            completed_at=NOW - timedelta(hours=2),
        )
    job("old", state="discarded", discarded_at=NOW - timedelta(hours=3))
    return app


@pytest.fixture
def fixed_client(fixed: App) -> Iterator[TestClient]:
    with signed_in(fixed) as test_client:
        yield test_client


def cells(page: str, table: str) -> dict[str, dict[str, int]]:
    """Per row (data-queue) of ``table``: state -> the number shown."""
    body = page.split(f'<table id="{table}">', 1)[1].split("</table>", 1)[0]
    found = {}
    for queue, row in re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', body, re.S):
        found[queue] = {s: int(n) for s, n in re.findall(r'data-state="(\w+)">(\d+)<', row)}
    return found


def svg_of(page: str) -> ET.Element:
    """The chart, parsed as the XML it must be."""
    return ET.fromstring(re.search(r"<svg class=\"chart\".*?</svg>", page, re.S)[0])  # type: ignore[index]


def test_counts_by_queue_and_state(fixed_client: TestClient) -> None:
    page = fixed_client.get("/")
    assert page.status_code == 200
    shown = cells(page.text, "queues")
    assert shown["default"] == {
        "available": 2,
        "scheduled": 1,
        "executing": 1,
        "retryable": 1,
        "completed": 0,
        "discarded": 0,
        "cancelled": 0,
    }
    assert shown["mailers"] == {
        "available": 0,
        "scheduled": 0,
        "executing": 0,
        "retryable": 0,
        "completed": 3,  # not the two of two hours ago
        "discarded": 1,
        "cancelled": 1,
    }
    assert "old" not in shown  # its only job finished three hours ago
    totals = dict(re.findall(r'<div class="n" data-state="(\w+)">(\d+)<', page.text))
    assert totals == {
        "available": "2",
        "scheduled": "1",
        "executing": "1",
        "retryable": "1",
        "completed": "3",
        "discarded": "1",
        "cancelled": "1",
    }


def test_per_minute_counts_and_chart(fixed: App, fixed_client: TestClient) -> None:
    overview = read_overview(fixed)
    assert overview.since == datetime(2026, 3, 1, 11, 1, tzinfo=UTC)
    minutes = {
        name: {i: n for i, n in enumerate(v) if n} for name, v in overview.per_minute.items()
    }
    assert minutes == {
        "completed": {29: 1, 57: 1, 59: 1},
        "failed": {44: 1},
        "retried": {56: 1, 58: 1, 59: 1},  # finished, waiting to retry, running
    }

    page = fixed_client.get("/").text
    svg = svg_of(page)
    ns = "{http://www.w3.org/2000/svg}"
    lines = {
        str(p.get("data-series")): p.get("points", "").split() for p in svg.iter(f"{ns}polyline")
    }
    assert sorted(lines) == ["completed", "failed", "retried"]
    assert all(len(points) == 60 for points in lines.values())
    ticks = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "x-tick"]
    assert ticks == ["11:10", "11:20", "11:30", "11:40", "11:50", "12:00"]
    y_ticks = [t.text for t in svg.iter(f"{ns}text") if t.get("class") == "y-tick"]
    assert y_ticks == ["0", "0.5", "1"]  # the peak is one job a minute
    titles = {
        t.get("class"): t.text for t in svg.iter(f"{ns}text") if "title" in str(t.get("class"))
    }
    assert titles == {"x-title": "minute (UTC)", "y-title": "jobs per minute"}
    # The last point of "completed" sits at the top (1 job in minute 59), the first at 0.
    top = min(float(p.split(",")[1]) for p in lines["completed"])
    assert float(lines["completed"][59].split(",")[1]) == top
    assert float(lines["completed"][0].split(",")[1]) > top
    for name, total in (("completed", 3), ("failed", 1), ("retried", 3)):
        assert re.search(rf'data-series="{name}">.*?{name}: <b>{total}</b>', page, re.S)


def test_chart_escapes_and_scales() -> None:
    chart = line_chart(
        [Series("<b>", [0, 7, 3], "red")], [(0, "a&b")], title="t", x_title="x", y_title="y"
    )
    svg = ET.fromstring(str(chart))
    assert svg.find("{http://www.w3.org/2000/svg}polyline").get("data-series") == "<b>"  # type: ignore[union-attr]
    assert "<b>" not in str(chart) and "a&amp;b" in str(chart)
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 200, 201)] == [1, 1, 5, 10, 20, 200, 500]


def test_a_live_node_its_queues_the_leader_and_paused_queues(
    make_app: Callable[..., App],
) -> None:
    w.reset()
    app = make_app(w.Noop, w.Hold)
    app.pause_queue("mailers")
    held = app.insert(w.Hold.new({}))
    node = app.node({"default": 3, "mailers": 2}, name="web-node", **NODE)
    with signed_in(app) as client, node.start_in_thread():
        try:
            wait_until(lambda: held.id in w.started, timeout=10)
            page = wait_until(lambda: _page_with(client, "<b>web-node</b>"), timeout=10)
        finally:
            w.release.set()
    rows = dict(re.findall(r'<tr data-node="web-node" data-queue="(\w+)">(.*?)</tr>', page, re.S))
    assert sorted(rows) == ["default", "mailers"]
    default = re.findall(r'<td class="num">(\d+)</td>', rows["default"])
    assert default == ["3", "1"]  # its limit, the held job running
    assert '<span class="badge s-running">leader</span>' in rows["default"]
    assert "paused" in rows["mailers"] and "paused" not in rows["default"]
    age = re.search(r'class="num heartbeat">([\d.]+) s<', rows["default"])
    assert age is not None and float(age[1]) < 5  # beats every 0.1 s
    assert re.search(r'id="leader">\s*<b>web-node</b>', page)
    assert '<li data-queue="mailers"><b>mailers</b> paused on every node</li>' in page
    assert 'data-queue="mailers"><td>mailers <span class="badge s-halted">paused</span>' in page
    w.reset()


def _page_with(client: TestClient, text: str) -> str | None:
    page = client.get("/").text
    return page if text in page and "running" in page and "heartbeat" in page else None


def test_no_live_node_no_leader_nothing_paused(client: TestClient) -> None:
    page = client.get("/").text
    assert "No live nodes" in page
    assert re.search(r'id="leader">\s*<span class="muted">none right now', page)
    assert '<p class="muted" id="paused">None.</p>' in page


def test_where_a_queue_is_paused() -> None:
    controls: list[dict[str, Any]] = [
        {"queue": "a", "node": "", "paused": True},
        {"queue": "a", "node": "n1", "paused": False},
        {"queue": "b", "node": "n2", "paused": True},
        {"queue": "b", "node": "n3", "paused": None},
        {"queue": "c", "node": "", "paused": False},
        {"queue": "d", "node": "", "paused": True},
    ]
    assert paused_queues(controls) == [
        ("a", "every node but n1"),
        ("b", "node n2"),
        ("d", "every node"),
    ]


def test_the_page_refreshes_itself(client: TestClient) -> None:
    """live.js swaps <main data-live>: the page has one, nothing in it that holds a refresh
    back (a form field, a checked box), and the same request live.js sends answers it."""
    page = client.get("/").text
    assert re.search(r'<main id="live"\s+data-live>', page)
    main = page.split("<main", 1)[1]
    assert "<input" not in main and "<form" not in main and "<select" not in main
    assert 'data-refresh="2000"' in page and "live.js" in page
    live = client.get("/", headers={"X-Live": "1"})
    assert live.status_code == 200 and '<figure class="chart"' in live.text


def test_the_page_needs_a_token(anonymous: TestClient) -> None:
    page = anonymous.get("/")
    assert page.status_code == 401 and "sign in" in page.text
    assert "Jobs by queue" not in page.text and "<svg" not in page.text
