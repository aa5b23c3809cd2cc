"""The dashboard's Jobs pages on both engines: the listing's filters (state, queue, worker,
tag, node, time range, args path, text), its sort and keyset pages, one job's page (errors
with tracebacks, saga runs and their follow-ups), batch cancel/retry/delete on a selection
and on every match (through a confirmation that counts), and bad input as 400/404 pages."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobsaga import App, Job, JobState, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.errors import FilterError
from jobsaga.testing.drain import drain_queue
from jobsaga.testing.runner import NODE
from jobsaga.workflow import list_runs

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Mail(Worker, queue="mail", name="web.mail", max_attempts=5):
    def perform(self, job: Job[Any]) -> None:
        if job.args.get("fail"):
            raise ValueError(f"smtp timeout for {job.args['to']}")


class Report(Worker, queue="reports", name="web.report", unique={"period": None}):
    def perform(self, job: Job[Any]) -> None:
        return None


class Receipt(Worker, queue="later", name="web.receipt"):
    def perform(self, job: Job[Any]) -> None:
        raise AssertionError("never run here")


class Order(Workflow, name="web.order", inputs=["order"]):
    @step
    def charge(self, order: str, ctx: StepContext[Any]) -> str:
        ctx.enqueue_after_success(Receipt.new({"order": order}))
        return f"c-{order}"


class OrderWorker(WorkflowWorker, workflow=Order, queue="saga", name="web.order_worker"):
    pass


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app(Mail, Report, Receipt, OrderWorker)


ROW = re.compile(r'/jobs/(\d+)">\1</a>')


def listed(client: TestClient, query: str = "") -> list[int]:
    page = client.get(f"/jobs?{query}")
    assert page.status_code == 200, page.text
    return [int(found) for found in ROW.findall(page.text)]


def mail(app: App, to: str, **opts: Any) -> int:
    args = opts.pop("args", {})
    return app.insert(Mail.new({"to": to, **args}, **opts)).id


# --- filters ---------------------------------------------------------------------------------


def test_each_filter_narrows_the_listing(app: App, client: TestClient) -> None:
    nl = mail(app, "a@x", args={"customer": {"country": "NL", "vip": True, "n": 3}}, tags=["vip"])
    de = mail(app, "b@x", args={"customer": {"country": "DE"}, "fail": True})
    late = mail(app, "c@x", scheduled_at=T0 + timedelta(days=400), tags=["vip", "eu"])
    zoe = mail(app, "zoë@x", scheduled_at=T0 + timedelta(days=500))
    report = app.insert(Report.new({"day": "mon"})).id
    drain_queue(app, "mail")  # nl completes, de fails (retryable); late/zoe are scheduled
    everything = [zoe, report, late, de, nl]
    assert listed(client) == sorted(everything, reverse=True)
    assert listed(client, "state=retryable") == [de]
    assert listed(client, "state=completed&state=retryable") == [de, nl]
    assert listed(client, "queue=reports") == [report]
    assert listed(client, "queue=reports,%20mail") == sorted(everything, reverse=True)
    assert listed(client, "worker=web.report") == [report]
    assert listed(client, "tag=vip") == [late, nl]
    assert listed(client, "tag=vip,eu") == [late]
    assert listed(client, f"node={NODE}") == [de, nl]
    assert listed(client, "node=elsewhere") == []
    window = f"since={(T0 + timedelta(days=450)).isoformat()}&time_field=scheduled_at"
    assert listed(client, window.replace("+", "%2B")) == [zoe]
    since = (T0 + timedelta(days=300)).isoformat().removesuffix("+00:00")  # UTC when naive
    until = f"until={(T0 + timedelta(days=450)).isoformat()}&since={since}"
    assert listed(client, until.replace("+", "%2B") + "&time_field=scheduled_at") == [late]
    assert listed(client, "args=args.customer.country:NL") == [nl]
    assert listed(client, "args=customer.country:DE") == [de]
    assert listed(client, "args=customer.vip:true&args=customer.n:3") == [nl]
    assert listed(client, "args=customer.country:NL&state=retryable") == []
    assert listed(client, "text=SMTP%20timeout") == [de]  # in the errors, any case
    assert listed(client, "text=zo%C3%AB") == [zoe]  # non-ASCII in args, on both engines
    assert listed(client, "text=100%25") == []  # LIKE's wildcards are matched as text
    page = client.get("/jobs?args=customer.country:NL")
    assert "1 job matches args.customer.country:NL" in page.text


def test_the_filter_criteria_behind_the_page(app: App) -> None:
    """What the page asks of ``list_jobs``: node, args_path, text and id bounds."""
    one = mail(app, "a@x", args={"customer": {"country": "NL"}, "note": "50%_off"})
    two = mail(app, "b@x", args={"customer": {"country": None}, "n": 2.5})
    three = mail(app, "c@x")

    def ids(**criteria: Any) -> list[int]:
        return [j.id for j in app.list_jobs(newest_first=False, **criteria)]

    assert ids(args_path={"customer.country": "NL"}) == [one]
    assert ids(args_path={"customer.country": "null"}) == []  # a JSON null reads as nothing
    assert ids(args_path={"n": "2.5"}) == [two]
    assert ids(args_path={"customer": "x"}) == []
    assert ids(text="50%_OFF") == [one]
    assert ids(text="0%_o") == [one] and ids(text="0%x") == []
    assert ids(min_id=two) == [two, three] and ids(max_id=two) == [one, two]
    assert ids(node="nowhere") == []
    assert sum(app.count_jobs(text="c@x").values()) == 1
    for bad, message in [
        ({"args_path": {"a..b": "x"}}, "empty key"),
        ({"args_path": {'a"b': "x"}}, "double quote"),
        ({"text": "a\x00b"}, "NUL"),
        ({"max_id": -1}, "id bounds"),
    ]:
        with pytest.raises(FilterError, match=message):
            app.list_jobs(**bad)


# --- sort and keyset pages ---------------------------------------------------------------------


def walk(client: TestClient, first: str) -> tuple[list[int], list[str]]:
    """Follow the 'next' links from ``first``; returns the ids seen and the pages' urls."""
    seen: list[int] = []
    urls = [first]
    url: str | None = first
    while url is not None:
        page = client.get(url)
        assert page.status_code == 200
        seen += [int(found) for found in ROW.findall(page.text)]
        found = re.search(r'rel="next" href="([^"]+)"', page.text)
        url = found.group(1).replace("&amp;", "&") if found else None
        if url is not None:
            urls.append(url)
    return seen, urls


