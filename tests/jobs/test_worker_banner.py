"""What ``jobsaga worker`` says while it runs: the start banner (database, workers,
workflows, and warnings for a missing app or a database it just created), a line per
finished job at ``-v``, a per-queue summary at the default level; and ``jobsaga config``."""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from jobsaga import App, JobState
from jobsaga.cli.main import cli
from jobsaga.redaction import redact_url
from jobsaga.runtime.summary import Summary
from jobsaga.telemetry_logging import job_line
from tests.helpers import wait_until
from tests.jobs import sample_app as sample
from tests.jobs import shutdown_app as shut
from tests.jobs.cli_process import Worker, worker_process
from tests.jobs.conftest import job

SAMPLE = "tests.jobs.sample_app:app"


def stop(node: Worker) -> None:
    node.signal(signal.SIGTERM)
    assert node.exited() == 0, node.err


def test_the_banner_names_the_database_workers_and_workflows(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    make_app()
    with worker_process("tests.jobs.shutdown_app:app", db_url, tmp_path, "-q", "a=2") as node:
        node.says("ready (Ctrl-C to stop)")
        stop(node)
    banner = node.err.splitlines()
    assert re.fullmatch(r"jobsaga node \S+ starting", banner[0])
    shown = f"SQLite {Path(db_url.removeprefix('sqlite:///'))}"
    database = shown if db_url.startswith("sqlite") else redact_url(db_url)
    assert banner[1:5] == [
        f"  database:  {database}",
        "  queues:    a=2 (grace period 15 s)",
        "  workers:   " + ", ".join(sorted(shut.app.workers)),
        f"  workflows: {shut.SlowStep.name}",
    ]
    assert "warning" not in node.err


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_the_banner_warns_of_no_app_and_of_a_new_sqlite_file(db_url: str, tmp_path: Path) -> None:
    """``jobsaga worker --url sqlite:///typo.db`` without ``--app``: two likely mistakes."""
    new = tmp_path / "typo.db"
    with worker_process(None, f"sqlite:///{new}", tmp_path) as node:
        node.says("ready (Ctrl-C to stop)")
        stop(node)
    assert "  workers:   none\n  workflows: none" in node.err
    assert (
        "warning: no workers are registered, so every job this node fetches fails "
        "(unknown worker): give your App with --app module:app" in node.err
    )
    assert f"warning: created a new, empty SQLite database at {new}" in node.err
    with worker_process(SAMPLE, f"sqlite:///{new}", tmp_path) as again:
        again.says("workflows:")
        stop(again)
    assert "warning" not in again.err  # the file exists now, and the app has workers


def test_each_finished_job_is_one_line_at_v(
    make_app: Callable[..., App], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")  # log times are UTC whatever the zone
    app = make_app(*sample.app.workers.values())
    done = app.insert(sample.Completes.new())
    failed = app.insert(sample.AlwaysFails.new())
    with worker_process(SAMPLE, db_url, tmp_path, verbose=1) as node:
        wait_until(lambda: job(app, failed.id).state is JobState.DISCARDED, 15)
        wait_until(lambda: job(app, done.id).state is JobState.COMPLETED)
        node.says(f"sample.always_fails job {failed.id} discarded")
        stop(node)
    lines = node.err.splitlines()
    [completed] = [line for line in lines if f"sample.completes job {done.id} " in line]
    stamp = datetime.strptime(completed[:23], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    assert completed[23] == "Z" and abs(datetime.now(UTC) - stamp) < timedelta(minutes=5)
    assert re.search(
        rf"INFO jobsaga.jobs: sample.completes job {done.id} completed in \d+ (us|ms|\.\d s) "
        r"\(attempt 1, queue default\)$",
        completed,
    ), completed
    failures = [line for line in lines if f"sample.always_fails job {failed.id} " in line]
    assert len(failures) == 2, failures
    assert "WARNING" in failures[0] and "failed (will retry) in" in failures[0]
    assert failures[0].endswith("(attempt 1, queue default): ValueError: bad record")
    assert "ERROR" in failures[1] and "discarded" in failures[1] and "(attempt 2," in failures[1]
    assert '"event": "job.' not in node.err  # the JSON lines of job events are -vv's
    # The idle threads of the sync performs' pool ended with it: nothing is said to be stuck.
    assert "still running" not in node.err and node.err.rstrip().endswith("stopped")


def test_the_default_level_shows_a_summary_per_queue_not_each_job(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    app = make_app(*sample.app.workers.values())
    done = app.insert_all([sample.Completes.new({"n": n}) for n in range(3)])
    failed = app.insert(sample.AlwaysFails.new())
    snoozed = app.insert(sample.Snoozes.new())
    with worker_process(SAMPLE, db_url, tmp_path, "--summary-interval", "0.3") as node:
        settled = [*done, failed, snoozed]
        wait_until(lambda: all(job(app, j.id).state.is_final for j in settled), 15)
        stop(node)  # what finished since the last summary is said as the node stops
    summaries = [line for line in node.err.splitlines() if "jobsaga.runtime.summary" in line]
    assert summaries, node.err
    totals: dict[str, int] = {}
    for line in summaries:
        assert re.search(r"INFO jobsaga.runtime.summary: node \S+, last \d+ s: default ", line)
        for count, outcome in re.findall(r"(\d+) (\w+)", line.partition(": default ")[2]):
            totals[outcome] = totals.get(outcome, 0) + int(count)
    # 3 + 1 + 1 completed; one failed attempt, then discarded; two snoozes before completing
    assert totals == {"completed": 4, "failed": 1, "discarded": 1, "snoozed": 2}
    assert "sample.completes job" not in node.err  # no line per job at this level


def test_a_summary_says_nothing_when_nothing_finished() -> None:
    summary = Summary("n1", 60)
    assert summary.take() is None
    summary.count("mailers", JobState.COMPLETED)
    summary.count("default", JobState.RETRYABLE)
    summary.count("default", JobState.COMPLETED)
    summary.count("default", JobState.COMPLETED)
    line = summary.take()
    assert line is not None
    assert re.fullmatch(
        r"node n1, last \d+ s: default 2 completed, 1 failed; mailers 1 completed", line
    )
    assert summary.take() is None  # counted from the last line on


def test_a_job_line_is_compact() -> None:
    stored = SimpleNamespace(id=7)
    meta = {"job": stored, "worker": "shop.mail", "queue": "mailers", "attempt": 2}
    assert (
        job_line("job.stop", {"duration": 0.0123}, {**meta, "state": "completed"})
        == "shop.mail job 7 completed in 12 ms (attempt 2, queue mailers)"
    )
    interrupted = {
        **meta,
        "state": "retryable",
        "interrupted": True,
        "error": "interrupted by shutdown: node a stopped before the job finished",
    }
    assert job_line("job.exception", {"duration": 2.04}, interrupted) == (
        "shop.mail job 7 interrupted after 2.0 s (attempt 2, queue mailers): "
        "interrupted by shutdown: node a stopped before the job finished"
    )


def shown_config(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["config", *args], env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_config_shows_every_effective_value_and_takes_the_worker_flags(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    data = shown_config(
        "--url", url, "-q", "mailers=3", "-q", "default=2", "--grace-period", "2",
        "--set", "prune_after=3600",
    )  # fmt: skip
    assert data["url"] == url and data["app"] is None
    assert data["queues"] == {"mailers": 3, "default": 2}
    assert data["grace_period"] == 2 and data["prune_after"] == 3600
    # the defaults a node runs with, derived ones resolved for this (SQLite) database
    assert data["poll_interval"] == 0.2 and data["control_interval"] == 1.0
    assert data["max_threads"] == 5 and data["heartbeat_interval"] == 5.0
    assert data["rescue_after"] == 60.0 and data["rescue_interval"] == 5.0
    assert data["leadership"] is True and data["crontab"] == []
    assert data["summary_interval"] == 60.0 and data["ack_batch"] == 200
    assert data["name"].endswith("-<pid>-<random> (made at start)")
    assert not (tmp_path / "jobs.db").exists()  # showing the configuration creates nothing


def test_config_defaults_and_a_masked_url() -> None:
    url = "postgresql://shop:Kn0wn-Pa55word@db.internal:5432/shop"
    data = shown_config(env={"JOBSAGA_DATABASE_URL": url})
    assert data["url"] == "postgresql://shop:***@db.internal:5432/shop"
    assert data["queues"] == {"default": 10} and data["grace_period"] == 15.0
    assert data["poll_interval"] == 1.0 and data["control_interval"] == 5.0
    assert "Kn0wn-Pa55word" not in json.dumps(data)


def test_config_refuses_what_worker_refuses() -> None:
    result = CliRunner().invoke(cli, ["config", "-q", "default=0"])
    assert (
        result.exit_code == 2
        and "a queue's limit is how many of its jobs run at once, at least 1" in result.output
    )


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://a@b/c", "unsupported database URL scheme 'mysql'"),
        ("sqlite:////nonexistent-jobsaga/dir/x.db", "SQLite database folder does not exist"),
    ],
)
def test_a_url_the_worker_cannot_use_is_one_line(url: str, said: str) -> None:
    """The check for a new SQLite file built the engine before the error handling did: a
    42-line traceback instead of the line every other command gives."""
    result = CliRunner().invoke(cli, ["worker", "--url", url])
    assert result.exit_code != 0
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception
    assert said in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)  # logging, not storage
def test_v_after_the_command_is_the_same_as_before_it(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    app = make_app(*sample.app.workers.values())
    done = app.insert(sample.Completes.new())
    with worker_process(SAMPLE, db_url, tmp_path, "-v") as node:
        node.says(f"sample.completes job {done.id} completed in")
        stop(node)
    assert f"INFO jobsaga.jobs: sample.completes job {done.id} completed" in node.err
