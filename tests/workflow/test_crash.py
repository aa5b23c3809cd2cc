"""kill -9 mid-workflow on PostgreSQL: the rescued job resumes from the run log.

A real worker process is killed while the third step runs. The lifeline of another node
rescues the job once the dead node's heartbeat deadline passes, and that node finishes it: the two steps that had completed are not run again, the step
that was running is run again, and the run log tells the whole story.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobsaga import App, JobState
from jobsaga.workflow import get_run, list_runs
from tests.conftest import pg_schema_url
from tests.helpers import wait_until
from tests.workflow.crash_app import (
    ENV_AFTER_SUCCESS,
    ENV_URL,
    LIFELINE,
    CrashWorker,
    LastChanceWorker,
    build_app,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pg_url(pg_admin: psycopg.Connection[Any]) -> Iterator[str]:
    import uuid

    schema = f"t_{uuid.uuid4().hex[:12]}"
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    url = pg_schema_url(schema)
    try:
        yield url
    finally:
        pg_admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def effects(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT step, attempt FROM crash_effects ORDER BY id").fetchall()
    return [(str(step), int(attempt)) for step, attempt in rows]


@pytest.fixture
def crash_app(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    monkeypatch.setenv(ENV_URL, pg_url)
    app = build_app()
    app.migrate()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE crash_effects (id serial, step text, attempt int)")
    yield app
    app.close()


def start_worker(pg_url: str, **env: str) -> subprocess.Popen[bytes]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.workflow.crash_app"],
        cwd=ROOT,
        env={**os.environ, ENV_URL: pg_url, "PYTHONPATH": path, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def kill_mid_workflow(app: App, pg_url: str, job_id: int) -> None:
    """Run a worker process until the job's third step is running, then kill -9 it."""
    worker = start_worker(pg_url)
    try:
        wait_until(lambda: _alive(worker) and ("slow", 1) in effects(pg_url), timeout=30)
        wait_until(lambda: _step_status(app, job_id, "charge") == "succeeded", timeout=10)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
    stored = app.get_job(job_id)
    assert stored is not None and stored.state is JobState.EXECUTING  # orphaned


def test_kill_9_mid_workflow_resumes_without_rerunning_completed_steps(
    crash_app: App, pg_url: str
) -> None:
    app = crash_app
    job = app.insert(CrashWorker.new({"order": "o-1"}))
    kill_mid_workflow(app, pg_url, job.id)

    rescuer = app.node({"crash": 2}, poll_interval=0.05, **LIFELINE)
    with rescuer.start_in_thread():
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED, timeout=30)  # type: ignore[union-attr]

    assert effects(pg_url) == [
        ("reserve", 1),
        ("charge", 1),
        ("slow", 1),
        ("slow", 2),  # it was running when the node died: its outcome was unknown
        ("receipt", 2),
    ]
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None
    assert full.status == "succeeded" and full.attempt == 2
    assert full.result == "c-r-o-1:shipped"
    assert full.step("reserve").tries == 1 and full.step("charge").tries == 1
    assert full.step("slow").tries == 2
    job_errors = app.get_job(job.id).errors  # type: ignore[union-attr]
    assert "orphaned" in job_errors[0]["error"]
    kinds = [(e.kind, e.step, e.attempt) for e in full.events]
    assert ("run.resumed", None, 2) in kinds
    assert ("step.interrupted", "slow", 2) in kinds


def test_kill_9_on_the_last_attempt_rolls_the_run_back_before_the_final_hook(
    crash_app: App, pg_url: str
) -> None:
    app = crash_app
    job = app.insert(LastChanceWorker.new({"order": "o-2"}))
    kill_mid_workflow(app, pg_url, job.id)

    rescuer = app.node({"crash": 2}, poll_interval=0.05, **LIFELINE)
    with rescuer.start_in_thread():
        wait_until(lambda: any(s.startswith("final") for s, _ in effects(pg_url)), timeout=30)

    assert app.get_job(job.id).state is JobState.DISCARDED  # type: ignore[union-attr]
    assert effects(pg_url) == [
        ("reserve", 1),
        ("charge", 1),
        ("slow", 1),
        ("release", 1),  # undone once; slow's outcome is unknown, charge has no undo
        ("final WorkflowError JobOrphaned", 1),
    ]
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "rolled_back"
    assert full.error is not None and full.error["type"] == "jobsaga.errors.JobOrphaned"
    assert full.statuses() == {
        "reserve": "undone",
        "charge": "succeeded",
        "slow": "pending",
        "receipt": "pending",
    }


def test_kill_9_between_the_runs_success_and_the_jobs_completion(
    crash_app: App, pg_url: str
) -> None:
    """Issue 9, fault 1: the process dies after the run log committed ``succeeded`` and
    before the job's completion is written. The rescued attempt completes the job without
    running a step, and the follow-up job is inserted once."""
    app = crash_app
    job = app.insert(CrashWorker.new({"order": "quick"}))
    worker = start_worker(pg_url, **{ENV_AFTER_SUCCESS: "1"})
    try:
        assert worker.wait(timeout=30) == -signal.SIGKILL  # it killed itself after the run
    finally:
        if worker.poll() is None:
            worker.kill()
    stored = app.get_job(job.id)
    assert stored is not None and stored.state is JobState.EXECUTING
    assert [r.status for r in list_runs(app, job_id=job.id)] == ["succeeded"]
    assert app.list_jobs(worker="crash.notice") == []

    rescuer = app.node({"crash": 2}, poll_interval=0.05, **LIFELINE)
    with rescuer.start_in_thread():
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED, timeout=30)  # type: ignore[union-attr]

    steps = [("reserve", 1), ("charge", 1), ("slow", 1), ("receipt", 1)]
    assert effects(pg_url) == steps  # each once, all by the attempt that died
    [notice] = app.list_jobs(worker="crash.notice")
    assert notice.args == {"charge": "c-r-quick"}
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "succeeded" and full.attempt == 1
    assert [(e.kind, e.attempt) for e in full.events if e.attempt == 2] == [
        ("run.already_succeeded", 2)
    ]


def _alive(worker: subprocess.Popen[bytes]) -> bool:
    if worker.poll() is not None:
        assert worker.stderr is not None
        raise AssertionError(f"the worker process exited early: {worker.stderr.read().decode()}")
    return True


def _step_status(app: App, job_id: int, name: str) -> str | None:
    runs = list_runs(app, job_id=job_id)
    if not runs:
        return None
    run = get_run(app, runs[0].id)  # type: ignore[arg-type]
    return run.step(name).status if run is not None else None
