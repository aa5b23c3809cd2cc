"""The Queues & cron pages: each queue and live node (limit, paused, counts); pause, resume
and scale on every node or one, reaching the nodes' producers as ``jobsaga queues`` does;
bad input refused with the CLI's words; the crontab with next tick and last inserted job.
Both engines. The nodes run in other Apps on the same database, as in another process."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from jobsaga import App, CronEntry, Worker
from jobsaga.plugins.cron import insert_due, sync_entries
from jobsaga.web import Dashboard
from tests.helpers import wait_until
from tests.operations import workers as w
from tests.operations.conftest import NODE
from tests.plugins.support import FakeClock
from tests.plugins.test_cron import Tick


def row_cells(page: str, **attrs: str) -> list[str]:
    """The text of each cell of the table row carrying these ``data-`` attributes."""
    marks = "".join(f' data-{name}="{value}"' for name, value in attrs.items())
    found = re.search(rf"<tr[^>]*{re.escape(marks)}>(.*?)</tr>", page, re.S)
    assert found is not None, f"no row {attrs} in the page"
    cells = re.findall(r"<td[^>]*>(.*?)</td>", found.group(1), re.S)
    text = [re.sub(r"<[^>]+>", " ", cell) for cell in cells]
    return [" ".join(html.unescape(t).split()) for t in text]


def act(post: Callable[..., Any], client: TestClient, url: str, **data: str) -> str:
    sent = post(url, data, follow_redirects=False)
    assert sent.status_code == 303, sent.text
    assert sent.headers["location"].startswith("http://127.0.0.1/queues?msg=")
    page = client.get(sent.headers["location"])
    found = re.search(r'role="status">(.*?)</p>', page.text)
    assert found is not None
    return html.unescape(found.group(1))


def test_the_queues_table_shows_each_queue_and_live_node(
    make_app: Callable[..., App], client: TestClient, app: App
) -> None:
    runner = make_app(w.Noop)
    with runner.node({"default": 3, "mailers": 1}, name="web-node", **NODE).start_in_thread():
        app.pause_queue("mailers")
        wait_until(lambda: any(n.paused for q in app.list_queues() for n in q.nodes))
        app.insert_all([w.Noop.new({}, queue="mailers") for _ in range(2)])
        app.insert(w.Noop.new({}, queue="mailers", schedule_in=3600))
        page = client.get("/queues")

    assert page.status_code == 200
    assert row_cells(page.text, queue="mailers")[:9] == [
        "mailers", "2", "1", "0", "0", "", "0", "paused", "paused"
    ]  # fmt: skip
    node = row_cells(page.text, queue="mailers", node="web-node")
    assert node[0].startswith("↳ web-node started 20")
    assert node[5:9] == ["1", "0", "paused", "ok"]
    assert row_cells(page.text, queue="default", node="web-node")[5:9] == ["3", "0", "yes", "ok"]
    assert 'href="http://127.0.0.1/cron"' in page.text


def test_pause_and_resume_on_every_node_then_on_one(
    make_app: Callable[..., App], client: TestClient, post: Callable[..., Any], board: Dashboard
) -> None:
    seen: list[dict[str, Any]] = []
    board.app.telemetry.attach("test", "web.action", lambda e, m, meta: seen.append(dict(meta)))
    first, second = make_app(w.Noop), make_app(w.Noop)
    with (
        first.node({"default": 2}, name="n1", **NODE).start_in_thread() as t1,
        second.node({"default": 2}, name="n2", **NODE).start_in_thread() as t2,
    ):
        producers = {"n1": t1.node.producers["default"], "n2": t2.node.producers["default"]}
        wait_until(lambda: len(board.app.list_queues()[0].nodes) == 2)

        assert act(post, client, "/queues/default/pause") == "paused default on every node"
        wait_until(lambda: all(p.paused for p in producers.values()), timeout=5)
        assert board.app.list_queues()[0].paused is True

        assert act(post, client, "/queues/default/resume") == "resumed default on every node"
        wait_until(lambda: not any(p.paused for p in producers.values()), timeout=5)

        assert act(post, client, "/queues/default/pause", node="n1") == "paused default on n1"
        wait_until(lambda: producers["n1"].paused, timeout=5)
        assert not producers["n2"].paused
        # the page reads each node's heartbeat record, which says so at its next beat
        page = wait_until(
            lambda: (
                row_cells(text := client.get("/queues").text, queue="default", node="n1")[7]
                == "paused"
                and text
            )
        )
        assert row_cells(page, queue="default")[8].endswith("; n1: paused")
        assert row_cells(page, queue="default", node="n2")[7] == "yes"

        assert act(post, client, "/queues/default/resume", node="n1") == "resumed default on n1"
        wait_until(lambda: not producers["n1"].paused, timeout=5)
        [job] = first.insert_all([w.Noop.new({})])
        wait_until(lambda: first.get_job(job.id).state.is_final)  # type: ignore[union-attr]

    assert [(s["action"], s["queue"], s["node"], s["token"]) for s in seen] == [
        ("queue.pause", "default", None, "ops"),
        ("queue.resume", "default", None, "ops"),
        ("queue.pause", "default", "n1", "ops"),
        ("queue.resume", "default", "n1", "ops"),
    ]


def test_scale_on_every_node_and_on_one(
    make_app: Callable[..., App], client: TestClient, post: Callable[..., Any], app: App
) -> None:
    first, second = make_app(w.Noop), make_app(w.Noop)
    with (
        first.node({"default": 4}, name="n1", **NODE).start_in_thread() as t1,
        second.node({"default": 4}, name="n2", **NODE).start_in_thread() as t2,
    ):
        producers = {"n1": t1.node.producers["default"], "n2": t2.node.producers["default"]}
        wait_until(lambda: len(app.list_queues()[0].nodes) == 2)

        assert act(post, client, "/queues/default/scale", limit="1") == (
            "scaled default to 1 on every node"
        )
        wait_until(lambda: [p.limit for p in producers.values()] == [1, 1], timeout=5)
        assert act(post, client, "/queues/default/scale", limit=" 7 ", node="n2") == (
            "scaled default to 7 on n2"
        )
        wait_until(lambda: producers["n2"].limit == 7, timeout=5)
        assert producers["n1"].limit == 1
        wait_until(lambda: "7" in row_cells(client.get("/queues").text, queue="default", node="n2"))
        assert act(post, client, "/queues/default/scale", limit="default") == (
            "scaled default to each node's own limit on every node"
        )
        wait_until(lambda: [p.limit for p in producers.values()] == [4, 4], timeout=5)
        [default] = app.list_queues()
        assert default.concurrency is None and default.node_controls == {}


def test_bad_input_is_a_page_with_the_clis_message(
    make_app: Callable[..., App], client: TestClient, post: Callable[..., Any], app: App
) -> None:
    runner = make_app(w.Noop)
    with runner.node({"default": 2}, name="web-node", **NODE).start_in_thread():
        wait_until(lambda: bool(app.list_queues()))
        refusals = {
            ("/queues/default/pause", "node", "web-nod"): (
                "no node named &#39;web-nod&#39;; did you mean &#39;web-node&#39;? "
                "(known nodes: web-node (live))"
            ),
            ("/queues/defualt/resume", "node", ""): (
                "no job, node, control or registered worker uses queue &#39;defualt&#39;; "
                "did you mean &#39;default&#39;?"
            ),
            ("/queues/zzz/pause", "node", ""): "uses queue &#39;zzz&#39; (to set a control",
            ("/queues/default/scale", "limit", "0"): (
                "limit &#39;0&#39;: give a number &gt;= 1, or &#39;default&#39;"
            ),
            ("/queues/default/scale", "limit", "many"): "limit &#39;many&#39;: give a number",
            ("/queues/default/scale", "limit", ""): "limit &#39;&#39;: give a number",
            ("/queues/bad%20name/pause", "node", ""): "invalid queue name &#39;bad name&#39;",
        }
        for (url, field, value), message in refusals.items():
            refused = post(url, {field: value, "limit": "2"} if field == "node" else {field: value})
            assert refused.status_code == 400, (url, refused.text)
            assert message in refused.text, (url, refused.text)
            assert "Traceback" not in refused.text
        assert act(post, client, "/queues/default/scale", limit="2", node="web-node")
    assert app.list_queues()[0].paused is None  # nothing refused was applied
    assert app.list_queues()[0].node_controls == {"web-node": {"paused": None, "concurrency": 2}}


def test_a_read_only_token_sees_no_buttons(
    app: App, client: TestClient, viewer: TestClient
) -> None:
    app.insert(w.Noop.new({}, queue="mailers"))
    looked = viewer.get("/queues")
    assert looked.status_code == 200 and "mailers" in looked.text
    assert "<form" not in looked.text and "pause all" not in looked.text
    full = client.get("/queues").text
    assert "pause all" in full and 'name="limit"' in full and "<form" in full


def test_no_queues_says_so(client: TestClient) -> None:
    assert "no queues: no jobs, no live nodes, no controls" in client.get("/queues").text


def test_the_cron_page_lists_entries_next_tick_and_last_job(
    make_app: Callable[..., App], client: TestClient
) -> None:
    empty = client.get("/cron")
    assert empty.status_code == 200 and "no cron entries recorded" in empty.text
    clock = FakeClock()
    leader = make_app(Tick, clock=clock)
    entries = [
        CronEntry("* * * * *", Tick, name="minutely", args={"n": 1}),
        CronEntry("0 2 * * *", Tick, name="nightly", timezone="Europe/Paris"),
        CronEntry("@reboot", Tick, name="warmup", queue="default"),
    ]
    sync_entries(leader, entries)
    clock.advance(70)
    [inserted] = insert_due(leader, entries)

    page = client.get("/cron")

    assert page.status_code == 200 and "leader: none right now" in page.text
    minutely = row_cells(page.text, entry="minutely")
    assert minutely[:5] == ["minutely", "* * * * *", "tests.cron.Tick", "-", '{"n": 1}']
    assert re.fullmatch(r"20\d\d-\d\d-\d\d \d\d:\d\d:00 \((in \d+ s|now)\)", minutely[5])
    assert minutely[6].startswith("2026-03-01 12:01:00") and minutely[7] == "1"
    assert minutely[8] == f"#{inserted.id} available"
    nightly = row_cells(page.text, entry="nightly")
    assert nightly[1] == "0 2 * * * (Europe/Paris)" and nightly[6:9] == ["never", "0", "none yet"]
    assert re.match(r"20\d\d-\d\d-\d\d 0[01]:00:00", nightly[5])
    assert row_cells(page.text, entry="warmup")[3:6] == ["default", "-", "at boot"]
    assert 'href="http://127.0.0.1/queues"' in page.text


def test_the_queues_page_lists_registered_queues_without_reading_every_finished_job(
    app: App, client: TestClient
) -> None:
    """Queues come from unfinished jobs, nodes, controls and registered workers: a queue only
    finished jobs ever named is not looked for (that reads the whole jobs table)."""
    from jobsaga.operations.queues import QueueControl

    class Mailer(Worker, queue="mailers-only-registered"):
        def perform(self, job: Any) -> None:
            return None

    app.register(Mailer)
    assert "mailers-only-registered" in client.get("/queues").text
    names = [info.queue for info in QueueControl(app).overview(every_queue=False)]
    assert "mailers-only-registered" in names
