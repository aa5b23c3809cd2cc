"""``jobsaga queues``: every queue in use is listed (finished jobs included) in a table sized
to its content; a control for a queue nothing uses warns, one for an unknown node is refused.
Both engines, through click's runner (output piped: plain text)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from click.testing import CliRunner, Result

from jobsaga import App, JobState
from jobsaga.cli import tables
from jobsaga.cli.main import cli
from tests.helpers import wait_until

from . import workers as w
from .conftest import NODE

LONG = "analytics_agents_for_the_quarterly_reports_of_every_region_in_eu"  # 64, the maximum


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def fields(output: str, first: str) -> list[str]:
    """The cells of the table row that starts with ``first`` (cells hold no blanks here)."""
    [line] = [line for line in output.splitlines() if line.split()[:1] == [first]]
    return line.split()


def test_every_queue_with_jobs_in_any_state_is_listed(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop, w.AlwaysDiscard)
    finished = ["mailers", "reports", "media", "default"]
    app.insert_all([w.Noop.new({}, queue=q) for q in finished])
    app.insert(w.AlwaysDiscard.new({}, queue="exports"))
    with app.node({q: 1 for q in [*finished, "exports"]}, **NODE).start_in_thread():
        wait_until(lambda: all(j.state.is_final for j in app.list_jobs(limit=None)))
    [cancelled] = app.insert_all([w.Noop.new({}, queue=LONG, schedule_in=3600)])
    app.cancel_jobs(ids=[cancelled.id])
    states = {j.queue: j.state for j in app.list_jobs(limit=None)}
    assert states["exports"] is JobState.DISCARDED and states[LONG] is JobState.CANCELLED
    app.insert(w.Noop.new({}, queue="mailers", schedule_in=3600))

    listed = run("queues", "--url", db_url)

    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert lines[0].split() == [
        "QUEUE", "AVAILABLE", "SCHEDULED", "EXECUTING", "RETRYABLE", "CONTROL"
    ]  # fmt: skip
    assert [line.split()[0] for line in lines[1:7]] == sorted([*finished, "exports", LONG])
    assert fields(listed.output, LONG) == [LONG, "0", "0", "0", "0", "-"]
    assert fields(listed.output, "mailers") == ["mailers", "0", "1", "0", "0", "-"]
    # columns sized to the longest name, aligned: every count ends where its header does
    assert lines[0].index("AVAILABLE") == len(LONG) + 2
    end = lines[0].index("RETRYABLE") + len("RETRYABLE")
    assert all(line[end - 1].isdigit() and line[end : end + 2] == "  " for line in lines[1:7])
    assert "\x1b" not in listed.output  # piped: no colour
    assert [q.queue for q in app.list_queues()] == sorted([*finished, "exports", LONG])


def test_live_nodes_are_a_table_of_their_own(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(w.Noop)
    with app.node({"default": 3, "mailers": 1}, name="cli-node", **NODE).start_in_thread():
        wait_until(lambda: len(app.list_queues()) == 2)
        app.pause_queue("mailers", node="cli-node")
        wait_until(lambda: any(n.paused for q in app.list_queues() for n in q.nodes))
        listed = run("queues", "--url", db_url).output
    node_table = listed[listed.index("NODE") :].splitlines()
    assert node_table[0].split() == [
        "NODE", "QUEUE", "LIMIT", "RUNNING", "FETCHING", "STARTED", "(UTC)", "HEALTH"
    ]  # fmt: skip
    assert node_table[1].split()[:5] == ["cli-node", "default", "3", "0", "yes"]
    assert node_table[2].split()[:5] == ["cli-node", "mailers", "1", "0", "paused"]
    assert node_table[1].endswith("ago)  ok") or node_table[1].endswith("(now)  ok")


def test_a_control_for_a_queue_nothing_uses_warns_and_is_kept(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    app.insert(w.Noop.new({}, queue="mailers"))

    typo = run("queues", "pause", "mailer", "--url", db_url)

    assert typo.exit_code == 0
    assert typo.stdout == "paused mailer on every node\n"
    assert "warning: no job, node, control or registered worker uses queue 'mailer'" in (
        typo.stderr
    )
    assert "did you mean 'mailers'?" in typo.stderr
    assert {q.queue: q.paused for q in app.list_queues()} == {"mailer": True, "mailers": None}
    # a queue with jobs, or with a control now, is in use: no warning
    assert run("queues", "pause", "mailers", "--url", db_url).stderr == ""
    assert run("queues", "resume", "mailer", "--url", db_url).stderr == ""
    far = run("queues", "scale", "zzz", "2", "--url", db_url)
    assert far.exit_code == 0 and "uses queue 'zzz' (the control is kept" in far.stderr
    assert "did you mean" not in far.stderr


def test_a_control_for_an_unknown_node_is_refused(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    with app.node({"default": 1}, name="cli-node", **NODE).start_in_thread():
        wait_until(lambda: bool(app.list_queues()))
        refused = run("queues", "pause", "default", "--node", "cli-nod", "--url", db_url)
        assert refused.exit_code == 2
        assert (
            "no node named 'cli-nod'; did you mean 'cli-node'? (known nodes: cli-node (live))"
        ) in refused.output
        assert run("queues", "scale", "default", "2", "--node", "cli-node", "--url", db_url)
    assert [q.node_controls for q in app.list_queues()] == [{"cli-node": {
        "paused": None, "concurrency": 2
    }}]  # fmt: skip
    # a stopped node is known while a control names it, so its override can be lifted...
    lifted = run("queues", "scale", "default", "default", "--node", "cli-node", "--url", db_url)
    assert lifted.exit_code == 0, lifted.output
    # ...and then it is gone
    gone = run("queues", "resume", "default", "--node", "cli-node", "--url", db_url)
    assert gone.exit_code == 2 and "no node named 'cli-node' (known nodes: none)" in gone.output


def test_a_long_queue_name_narrows_to_fit_an_80_column_terminal(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    app.insert(w.Noop.new({}, queue=LONG))
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "80")

    listed = run("queues", "--url", db_url)

    assert listed.exit_code == 0, listed.output
    rows = listed.output.splitlines()
    assert max(len(row) for row in rows if row) <= 80
    [row] = [r for r in rows if r.startswith(LONG[:20])]
    assert "…" in row and row.split()[1:] == ["1", "0", "0", "0", "-"]
