"""List, count, cancel, retry and delete jobs, one or by filter, on both engines."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from jobsaga import App, FilterError, JobFilter, JobState
from jobsaga.operations.jobs import JobOperations
from tests.helpers import wait_until

from . import workers as w
from .conftest import NODE


def state(app: App, job_id: int) -> JobState:
    job = app.get_job(job_id)
    assert job is not None
    return job.state


def test_list_and_count_by_every_criterion(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop, w.Hold)
    a = app.insert(w.Noop.new({}, tags=["billing", "eu"]))
    b = app.insert(w.Noop.new({}, queue="mailers", tags=["billing"]))
    c = app.insert(w.Hold.new({}, schedule_in=600))
    assert [j.id for j in app.list_jobs()] == [c.id, b.id, a.id]  # newest first
    assert [j.id for j in app.list_jobs(newest_first=False, limit=2)] == [a.id, b.id]
    assert [j.id for j in app.list_jobs(limit=1, offset=1)] == [b.id]
    assert [j.id for j in app.list_jobs(state="scheduled")] == [c.id]
    assert [j.id for j in app.list_jobs(state=[JobState.AVAILABLE], queue="default")] == [a.id]
    assert [j.id for j in app.list_jobs(worker=w.Hold)] == [c.id]
    assert [j.id for j in app.list_jobs(worker=w.Noop.name, tags="billing")] == [b.id, a.id]
    assert [j.id for j in app.list_jobs(tags=["billing", "eu"])] == [a.id]
    assert [j.id for j in app.list_jobs(ids=[a.id, c.id])] == [c.id, a.id]
    soon = datetime.now(UTC) + timedelta(seconds=60)
    assert [j.id for j in app.list_jobs(time_field="scheduled_at", since=soon)] == [c.id]
    assert {j.id for j in app.list_jobs(until=soon)} == {a.id, b.id, c.id}
    assert app.list_jobs(since=soon) == []
    assert app.count_jobs() == {"available": 2, "scheduled": 1}
    assert app.count_jobs(JobFilter(queue=("mailers",))) == {"available": 1}


def test_bad_filters_are_clear_errors(app: App) -> None:
    with pytest.raises(FilterError, match="unknown criterion 'states'"):
        app.list_jobs(states="available")  # type: ignore[call-arg]
    with pytest.raises(FilterError, match="criterion 'state'"):
        app.list_jobs(state="exploded")
    with pytest.raises(FilterError, match="timezone-aware"):
        app.list_jobs(since=datetime(2026, 1, 1))
    with pytest.raises(FilterError, match="time_field"):
        app.list_jobs(time_field="updated_at")  # type: ignore[typeddict-item]
    with pytest.raises(FilterError, match="needs at least one criterion"):
        app.cancel_jobs()
    with pytest.raises(FilterError, match="not both"):
        app.delete_jobs(JobFilter(queue=("q",)), queue="q")


@pytest.mark.parametrize("empty", [{"args": {}}, {"meta": {}}, {"tags": []}])
def test_an_empty_object_or_tag_list_is_no_criterion_for_a_bulk_change(
    make_app: Callable[..., App], empty: dict[str, Any]
) -> None:
    """Found in review: ``delete_jobs(args={})`` (an empty dict from a variable) deleted every
    job, while ``delete_jobs()`` is refused. Listing with it still selects every job."""
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}), w.Noop.new({}, tags=["eu"])])
    for change in (app.cancel_jobs, app.retry_jobs, app.delete_jobs):
        with pytest.raises(FilterError, match="needs at least one criterion"):
            change(**empty)
    assert len(app.list_jobs(**empty)) == 2


BAD_CRITERIA: list[tuple[dict[str, Any], str]] = [
    ({"ids": [2**63]}, "criterion 'ids'.*job ids run from 1 to 9223372036854775807"),
    ({"ids": [1, 0]}, "criterion 'ids'"),
    ({"ids": -1}, "criterion 'ids'"),
    ({"worker": "billing\x00"}, "criterion 'worker'.*holds a NUL"),
    ({"tags": ["ok", "\ud800"]}, "criterion 'tags'.*surrogate"),
    ({"tags": "a\x00"}, "criterion 'tags'.*NUL"),
    ({"queue": "mailers\n"}, "criterion 'queue'"),
    ({"since": datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))}, "out of range"),
]


@pytest.mark.parametrize(("criteria", "message"), BAD_CRITERIA)
def test_filter_values_the_database_cannot_take_are_filter_errors(
    app: App, criteria: dict[str, Any], message: str
) -> None:
    """Ids past 2**63 and text holding NUL reached the query and came back as raw psycopg
    (or sqlite3 OverflowError) errors; each is now a FilterError naming the criterion, from
    every operation and from ``JobFilter(...)`` itself."""
    kept = app.insert(w.Noop.new({}))
    operations: list[Callable[[], Any]] = [
        lambda: app.list_jobs(**criteria),
        lambda: app.count_jobs(**criteria),
        lambda: app.cancel_jobs(**criteria),
        lambda: app.retry_jobs(**criteria),
        lambda: app.delete_jobs(**criteria),
        lambda: JobFilter(**criteria),
    ]
    for operation in operations:
        with pytest.raises(FilterError, match=message):
            operation()
    assert state(app, kept.id) is JobState.AVAILABLE


def test_the_largest_id_and_page_are_valid_filters(app: App) -> None:
    kept = app.insert(w.Noop.new({}))
    assert app.list_jobs(ids=[2**63 - 1]) == []
    assert app.list_jobs(limit=2**63 - 1, offset=0) == [app.get_job(kept.id)]
    assert app.list_jobs(offset=2**63 - 1) == []
    assert not app.cancel_job(2**63 - 1)
    for page in ({"limit": 2**63}, {"limit": 0}, {"offset": 2**63}, {"offset": -1}):
        with pytest.raises(FilterError, match=f"{next(iter(page))} must be >= .* at most 9223"):
            app.list_jobs(**page)  # type: ignore[arg-type]
    with pytest.raises(FilterError, match="criterion 'ids'"):
        app.cancel_job(2**63)


def test_a_cancel_reason_is_stored_printable(app: App) -> None:
    """A reason holding a NUL made jsonb refuse the cancel; it is written escaped instead."""
    job = app.insert(w.Noop.new({}))
    assert app.cancel_job(job.id, reason="bad\x00byte \udcff and é")
    stored = app.get_job(job.id)
    assert stored is not None and stored.state is JobState.CANCELLED
    assert stored.errors[-1]["error"] == "cancelled: bad\\x00byte \\udcff and é"


def test_cli_filters_out_of_range_are_usage_errors(
    make_app: Callable[..., App], db_url: str
) -> None:
    """``jobs list --since 99999999999d`` raised OverflowError with a traceback."""
    from click.testing import CliRunner

    from jobsaga.cli.main import cli

    app = make_app(w.Noop)
    kept = app.insert(w.Noop.new({}))
    for args, message in (
        (["list", "--since", "99999999999d"], "'99999999999d' reaches back before year 1"),
        (["list", "--until", f"{'9' * 400}s"], "reaches back before year 1"),
        (["list", "--since", "9999-12-31T23:00:00-05:00"], "out of range in UTC"),
        (["cancel", str(2**63), "--yes"], "job ids run from 1 to"),
        (["delete", "--tag", "\udcff", "--yes"], "surrogate"),
    ):
        result = CliRunner().invoke(cli, ["jobs", *args, "--url", db_url])
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert message in result.output and "Traceback" not in result.output
    assert state(app, kept.id) is JobState.AVAILABLE


def test_cancel_pending_jobs_records_the_reason(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop)
    events: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    app.telemetry.attach(
        "t", "job.cancel", lambda e, m, meta: events.append((e, dict(m), dict(meta)))
    )
    now = app.insert(w.Noop.new({}))
    later = app.insert(w.Noop.new({}, schedule_in=600))
    assert app.cancel_job(now.id, reason="customer left")
    assert app.cancel_jobs(state="scheduled") == [later.id]
    assert not app.cancel_job(now.id)  # already final
    job = app.get_job(now.id)
    assert job is not None and job.state is JobState.CANCELLED and job.cancelled_at is not None
    assert job.errors[-1]["kind"] == "cancelled"
    assert job.errors[-1]["error"] == "cancelled: customer left"
    assert [m["count"] for _, m, _ in events] == [1, 1, 0]
    assert events[0][2]["ids"] == [now.id] and events[0][2]["reason"] == "customer left"


def test_cancel_an_executing_async_job_stops_it(make_app: Callable[..., App]) -> None:
    app = make_app(w.Hold, w.Noop)
    stops: list[dict[str, Any]] = []
    app.telemetry.attach("t", "job.stop", lambda e, m, meta: stops.append(dict(meta)))
    held = app.insert(w.Hold.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: held.id in w.started)
        assert app.cancel_job(held.id, reason="operator said so")
        producer = thread.node.producers["default"]
        wait_until(lambda: not producer.running)
        # The freed slot takes the next job; the cancelled one is never run again.
        follow = app.insert(w.Noop.new({}))
        wait_until(lambda: state(app, follow.id) is JobState.COMPLETED)
    job = app.get_job(held.id)
    assert job is not None and job.state is JobState.CANCELLED and job.attempt == 1
    assert held.id not in w.finished  # the perform was cancelled, not run to its end
    assert [e["error"] for e in job.errors] == ["cancelled: operator said so"]
    stop = next(s for s in stops if s["job"].id == held.id)
    assert (stop["state"], stop["stopped"]) == ("cancelled", "cancelled")


def test_cancel_an_executing_sync_job_ignores_its_result(make_app: Callable[..., App]) -> None:
    app = make_app(w.SyncHold)
    held = app.insert(w.SyncHold.new({"seconds": 10}))
    with app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: held.id in w.started)
        assert app.cancel_job(held.id)
        wait_until(lambda: not thread.node.producers["default"].running)
        w.release.set()  # the thread returns now; its "done" must not be written
        wait_until(lambda: held.id in w.finished)
    job = app.get_job(held.id)
    assert job is not None and job.state is JobState.CANCELLED and job.completed_at is None


def test_cancel_reaches_a_node_of_another_process(make_app: Callable[..., App]) -> None:
    """The operator's App shares no listener with the node's App: on PostgreSQL the cancel
    arrives by NOTIFY, on SQLite by the node's check of the jobs it performs."""
    node_app, operator = make_app(w.Hold), make_app(w.Hold)
    held = node_app.insert(w.Hold.new({}))
    with node_app.node({"default": 1}, **NODE).start_in_thread() as thread:
        wait_until(lambda: held.id in w.started)
        assert operator.cancel_jobs(worker=w.Hold) == [held.id]
        wait_until(lambda: not thread.node.producers["default"].running, timeout=5)
    assert held.id not in w.finished
    assert state(operator, held.id) is JobState.CANCELLED


