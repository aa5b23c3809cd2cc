"""``jobsaga queues ...``, ``jobsaga jobs ...`` and ``jobsaga config`` through click's runner;
``jobsaga worker --config`` in a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner, Result

from jobsaga import App, JobState
from jobsaga.cli.main import cli
from tests.helpers import wait_until

from . import workers as w
from .conftest import NODE

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    return result


def test_queues_list_pause_scale_resume(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}, queue="mailers") for _ in range(2)])
    with app.node({"default": 3}, name="cli-node", **NODE).start_in_thread() as thread:
        listed = run("queues", "--url", db_url)
        assert listed.exit_code == 0, listed.output
        assert "mailers" in listed.output
        assert "cli-node  default      3        0  yes" in listed.output  # the nodes' table

        assert run("queues", "pause", "default", "--url", db_url).exit_code == 0
        wait_until(lambda: thread.node.producers["default"].paused, timeout=5)
        assert run("queues", "scale", "default", "5", "--url", db_url, "--node", "cli-node").output
        wait_until(lambda: thread.node.producers["default"].limit == 5, timeout=5)
        as_json = json.loads(run("queues", "list", "--json", "--url", db_url).output)
        default = next(q for q in as_json if q["queue"] == "default")
        assert (
            default["paused"] is True and default["node_controls"]["cli-node"]["concurrency"] == 5
        )
        table = run("queues", "--url", db_url).output
        assert "paused; cli-node: limit 5" in table

        assert run("queues", "scale", "default", "default", "--url", db_url).exit_code == 0
        assert run("queues", "resume", "default", "--url", db_url).exit_code == 0
        wait_until(lambda: not thread.node.producers["default"].paused, timeout=5)
        wait_until(lambda: thread.node.producers["default"].limit == 3, timeout=5)
    bad = run("queues", "scale", "default", "zero", "--url", db_url)
    assert bad.exit_code == 2 and "give a number >= 1, or 'default'" in bad.output


def test_jobs_list_show_cancel_retry_delete(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(w.Noop)
    first = app.insert(w.Noop.new({"n": 1}, tags=["eu"]))
    second = app.insert(w.Noop.new({"n": 2}, queue="mailers"))
    listed = run("jobs", "list", "--url", db_url, "--queue", "mailers")
    assert str(second.id) in listed.output and f"\n{first.id:>8}" not in listed.output
    lines = run("jobs", "list", "--url", db_url, "--tag", "eu", "--since", "1h", "--json").output
    assert [json.loads(line)["id"] for line in lines.splitlines()] == [first.id]

    cancelled = run("jobs", "cancel", str(first.id), "--reason", "not needed", "--url", db_url)
    assert f"cancelled: 1 job [{first.id}]" in cancelled.output
    shown = run("jobs", "show", str(first.id), "--url", db_url).output
    assert "state=cancelled" in shown and "\n    cancelled: not needed\n" in shown

    refused = run("jobs", "retry", "--state", "cancelled", "--url", db_url, input="n\n")
    assert refused.exit_code == 1 and "retry 1 job?" in refused.output
    assert app.get_job(first.id).state is JobState.CANCELLED  # type: ignore[union-attr]
    retried = run("jobs", "retry", "--state", "cancelled", "--url", db_url, "--yes")
    assert f"retried: 1 job [{first.id}]" in retried.output
    assert app.get_job(first.id).state is JobState.AVAILABLE  # type: ignore[union-attr]

    nothing = run("jobs", "delete", "--url", db_url)
    assert nothing.exit_code == 2 and "give job ids or at least one filter" in nothing.output
    deleted = run("jobs", "delete", "--worker", w.Noop.name, "--url", db_url, input="y\n")
    assert "deleted: 2 jobs" in deleted.output and app.count_jobs() == {}
    missing = run("jobs", "cancel", "999", "--url", db_url)
    assert missing.exit_code == 1 and "not cancelled: no such job: 999" in missing.output
    bad_time = run("jobs", "list", "--since", "yesterday", "--url", db_url)
    assert bad_time.exit_code == 2 and "duration ago" in bad_time.output
    assert "--since" in bad_time.output


def test_config_command_shows_the_layers_and_names_mistakes(tmp_path: Path) -> None:
    path = tmp_path / "jobsaga.toml"
    path.write_text('name = "a"\n[queues]\ndefault = 2\n', encoding="utf-8")
    shown = run("config", "--config", str(path), "--set", "prune_after=60")
    assert shown.exit_code == 0, shown.output
    data = json.loads(shown.output)
    assert data["name"] == "a" and data["prune_after"] == 60
    path.write_text("rescue_aftr = 3\n[queues]\ndefault = 2\n", encoding="utf-8")
    wrong = run("config", "--config", str(path))
    assert wrong.exit_code == 2
    assert (
        "unknown key rescue_aftr" in wrong.output and "did you mean 'rescue_after'" in wrong.output
    )


def test_worker_runs_from_a_config_file(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    app = make_app(w.Noop)
    path = tmp_path / "jobsaga.toml"
    path.write_text(
        f'app = "tests.operations.cli_app:app"\nurl = "{db_url}"\nname = "from-file"\n'
        "poll_interval = 0.05\ncontrol_interval = 0.1\n[queues]\ndefault = 2\nmailers = 1\n",
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JOBSAGA_GRACE_PERIOD": "1"}
    env.pop("JOBSAGA_DATABASE_URL", None)
    command = [
        sys.executable,
        "-m",
        "jobsaga.cli.main",
        "worker",
        "--config",
        str(path),
        "-q",
        "default=4",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        jobs = app.insert_all([w.Noop.new({}) for _ in range(3)])
        wait_until(lambda: app.count_jobs(state="completed") == {"completed": 3}, timeout=20)
        [default] = [q for q in app.list_queues() if q.queue == "default"]
        # the flag replaced the file's queues; the name came from the file
        assert [(n.node, n.concurrency) for n in default.nodes] == [("from-file", 4)]
        assert all(app.get_job(j.id).attempted_by == "from-file" for j in jobs)  # type: ignore[union-attr]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err


def test_pause_scale_and_cancel_reach_a_worker_process(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """A real `jobsaga worker` process: the controls reach it by NOTIFY (PostgreSQL) or its
    poll of the control table (SQLite), and a cancel stops a job it is running."""
    app = make_app(w.Noop, w.Hold)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "JOBSAGA_APP": "tests.operations.cli_app:app",
        "JOBSAGA_DATABASE_URL": db_url,
        "JOBSAGA_CONTROL_INTERVAL": "0.1",
        "JOBSAGA_POLL_INTERVAL": "0.05",
        "JOBSAGA_GRACE_PERIOD": "1",
    }
    command = [
        sys.executable,
        "-m",
        "jobsaga.cli.main",
        "-v",
        "worker",
        "--name",
        "proc",
        "-q",
        "default=1",
    ]
    process = subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)

    def node_state() -> tuple[int, bool] | None:
        for queue in app.list_queues():
            for node in queue.nodes:
                if queue.queue == "default" and node.node == "proc":
                    return node.concurrency, node.paused
        return None

    try:
        wait_until(lambda: node_state() == (1, False), timeout=20)
        app.pause_queue("default")
        wait_until(lambda: node_state() == (1, True), timeout=5)
        waiting = app.insert(w.Noop.new({}))
        app.scale_queue("default", 2)
        wait_until(lambda: node_state() == (2, True), timeout=5)
        assert app.get_job(waiting.id).state is JobState.AVAILABLE  # type: ignore[union-attr]
        app.resume_queue("default")
        wait_until(lambda: app.get_job(waiting.id).state is JobState.COMPLETED, timeout=5)  # type: ignore[union-attr]

        held = app.insert(w.Hold.new({}))
        wait_until(lambda: app.get_job(held.id).state is JobState.EXECUTING, timeout=5)  # type: ignore[union-attr]
        assert app.cancel_job(held.id, reason="stop it")
        # The node stops the attempt and frees its slot (the only one, once scaled back).
        app.scale_queue("default", None)
        wait_until(lambda: node_state() == (1, False), timeout=5)
        follow = app.insert(w.Noop.new({}))
        wait_until(lambda: app.get_job(follow.id).state is JobState.COMPLETED, timeout=5)  # type: ignore[union-attr]
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    cancelled = app.get_job(held.id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert [e["error"] for e in cancelled.errors] == ["cancelled: stop it"]
    assert f"node proc: stopped job {held.id} (cancelled)" in err
    assert '"event": "job.exception"' not in err  # a cancel is not reported as a failure
