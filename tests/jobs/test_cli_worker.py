"""The real CLI: ``jobsaga worker`` in a subprocess, jobs of every outcome, and SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from jobsaga import App, JobSpec, JobState
from jobsaga.plugins.lifeline import rescue_orphans
from tests.helpers import wait_until
from tests.jobs import sample_app as sample
from tests.jobs.cli_process import JOBSAGA, ROOT, worker_command, worker_env
from tests.jobs.conftest import job, rows

WORKERS = [w for w in sample.app.workers.values()]


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "performs.log"
    path.touch()
    return path


def logged(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@contextmanager
def worker_process(db_url: str, log_file: Path, *options: str) -> Iterator[subprocess.Popen[str]]:
    env = worker_env(log_file)
    command = worker_command("tests.jobs.sample_app:app", db_url, *options)
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def stop(process: subprocess.Popen[str], timeout: float = 20) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=timeout)
    return process.returncode, err


def test_every_outcome_through_the_cli(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    app = make_app(*WORKERS)
    jobs = {
        "completes": app.insert(sample.Completes.new()),
        "fails_once": app.insert(sample.FailsOnce.new()),
        "always_fails": app.insert(sample.AlwaysFails.new()),
        "error_result": app.insert(sample.ErrorResult.new()),
        "snoozes": app.insert(sample.Snoozes.new()),
        "discards": app.insert(sample.Discards.new()),
        "cancels": app.insert(sample.Cancels.new()),
        "times_out": app.insert(sample.TimesOut.new()),
        "unique": app.insert(sample.Unique.new({"k": 1})),
        "unknown": app.insert(
            JobSpec(worker="sample.retired", queue="default", args={}, priority=0, max_attempts=2)
        ),
    }
    with worker_process(db_url, log_file, "--queue", "default=10") as process:
        scheduled = app.insert(sample.Completes.new({"later": True}, schedule_in=0.3))
        duplicate = app.insert(sample.Unique.new({"k": 1}))
        settled = [j for name, j in jobs.items() if name != "unknown"] + [scheduled]
        wait_until(lambda: all(job(app, j.id).state.is_final for j in settled), 30)
        wait_until(lambda: job(app, jobs["unknown"].id).state is JobState.RETRYABLE, 10)
        code, err = stop(process)
    assert code == 0, err
    assert "stopped" in err
    assert duplicate.conflict and duplicate.id == jobs["unique"].id

    by_id = {int(r["id"]): r for r in rows(app)}
    decode = app.engine.stored_json

    def state(name: str) -> str:
        return str(by_id[jobs[name].id]["state"])

    def errors(name: str) -> list[dict[str, Any]]:
        return list(decode(by_id[jobs[name].id]["errors"]))

    assert {name: state(name) for name in jobs} == {
        "completes": "completed",
        "fails_once": "completed",
        "always_fails": "discarded",
        "error_result": "discarded",
        "snoozes": "completed",
        "discards": "discarded",
        "cancels": "cancelled",
        "times_out": "discarded",
        "unique": "completed",
        "unknown": "retryable",
    }
    assert by_id[scheduled.id]["state"] == "completed"
    assert errors("completes") == [] and errors("snoozes") == []
    assert decode(by_id[jobs["snoozes"].id]["meta"]) == {"snoozed": 2}
    assert by_id[jobs["snoozes"].id]["attempt"] == 1
    assert [e["error"] for e in errors("fails_once")] == ["ConnectionError: gateway timed out"]
    assert [(e["attempt"], e["error"]) for e in errors("always_fails")] == [
        (1, "ValueError: bad record"),
        (2, "ValueError: bad record"),
    ]
    assert "Traceback" in errors("always_fails")[0]["traceback"]
    assert logged(log_file) == [f"final {jobs['always_fails'].id}"]
    assert "quota exceeded" in errors("error_result")[0]["error"]
    assert "not_found" in errors("discards")[0]["error"]
    assert "order deleted" in errors("cancels")[0]["error"]
    assert errors("times_out")[0]["error"].startswith("JobTimeout:")
    [unknown] = errors("unknown")
    assert (
        unknown["error"].startswith("UnknownWorkerError:") and "sample.retired" in unknown["error"]
    )


def test_sigterm_lets_the_running_job_finish_and_fetches_nothing_more(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    app = make_app(*WORKERS)
    running, waiting = app.insert_all(
        [sample.Sleeps.new({"seconds": 1.0}), sample.Sleeps.new({"seconds": 0})]
    )
    with worker_process(
        db_url, log_file, "--queue", "default=1", "--grace-period", "10"
    ) as process:
        wait_until(lambda: f"start {running.id}" in logged(log_file), 15)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        after = app.insert(sample.Completes.new())
        _, err = process.communicate(timeout=20)
        took = time.monotonic() - signalled
    assert process.returncode == 0, err
    assert took < 5, took  # the 1 s job finished; the node did not wait out the grace period
    assert logged(log_file) == [f"start {running.id}", f"end {running.id}"]
    assert job(app, running.id).state is JobState.COMPLETED
    assert job(app, waiting.id).state is JobState.AVAILABLE  # the freed slot fetched nothing
    assert job(app, after.id).state is JobState.AVAILABLE


def test_sigterm_as_the_node_starts_is_graceful(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    """Jobs begin while the node is still starting; a SIGTERM then must not kill it outright."""
    app = make_app(*WORKERS)
    stopper = app.insert(sample.StopsTheNode.new())
    with worker_process(db_url, log_file) as process:
        _, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert logged(log_file) == [f"start {stopper.id}", f"end {stopper.id}"]
    assert job(app, stopper.id).state is JobState.COMPLETED


def test_an_async_job_that_outlasts_the_grace_period_is_written_back(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    """Cancelled at the end of the grace period, an async perform really stopped: its job is
    written back at once, the interrupted attempt not counted."""
    app = make_app(*WORKERS)
    stuck = app.insert(sample.Sleeps.new({"seconds": 60}))
    with worker_process(db_url, log_file, "--grace-period", "0.5") as process:
        wait_until(lambda: f"start {stuck.id}" in logged(log_file), 15)
        signalled = time.monotonic()
        code, err = stop(process)
        took = time.monotonic() - signalled
    assert code == 0, err
    assert took < 8, took
    back = job(app, stuck.id)
    # not lost in "executing": written back, and made available again by the stager
    assert back.state in (JobState.RETRYABLE, JobState.AVAILABLE)
    assert back.attempt == 0  # the interrupted attempt is not counted
    [record] = back.errors
    assert record["kind"] == "interrupted" and "grace period" in record["error"]
    assert back.scheduled_at <= app.now()  # runs again as soon as a node is up
    app.engine.stage()  # what any node's stager does: and then it is fetched again
    [again] = app.engine.fetch("default", 10, "another-node")
    assert again.id == stuck.id and again.attempt == 1


def test_a_sync_job_still_running_at_the_end_of_the_grace_period_is_never_run_twice(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    """Python cannot stop the thread of a sync perform: its job stays executing under the
    node, so no node may start it while the thread could run. The process exits (which ends
    the thread), and once its last heartbeat lapses the lifeline rescues the job, this
    attempt counted: a job that always outlives the grace period uses up its attempts."""
    app = make_app(*WORKERS)
    stuck = app.insert(sample.SleepsSync.new({"seconds": 60}))
    timings = (
        "--set",
        "heartbeat_interval=0.25",
        "--set",
        "rescue_after=2",
    )
    with worker_process(db_url, log_file, "--grace-period", "0.5", *timings) as process:
        wait_until(lambda: f"start {stuck.id}" in logged(log_file), 15)
        signalled = time.monotonic()
        code, err = stop(process)
        took = time.monotonic() - signalled
        exited = app.now()
    assert code == 0, err
    assert took < 8, took
    assert f"job(s) [{stuck.id}] stay executing" in err
    held = job(app, stuck.id)
    assert held.state is JobState.EXECUTING and held.attempt == 1 and not held.errors
    # Its node's record still vouches for it until its deadline: nothing rescues it before.
    assert rescue_orphans(app, 2.0, "another-node").jobs == []
    assert app.engine.fetch("default", 10, "another-node") == []
    rescued = wait_until(lambda: rescue_orphans(app, 2.0, "another-node").jobs, 10)
    assert (app.now() - exited).total_seconds() < 3  # within rescue_after of its last beat
    [back] = rescued
    assert back.id == stuck.id and back.state is JobState.AVAILABLE
    assert back.attempt == 1  # counted this time
    assert [e["kind"] for e in back.errors] == ["orphaned"]
    [again] = app.engine.fetch("default", 10, "another-node")
    assert again.id == stuck.id and again.attempt == 2
    assert logged(log_file) == [f"start {stuck.id}"]  # its first run never ended, nor ran on


def test_the_database_url_from_the_environment_applies_to_the_app(db_url: str) -> None:
    """``--app`` with ``$JOBSAGA_DATABASE_URL`` (or ``--url``) points the app at that database."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JOBSAGA_DATABASE_URL": db_url,
    }
    done = subprocess.run(
        [JOBSAGA, "migrate", "--app", "tests.jobs.sample_app:app"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "applied: 0001" in done.stdout
    assert App(db_url).engine.applied_migrations()[0].startswith("0001")


def test_a_worker_that_cannot_start_says_why_in_one_line(
    make_app: Callable[..., App], db_url: str, log_file: Path
) -> None:
    """Its node name is held by a live node: the start is undone and the command fails with
    one line, not a traceback."""
    app = make_app(*WORKERS)
    holder = app.node(name="taken", poll_interval=0.05, heartbeat_interval=0.1, rescue_after=1)
    with holder.start_in_thread(), worker_process(db_url, log_file, "--name", "taken") as process:
        _, err = process.communicate(timeout=30)
    assert process.returncode == 1, err
    assert "Error: node name 'taken' is in use by a live process" in err
    assert "Traceback" not in err