def test_retry_gives_a_discarded_job_another_attempt(make_app: Callable[..., App]) -> None:
    app = make_app(w.Flaky)
    job = app.insert(w.Flaky.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: state(app, job.id) is JobState.DISCARDED)
        assert app.retry_job(job.id)
        wait_until(lambda: state(app, job.id) is JobState.COMPLETED)
    done = app.get_job(job.id)
    assert done is not None
    assert (done.attempt, done.max_attempts, done.discarded_at) == (2, 2, None)
    assert [e["attempt"] for e in done.errors] == [1]  # the history is kept
    assert not app.retry_job(job.id + 1000)


def test_retry_and_delete_leave_jobs_in_other_states_alone(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop, w.Hold)
    running = app.insert(w.Hold.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: running.id in w.started)
        pending = app.insert(w.Noop.new({}))  # waits: the only slot is taken
        assert not app.retry_job(pending.id)  # available: nothing to retry
        assert not app.retry_job(running.id)
        assert not app.delete_job(running.id)  # executing: cancel first
        assert app.cancel_job(running.id)
        wait_until(lambda: app.delete_job(running.id))
    assert app.get_job(running.id) is None
    assert app.delete_job(pending.id) and app.get_job(pending.id) is None


def test_bulk_forms_by_filter(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop, w.AlwaysDiscard)
    discarded = [app.insert(w.AlwaysDiscard.new({})).id for _ in range(3)]
    mailers = [app.insert(w.Noop.new({}, queue="mailers")).id for _ in range(4)]
    with app.node({"default": 3}, **NODE).start_in_thread():
        wait_until(lambda: app.count_jobs(state="discarded") == {"discarded": 3})
        cancelled = app.cancel_jobs(queue="mailers", state="available")
        assert cancelled == mailers
        assert app.retry_jobs(queue="mailers") == mailers
        assert app.count_jobs(queue="mailers") == {"available": 4}
        assert sorted(app.retry_jobs(worker=w.AlwaysDiscard)) == discarded
        wait_until(lambda: app.count_jobs(worker=w.AlwaysDiscard) == {"discarded": 3})
    again = app.get_job(discarded[0])
    assert again is not None and (again.attempt, len(again.errors)) == (2, 2)
    assert sorted(app.delete_jobs(state=["discarded", "available"])) == sorted(discarded + mailers)
    assert app.count_jobs() == {}


