"""Stopping ``jobsaga worker`` (a real subprocess): what each signal does, what the operator
is told, and what is recorded for the jobs it cut short.

The first SIGINT/SIGTERM starts a warm shutdown and says so; a second forces it (running jobs
are interrupted at once, recorded truthfully); a third exits there and then. Nothing that
still runs in a thread (a saga's sync step, ``asyncio.to_thread``) keeps the process alive.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from jobsaga import App, JobState
from jobsaga.plugins.lifeline import rescue_orphans
from tests.helpers import wait_until
from tests.jobs import shutdown_app as shut
from tests.jobs.cli_process import worker_process
from tests.jobs.conftest import job

worker = partial(worker_process, "tests.jobs.shutdown_app:app")

RESCUE = ("--set", "heartbeat_interval=0.25", "--set", "rescue_after=2")
"""Short timings, so the lifeline may rescue what the stopped worker left executing."""


def rescued_error(app: App, job_id: int) -> str:
    """The error the lifeline (of another node) records for ``job_id`` once it rescues it."""
    [back] = wait_until(lambda: rescue_orphans(app, 2.0, "rescuer").jobs, 10)
    assert back.id == job_id and back.state is JobState.AVAILABLE and back.attempt == 1
    [record] = back.errors
    assert record["kind"] == "orphaned" and record["attempt"] == 1  # the attempt counted
    return str(record["error"])


WORKERS = list(shut.app.workers.values())


def test_a_sync_saga_step_does_not_keep_the_worker_alive(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """Past the grace period the step's thread still runs: the process exits all the same
    (ending it), and the job stays executing for the lifeline, never written back as if its
    step had stopped."""
    app = make_app(*WORKERS)
    saga = app.insert(shut.SlowSaga.new({"seconds": 60}))
    with worker(db_url, tmp_path, "--grace-period", "0.3") as node:
        node.started("step start")
        node.signal(signal.SIGINT)
        assert node.exited() == 0, node.err
    assert f"job(s) [{saga.id}] stay executing" in node.err
    held = job(app, saga.id)
    assert held.state is JobState.EXECUTING and held.attempt == 1 and not held.errors
    assert node.logged() == ["step start"]


@pytest.mark.parametrize("kind", ["sync perform", "saga step"])
def test_a_job_held_by_the_shutdown_is_rescued_as_interrupted_by_it(
    make_app: Callable[..., App], db_url: str, tmp_path: Path, kind: str
) -> None:
    """The process exited with the job's code still in a thread: the job stayed executing, and
    the lifeline that rescues it once the node's heartbeat lapsed says the shutdown cut the
    attempt short, not just that the node stopped heartbeating."""
    app = make_app(*WORKERS)
    if kind == "saga step":
        stored, started = app.insert(shut.SlowSaga.new({"seconds": 60})), "step start"
    else:
        stored = app.insert(shut.SleepsSync.new({"seconds": 60}))
        started = f"start {stored.id}"
    options = ("--grace-period", "0.3", "--name", "held", *RESCUE)
    with worker(db_url, tmp_path, *options) as node:
        node.started(started)
        node.signal(signal.SIGINT)
        assert node.exited() == 0, node.err
    assert job(app, stored.id).state is JobState.EXECUTING
    error = rescued_error(app, stored.id)
    assert error.startswith(
        "interrupted by shutdown: node held stopped while the job's code still ran in a thread "
        "(grace period 0.3 s); rescued by node rescuer after node held's heartbeat lapsed "
        "(its last heartbeat was at "
    ), error


def test_a_job_of_a_killed_worker_is_rescued_as_orphaned(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """kill -9: no shutdown, so nothing says one interrupted the job."""
    app = make_app(*WORKERS)
    stored = app.insert(shut.SleepsSync.new({"seconds": 60}))
    with worker(db_url, tmp_path, "--name", "killed", *RESCUE) as node:
        node.started(f"start {stored.id}")
        node.signal(signal.SIGKILL)
        assert node.exited() == -signal.SIGKILL
    error = rescued_error(app, stored.id)
    assert error.startswith(
        "orphaned: node killed stopped heartbeating while the job was executing (its last "
        "heartbeat was at "
    ), error
    assert error.endswith("; rescued by node rescuer")


def test_a_thread_an_async_perform_started_does_not_keep_the_worker_alive(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """``asyncio.to_thread`` runs on the loop's default executor, which ``asyncio.run`` used
    to wait for without end after the node stopped."""
    app = make_app(*WORKERS)
    stored = app.insert(shut.InAThread.new({"seconds": 60}))
    with worker(db_url, tmp_path, "--grace-period", "0.3") as node:
        node.started(f"start {stored.id}")
        node.signal(signal.SIGINT)
        assert node.exited() == 0, node.err
    assert "exiting anyway" in node.err
    back = job(app, stored.id)
    assert back.state in (JobState.RETRYABLE, JobState.AVAILABLE) and back.attempt == 0
    [record] = back.errors
    assert record["kind"] == "interrupted"
    assert record["error"].startswith("interrupted by shutdown: node ")
    assert "grace period 0.3 s" in record["error"]
    assert node.logged() == [f"start {stored.id}"]


def test_the_first_signal_says_what_the_shutdown_waits_for(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    app = make_app(*WORKERS)
    short = app.insert(shut.Sleeps.new({"seconds": 0.5}))
    other = app.insert(shut.Sleeps.new({"seconds": 0.5}))
    with worker(db_url, tmp_path, "--grace-period", "30") as node:
        node.started(f"start {short.id}")
        node.started(f"start {other.id}")
        node.signal(signal.SIGINT)
        node.says("warm shutdown: waiting up to 30 s for 2 running jobs (Ctrl-C again to force)")
        assert node.exited() == 0, node.err
    assert job(app, short.id).state is JobState.COMPLETED
    assert job(app, other.id).state is JobState.COMPLETED
    assert "forced" not in node.err


def test_a_second_signal_forces_a_prompt_stop_and_records_the_truth(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """Within a 60 s grace period: the async perform is cancelled and written back, its
    attempt not counted, its error saying a forced shutdown interrupted it; the sync perform's
    thread cannot be stopped, so its job stays executing (the lifeline rescues it, attempt
    counted, once the exited node's heartbeat lapses, saying the forced shutdown interrupted
    it) and never finishes in the background."""
    app = make_app(*WORKERS)
    in_thread = app.insert(shut.SleepsSync.new({"seconds": 60}))
    on_loop = app.insert(shut.Sleeps.new({"seconds": 60}))
    with worker(db_url, tmp_path, "--grace-period", "60", "--name", "forced", *RESCUE) as node:
        node.started(f"start {in_thread.id}")
        node.started(f"start {on_loop.id}")
        node.signal(signal.SIGTERM)
        node.says("warm shutdown: waiting up to 60 s for 2 running jobs (SIGTERM again to force)")
        node.signal(signal.SIGINT)
        assert node.exited() == 0, node.err
    assert "forced shutdown: interrupting 2 running jobs now" in node.err
    written_back = job(app, on_loop.id)
    assert written_back.state in (JobState.RETRYABLE, JobState.AVAILABLE)
    assert written_back.attempt == 0
    [record] = written_back.errors
    assert record["kind"] == "interrupted"
    assert record["error"].startswith("interrupted by a forced shutdown: node ")
    assert "CancelledError" not in node.err
    held = job(app, in_thread.id)
    assert held.state is JobState.EXECUTING and held.attempt == 1 and not held.errors
    assert f"job(s) [{in_thread.id}] stay executing" in node.err
    assert sorted(node.logged()) == sorted([f"start {in_thread.id}", f"start {on_loop.id}"])
    # Once rescued, the held job's error says the forced shutdown cut its attempt short.
    error = rescued_error(app, in_thread.id)
    assert error.startswith(
        "interrupted by a forced shutdown: node forced was told to stop at once (a second signal) "
    ), error
    assert (
        "s into its 60 s grace period, while the job's code still ran in a thread; rescued by "
        "node rescuer after node forced's heartbeat lapsed (its last heartbeat was at "
    ) in error


def test_a_third_signal_exits_at_once(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """A forced stop still waits a little for cancelled performs to end; one that goes on
    regardless is not waited for after a third signal. Its job stays executing under the
    node, for the lifeline, as after a crash."""
    app = make_app(*WORKERS)
    stubborn = app.insert(shut.Stubborn.new())
    with worker(db_url, tmp_path, "--grace-period", "60") as node:
        node.started(f"start {stubborn.id}")
        node.signal(signal.SIGINT)
        node.says("warm shutdown")
        node.signal(signal.SIGINT)
        node.started(f"cancelled {stubborn.id}")
        node.signal(signal.SIGINT)
        assert node.exited() == 128 + signal.SIGINT, node.err
    assert "exiting at once: 1 running job left executing under this node" in node.err
    assert job(app, stubborn.id).state is JobState.EXECUTING


@pytest.mark.parametrize("engine_name", ["sqlite"], indirect=True)
def test_a_signal_with_nothing_running_says_so(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    make_app(*WORKERS)
    with worker(db_url, tmp_path) as node:
        node.says("ready (Ctrl-C to stop)")
        node.signal(signal.SIGINT)
        assert node.exited() == 0, node.err
    assert "warm shutdown: no job is running; stopping" in node.err
    assert node.err.rstrip().endswith("stopped")


def test_a_signal_after_the_stop_exits_at_once(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    """The node has stopped and the command waits a moment for job threads before it exits:
    a signal then used to print "Aborted!" and leave Python joining the step's thread at exit
    (60 s here, for ever with a hung step). It exits at once, saying what stays executing."""
    app = make_app(*WORKERS)
    saga = app.insert(shut.SlowSaga.new({"seconds": 60}))
    with worker(db_url, tmp_path, "--grace-period", "0.3") as node:
        node.started("step start")
        node.signal(signal.SIGINT)
        node.says(": stopped")  # the command's own line, after the node's stop
        node.signal(signal.SIGINT)
        assert node.exited(timeout=10) == 128 + signal.SIGINT, node.err
    assert f"SIGINT while stopping: exiting at once; job(s) [{saga.id}] stay executing" in node.err
    assert "Aborted" not in node.err
    assert job(app, saga.id).state is JobState.EXECUTING