def test_keyset_pages_cover_every_job_once_in_either_order(app: App, client: TestClient) -> None:
    ids = [mail(app, f"{n}@x") for n in range(23)]
    report = app.insert(Report.new({"day": "tue"})).id
    newest, urls = walk(client, "/jobs?queue=mail&limit=5")
    assert newest == sorted(ids, reverse=True) and len(urls) == 5
    oldest, _ = walk(client, "/jobs?queue=mail&limit=5&sort=oldest")
    assert oldest == ids
    assert report not in newest
    # the previous page of page 3 is page 2, its first page link page 1
    third = client.get(urls[2]).text
    previous = re.search(r'rel="prev" href="([^"]+)"', third)
    assert previous is not None
    assert [
        int(x) for x in ROW.findall(client.get(previous.group(1).replace("&amp;", "&")).text)
    ] == (sorted(ids, reverse=True)[5:10])
    assert 'rel="prev"' not in client.get("/jobs?queue=mail&limit=5").text


def test_pages_stay_stable_when_new_jobs_arrive(app: App, client: TestClient) -> None:
    ids = [mail(app, f"{n}@x") for n in range(12)]
    first = client.get("/jobs?limit=5").text
    seen = [int(x) for x in ROW.findall(first)]
    nxt = re.search(r'rel="next" href="([^"]+)"', first)
    assert nxt is not None
    arrived = [mail(app, f"new{n}@x") for n in range(7)]  # between two page loads
    rest, _ = walk(client, nxt.group(1).replace("&amp;", "&"))
    assert seen + rest == sorted(ids, reverse=True)  # none twice, none missing
    assert not set(arrived) & set(seen + rest)
    assert listed(client, "limit=7") == sorted(arrived, reverse=True)