def test_reads_take_no_write_lock_on_sqlite(tmp_path: Path) -> None:
    """Listing, counting and each node's control poll must not queue behind (or block) another
    process's writes on the shared SQLite file (PostgreSQL readers never wait for writers)."""
    path = tmp_path / "jobs.db"
    app = App(f"sqlite:///{path}", workers=[w.Noop])
    app.migrate()
    app.insert(w.Noop.new({}))
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        done = threading.Event()

        def read() -> None:
            app.list_jobs()
            app.count_jobs(state="available")
            app.list_queues()
            done.set()

        threading.Thread(target=read, daemon=True).start()
        assert done.wait(5), "a read waited for the write lock"
    finally:
        other.execute("ROLLBACK")
        other.close()
        app.close()


def test_bulk_changes_in_batches_commit_each_batch(make_app: Callable[..., App]) -> None:
    """``batch_size``: one transaction per batch in id order, each reported once committed
    (and one telemetry event per batch); a stop between batches (here the callback raises)
    leaves the batches before it done and the rest untouched, and a second run finishes."""
    app = make_app(w.Noop)
    ids = [j.id for j in app.insert_all([w.Noop.new({}) for _ in range(7)])]
    ops = JobOperations(app)
    events: list[list[int]] = []
    app.telemetry.attach("t", "job.*", lambda e, m, meta: events.append(list(meta["ids"])))
    batches: list[list[int]] = []
    assert ops.cancel(JobFilter(ids=ids), batch_size=3, on_batch=batches.append) == ids
    assert batches == [ids[:3], ids[3:6], ids[6:]] and events == batches
    assert app.count_jobs() == {"cancelled": 7}

    class Stop(Exception):
        pass

    def stop_after_first(batch: list[int]) -> None:
        raise Stop

    with pytest.raises(Stop):
        ops.retry(JobFilter(state="cancelled"), batch_size=3, on_batch=stop_after_first)
    assert app.count_jobs() == {"available": 3, "cancelled": 4}
    assert [state(app, i) for i in ids[:3]] == [JobState.AVAILABLE] * 3
    assert ops.retry(JobFilter(state="cancelled"), batch_size=3) == ids[3:]
    assert ops.delete(JobFilter(state="available"), batch_size=2) == ids
    assert app.count_jobs() == {}
    with pytest.raises(FilterError, match="batch_size"):
        ops.delete(JobFilter(state="available"), batch_size=0)


def test_a_preview_counts_what_a_change_applies_to(make_app: Callable[..., App]) -> None:
    app = make_app(w.Noop)
    a, b, c = app.insert_all([w.Noop.new({}) for _ in range(3)])
    app.cancel_job(a.id)
    ops = JobOperations(app)
    flt = JobFilter(worker=w.Noop)
    cancel = ops.preview("cancel", flt)
    assert (cancel.total, cancel.changeable, cancel.unchangeable) == (3, 2, {"cancelled": 1})
    retry = ops.preview("retry", flt)
    assert (retry.changeable, retry.unchangeable) == (1, {"available": 2})
    assert ops.preview("delete", flt).changeable == 3
    assert ops.states_of([a.id, c.id, 9999]) == {a.id: "cancelled", c.id: "available"}
