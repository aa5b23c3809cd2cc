"""One liveness record per node: its heartbeat row says what it runs, on both engines.

The lifeline, ``App.list_queues`` and ``jobsaga queues`` all read ``jobsaga_nodes``, and all
take a node for live exactly while its own deadline has not passed; one beat writes it, early
when a control changes what the node runs.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobsaga import App, JobState
from jobsaga.cli.main import cli
from jobsaga.cli.queues import node_health
from jobsaga.engines import sql as sqlfiles
from jobsaga.errors import DatabaseError
from jobsaga.plugins.lifeline import rescue_orphans
from tests.helpers import wait_until
from tests.plugins.node_proc import Work
from tests.plugins.support import FakeClock, rows

from . import workers as w

ROOT = Path(__file__).resolve().parents[2]


def param(app: App, name: str) -> str:
    return f"%({name})s" if app.engine.dialect == "postgres" else f":{name}"


def listed(app: App, queue: str) -> dict[str, tuple[int, bool, int]]:
    """Per live node running ``queue``: (limit, paused, running)."""
    return {
        n.node: (n.concurrency, n.paused, n.running)
        for q in app.list_queues()
        if q.queue == queue
        for n in q.nodes
    }


def test_a_killed_nodes_queues_go_exactly_when_its_jobs_become_rescuable(
    make_app: Callable[..., App], db_url: str
) -> None:
    """No timer of their own: listed up to the node's deadline (``rescue_after`` past its
    last beat, 30 s here, far beyond any status refresh), gone the moment its jobs are
    rescuable."""
    app = make_app(Work)
    clock = FakeClock()
    reader = make_app(Work, clock=clock)  # reads at instants the test picks
    node = subprocess.Popen(
        [sys.executable, "-m", "tests.plugins.node_proc", db_url, "victim-1"]
        + ["--queue", "work=2", "--heartbeat", "0.25", "--rescue-after", "30"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert node.stdout is not None
        ready, _, _ = select.select([node.stdout], [], [], 20)
        assert ready and node.stdout.readline().strip() == "ready"
        job = app.insert(Work.new({}))  # hangs on a node named victim-*
        wait_until(lambda: listed(app, "work") == {"victim-1": (2, False, 1)})
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(10)
    [row] = rows(app, "SELECT heartbeat_at, expires_at FROM jobsaga_nodes")
    last_beat, deadline = (app.engine.time_value(row[k]) for k in ("heartbeat_at", "expires_at"))
    assert last_beat is not None and deadline == last_beat + timedelta(seconds=30)

    clock.set(deadline)  # the last instant the node is alive
    assert listed(reader, "work") == {"victim-1": (2, False, 1)}
    assert rescue_orphans(reader, 30, "rescuer").jobs == []

    clock.set(deadline + timedelta(milliseconds=1))  # past it: gone, and its job rescued
    assert listed(reader, "work") == {}
    [rescued] = rescue_orphans(reader, 30, "rescuer").jobs
    assert rescued.id == job.id and rescued.state is JobState.AVAILABLE


def test_a_control_shows_in_the_nodes_record_at_once_by_an_early_beat(
    make_app: Callable[..., App],
) -> None:
    """Beats every 5 s; a pause and a scale are in the record well within one."""
    app = make_app(w.Noop)
    options = {"poll_interval": 0.05, "heartbeat_interval": 5.0, "control_interval": 5.0}
    with app.node({"default": 2, "other": 1}, name="n1", **options).start_in_thread():
        assert listed(app, "default") == {"n1": (2, False, 0)}  # the first beat, at start

        def record(queue: str) -> dict[str, Any]:
            found: dict[str, Any] = node_health(app)["n1"]["queues"][queue]
            return found

        app.pause_queue("default")
        wait_until(lambda: record("default")["paused"] is True, timeout=1)
        assert listed(app, "default") == {"n1": (2, True, 0)}
        app.scale_queue("other", 3, node="n1")
        wait_until(lambda: record("other")["limit"] == 3, timeout=1)
        assert listed(app, "other") == {"n1": (3, False, 0)}
        app.resume_queue("default")
        wait_until(lambda: record("default")["paused"] is False, timeout=1)


def test_a_stopped_node_lingering_for_a_held_job_runs_no_queue(
    make_app: Callable[..., App], db_url: str
) -> None:
    """Its record stays live (it vouches for the job whose thread runs on) but lists only
    that job, no queue: the node fetches nothing any more."""
    app = make_app(w.SyncHold)
    job = app.insert(w.SyncHold.new({"seconds": 30}))
    options = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "rescue_after": 1.0}
    thread = app.node({"default": 2}, name="held", grace_period=0.1, **options).start_in_thread()
    wait_until(lambda: w.started)
    thread.stop()
    assert thread.node.lingering
    wait_until(lambda: node_health(app)["held"]["held_jobs"] == [job.id])
    assert node_health(app)["held"]["queues"] == {}
    assert listed(app, "default") == {}
    shown = CliRunner().invoke(cli, ["queues", "--url", db_url], catch_exceptions=False).output
    assert f"node held: job(s) [{job.id}] still run in threads past a shutdown" in shown
    w.release.set()
    wait_until(lambda: not thread.node.lingering)
    wait_until(lambda: "held" not in node_health(app))  # its deadline was set to now


def test_a_database_at_0004_with_rows_upgrades_and_drops_the_second_table(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    every = sqlfiles.load_migrations
    monkeypatch.setattr(
        sqlfiles, "load_migrations", lambda dialect: [m for m in every(dialect) if m[0] < "0005"]
    )
    with App(db_url, workers=[w.Noop]) as old:
        assert old.migrate()[-1] == "0004_queue_control"
        job = old.insert(w.Noop.new({}))
        # What a node of the last version left: its record, and its status in the other table.
        now = old.clock()
        times = {
            "now": old.engine.time_param(now),
            "later": old.engine.time_param(now + timedelta(minutes=5)),
        }
        meta = (
            '{"host": "h", "pid": 1, "healthy": true, "held_jobs": [], "queues": {"default": '
            '{"limit": 4, "paused": false, "running": 0, "abandoned_threads": 0, '
            '"abandon_cap": 4, "stalled": false}}}'
        )

        def p(name: str) -> str:
            return param(old, name)

        rows(
            old,
            "INSERT INTO jobsaga_nodes (name, token, started_at, heartbeat_at, expires_at, meta) "
            f"VALUES ('old-node', 't', {p('now')}, {p('now')}, {p('later')}, {p('meta')})",
            **times,
            meta=meta,
        )
        rows(
            old,
            "INSERT INTO jobsaga_queue_nodes "
            "(node, queue, concurrency, paused, started_at, expires_at) "
            f"VALUES ('old-node', 'default', 4, {p('paused')}, {p('now')}, {p('later')})",
            **times,
            paused=False,
        )
    monkeypatch.undo()

    with App(db_url, workers=[w.Noop]) as app:
        assert app.migrate()[0] == "0005_one_liveness_record"  # and any later ones
        with pytest.raises(DatabaseError):
            rows(app, "SELECT * FROM jobsaga_queue_nodes")
        assert listed(app, "default") == {"old-node": (4, False, 0)}  # read from its record
        options = {"poll_interval": 0.05, "control_interval": 0.1}
        with app.node({"default": 2}, name="new-node", **options).start_in_thread():
            wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED)  # type: ignore[union-attr]
            # after the job (the new node may be running it just after its start)
            assert listed(app, "default") == {"old-node": (4, False, 0), "new-node": (2, False, 0)}
        assert listed(app, "default") == {"old-node": (4, False, 0)}