def test_the_count_stops_at_its_cap(
    app: App, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobsaga.web.pages import jobs as jobs_page

    monkeypatch.setattr(jobs_page, "COUNT_CAP", 3)
    for n in range(5):
        mail(app, f"{n}@x")
    assert "3+ jobs match" in client.get("/jobs?queue=mail").text
    assert "2 jobs match" not in client.get("/jobs?queue=mail").text


# --- one job -----------------------------------------------------------------------------------


def test_a_job_page_shows_its_errors_times_node_and_key(app: App, client: TestClient) -> None:
    failing = mail(app, "x@y", args={"fail": True}, tags=["vip"], meta={"source": "signup"})
    drain_queue(app, "mail")
    drain_queue(app, "mail", with_scheduled=True)  # a second attempt, a second error
    page = client.get(f"/jobs/{failing}")
    assert page.status_code == 200
    text = page.text
    assert "Traceback (most recent call last)" in text
    assert "ValueError: smtp timeout for x@y" in text
    assert "attempts' errors (2)" in text
    assert NODE in text and "retryable" in text and "signup" in text and "vip" in text
    assert "waited (scheduled to attempted)" in text
    report = app.insert(Report.new({"day": "wed"}))
    shown = client.get(f"/jobs/{report.id}").text
    assert report.unique_key is not None and report.unique_key in shown
    assert "not attempted yet" in shown


def test_a_saga_job_links_its_runs_and_their_follow_ups(app: App, client: TestClient) -> None:
    job = app.insert(OrderWorker.new({"order": "o-1"}))
    drain_queue(app, "saga")
    runs = list_runs(app, job_id=job.id, top_level=True)
    assert len(runs) == 1 and runs[0].status == "succeeded"
    receipt = app.list_jobs(queue="later")[0]
    text = client.get(f"/jobs/{job.id}").text
    assert f'href="http://127.0.0.1/runs/{runs[0].id}"' in text
    assert f'href="http://127.0.0.1/jobs/{receipt.id}">job {receipt.id}</a>' in text
    follow = client.get(f"/jobs/{receipt.id}").text
    assert f'href="http://127.0.0.1/runs/{runs[0].id}">saga run {runs[0].id}</a>' in follow


def test_an_unknown_job_is_a_404_page(client: TestClient) -> None:
    for path, words in [
        ("/jobs/424242", "no job 424242"),
        ("/jobs/abc", "no job &#39;abc&#39;"),
        ("/jobs/99999999999999999999", "no job"),
    ]:
        page = client.get(path)
        assert page.status_code == 404 and words in page.text and "Traceback" not in page.text


def confirmed(client: TestClient, post: Callable[..., Any], query: str, **kw: Any) -> Any:
    """Open the confirmation of ``query`` and press its button, as a browser would."""
    ask = client.get(f"/jobs/confirm?{query}")
    assert ask.status_code == 200, ask.text
    found = re.search(r'<form method="post" action="([^"]+)"', ask.text)
    assert found is not None, ask.text
    return post(html.unescape(found.group(1)), **kw)


# --- actions -----------------------------------------------------------------------------------


def test_one_job_cancelled_retried_and_deleted_from_its_page(
    app: App, client: TestClient, post: Callable[..., Any]
) -> None:
    job_id = mail(app, "a@x", schedule_in=3600)
    page = client.get(f"/jobs/{job_id}").text
    assert "/cancel" in page and "/retry" not in page  # only what applies to its state
    done = post(f"/jobs/{job_id}/cancel", follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].endswith(
        f"/jobs/{job_id}?msg=cancelled+job+{job_id}"
    )
    assert app.get_job(job_id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert "cancelled job" in client.get(done.headers["location"]).text
    post(f"/jobs/{job_id}/retry")
    assert app.get_job(job_id).state is JobState.AVAILABLE  # type: ignore[union-attr]
    gone = post(f"/jobs/{job_id}/delete")
    assert gone.status_code == 200 and f"deleted job {job_id}" in gone.text
    assert app.get_job(job_id) is None


def test_an_action_on_a_job_in_the_wrong_state_says_why(app: App, post: Callable[..., Any]) -> None:
    job_id = mail(app, "a@x")
    drain_queue(app, "mail")
    refused = post(f"/jobs/{job_id}/cancel")
    assert refused.status_code == 400
    assert (
        f"job {job_id} is completed: cancel applies only to available, scheduled, retryable "
        "and executing jobs" in refused.text
    )
    assert post("/jobs/424242/retry").status_code == 404
    assert post(f"/jobs/{job_id}/explode").status_code == 404


def test_batch_actions_on_selected_jobs_confirm_with_the_count(
    app: App, client: TestClient, post: Callable[..., Any]
) -> None:
    one, two, three = (mail(app, f"{n}@x") for n in range(3))
    drain_queue(app, "mail", with_limit=1)  # `one` completes
    ask = client.get(f"/jobs/confirm?do=cancel:selected&id={one}&id={two}&id={three}&id=9999")
    assert ask.status_code == 200
    assert "cancel 2 selected jobs?" in ask.text
    assert "1 more selected but will be left as it is (1 completed)" in ask.text
    assert "1 of the selected jobs no longer exist" in ask.text
    done = confirmed(
        client,
        post,
        f"do=cancel:selected&id={one}&id={two}&id={three}&id=9999&queue=mail",
        follow_redirects=False,
    )
    assert done.status_code == 303
    shown = client.get(done.headers["location"]).text
    assert "cancelled 2 jobs; 1 was already finished (1 completed); 1 no longer existed" in shown
    assert 'value="mail"' in shown  # back to the same filter
    states = {j.id: j.state.value for j in app.list_jobs()}
    assert states == {one: "completed", two: "cancelled", three: "cancelled"}
    retried = confirmed(client, post, f"do=retry:selected&id={two}")
    assert "retried 1 job" in retried.text
    deleted = confirmed(client, post, f"do=delete:selected&id={one}&id={three}")
    assert "deleted 2 jobs" in deleted.text
    assert [j.id for j in app.list_jobs()] == [two]


def test_batch_actions_on_all_matching_jobs(
    app: App, client: TestClient, post: Callable[..., Any], board: Any
) -> None:
    events: list[dict[str, Any]] = []
    app.telemetry.attach("test", "web.action", lambda _name, _m, meta: events.append(dict(meta)))
    mails = [mail(app, f"{n}@x", args={"fail": n < 2}) for n in range(5)]
    other = app.insert(Report.new({"day": "thu"})).id
    drain_queue(app, "mail", with_limit=3)  # two retryable, one completed, two available
    ask = client.get("/jobs/confirm?do=cancel:all&queue=mail")
    assert "cancel 4 jobs matching queue=mail?" in ask.text
    assert "1 more matches but will be left as it is (1 completed)" in ask.text
    retry_ask = client.get("/jobs/confirm?do=retry:all&state=retryable&queue=mail")
    assert "retry 2 jobs matching state=retryable queue=mail?" in retry_ask.text
    page = client.get("/jobs?queue=mail")
    assert "cancel all 5 matching" in page.text
    done = confirmed(client, post, "do=cancel:all&queue=mail")
    assert "cancelled 4 jobs; 1 was already finished (1 completed)" in done.text
    assert app.get_job(other).state is JobState.AVAILABLE  # type: ignore[union-attr]
    nothing = client.get("/jobs/confirm?do=cancel:all&queue=mail")
    assert "nothing to cancel" in nothing.text and "jobs/act" not in nothing.text
    retried = confirmed(client, post, "do=retry:all&state=cancelled")
    assert "retried 4 jobs" in retried.text
    deleted = confirmed(client, post, "do=delete:all&queue=mail&state=available")
    assert "deleted 4 jobs" in deleted.text
    assert sorted(j.id for j in app.list_jobs()) == sorted([mails[2], other])
    actions = [(e["action"], e["count"], e["token"]) for e in events]
    assert actions == [
        ("jobs.cancel", 4, "ops"),
        ("jobs.retry", 4, "ops"),
        ("jobs.delete", 4, "ops"),
    ]
    assert events[0]["filter"] == "queue=mail"


def test_all_matching_needs_a_filter_and_a_selection_needs_ids(
    app: App, client: TestClient, post: Callable[..., Any]
) -> None:
    mail(app, "a@x")
    assert "cancel all" not in client.get("/jobs").text  # no filter, no "all" buttons
    refused = client.get("/jobs/confirm?do=cancel:all")
    assert refused.status_code == 400 and "needs a filter" in refused.text
    assert post("/jobs/act?do=delete:all").status_code == 400
    empty = client.get("/jobs/confirm?do=cancel:selected")
    assert empty.status_code == 400 and "no jobs selected" in empty.text
    assert client.get("/jobs/confirm?do=explode:all&queue=mail").status_code == 400
    assert len(app.list_jobs()) == 1


# --- bad input and read-only -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("state=bogus", "state=&#39;bogus&#39;: not a state"),
        ("args=customer.country", "write a dotted path, a colon and the value"),
        ("args=a..b:x", "empty key"),
        ("since=yesterday", "since: &#39;yesterday&#39;: give a duration ago"),
        ("time_field=nope&since=2h", "time_field=&#39;nope&#39;"),
        ("after=x", "after=&#39;x&#39;: give a whole number"),
        ("limit=0", "limit=&#39;0&#39;"),
        ("sort=sideways", "newest or oldest"),
        ("queue=a%20b", "invalid filter"),
        ("text=a%00b", "NUL"),
    ],
)
def test_a_malformed_filter_is_a_400_page(client: TestClient, query: str, words: str) -> None:
    page = client.get(f"/jobs?{query}")
    assert page.status_code == 400, page.text
    assert words in page.text and "Traceback" not in page.text


def test_read_only_sees_no_action_buttons(app: App, viewer: TestClient) -> None:
    job_id = mail(app, "a@x")
    listing = viewer.get("/jobs?queue=mail").text
    assert f"/jobs/{job_id}" in listing
    assert 'type="checkbox"' not in listing and "selected</button>" not in listing
    assert "matching</button>" not in listing
    page = viewer.get(f"/jobs/{job_id}").text
    assert "/cancel" not in page and "<button" not in page
    ask = viewer.get(f"/jobs/confirm?do=cancel:selected&id={job_id}")
    assert ask.status_code == 200 and "jobs/act" not in ask.text and "may look, not act" in ask.text
