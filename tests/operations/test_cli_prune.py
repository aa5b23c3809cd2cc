"""``jobsaga jobs prune``: the pruner's rule run by hand, on both engines. It deletes exactly
what the pruner would (finished jobs older than the age, their saga runs with them), says how
many first, works in committed batches with a bar on a terminal, and the count it prints is
what left the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from jobsaga import App, JobState
from jobsaga.cli import jobs as jobs_cli
from jobsaga.cli import progress as progress_module
from jobsaga.cli.main import cli
from jobsaga.operations import jobs as operations
from jobsaga.workflow.records import list_runs
from tests.helpers import wait_until
from tests.plugins.support import FINISHED_AT, job_reached, update_job

from . import cli_saga
from . import workers as w
from .conftest import NODE, progress_interrupted_at

DAY = 86400


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def aged(app: App, state: str, days: float) -> int:
    """A job in ``state`` that reached it ``days`` ago (inserted a month before that)."""
    return job_reached(app, w.Noop.new({}), state, datetime.now(UTC) - timedelta(days=days))


def state(app: App, job_id: int) -> JobState | None:
    job = app.get_job(job_id)
    return None if job is None else job.state


def job_ids(app: App) -> set[int]:
    return {job.id for job in app.list_jobs(limit=None)}


def test_prune_deletes_what_the_pruner_would_and_prints_what_it_deleted(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop, cli_saga.GreetWorker)
    saga = app.insert(cli_saga.GreetWorker.new({"who": "ops"}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: state(app, saga.id) is JobState.COMPLETED, timeout=10)
    assert list_runs(app, job_id=saga.id, limit=None)
    update_job(app, saga.id, completed_at=datetime.now(UTC) - timedelta(days=9))
    old = {aged(app, state, 8) for state in FINISHED_AT} | {saga.id}
    young = {aged(app, state, 6) for state in FINISHED_AT}
    waiting = {aged(app, state, 365) for state in ("available", "scheduled", "retryable")}
    # cancelled just now, though discarded long ago before a retry: its current state counts
    recent = aged(app, "cancelled", 0.01)
    update_job(app, recent, discarded_at=datetime.now(UTC) - timedelta(days=300))

    asked = run("jobs", "prune", "--older-than", "7d", "--url", db_url, input="n\n")
    assert asked.exit_code == 1  # declined: nothing deleted
    assert asked.output.startswith(
        "prune 4 jobs (2 completed, 1 discarded, 1 cancelled) that finished before "
    )
    assert "UTC (7 d ago)? [y/N]" in asked.output
    assert job_ids(app) == old | young | waiting | {recent}

    done = run("jobs", "prune", "--older-than", "7d", "--url", db_url, input="y\n")
    assert done.exit_code == 0, done.output
    assert done.output.splitlines()[-1] == f"pruned: 4 jobs [{', '.join(map(str, sorted(old)))}]"
    assert job_ids(app) == young | waiting | {recent}
    assert list_runs(app, job_id=saga.id, limit=None) == []  # the saga's run log went with it

    again = run("jobs", "prune", "--older-than", "7d", "--url", db_url)
    assert again.exit_code == 0  # no prompt (no input given), nothing to do
    assert again.output.startswith("nothing to prune: no job finished before ")


def test_prune_runs_in_committed_batches_with_a_bar_on_a_terminal(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    old = {aged(app, "completed", 2) for _ in range(5)}
    kept = aged(app, "completed", 0.5)
    batches: list[int] = []
    prune_batch = operations.prune_batch

    def counted(app: App, before: datetime, limit: int) -> list[int]:
        ids = prune_batch(app, before, limit)
        batches.append(len(ids))
        return ids

    monkeypatch.setattr(operations, "prune_batch", counted)
    monkeypatch.setattr(progress_module, "progress_wanted", lambda: True)
    result = run("jobs", "prune", "--older-than", "1d", "--batch", "2", "--yes", "--url", db_url)
    assert result.exit_code == 0, result.output
    assert batches == [2, 2, 1]
    assert "pruning" in result.stderr and "5/5" in result.stderr
    assert result.stdout == f"pruned: 5 jobs [{', '.join(map(str, sorted(old)))}]\n"
    assert job_ids(app) == {kept}


def test_the_age_and_batch_default_to_the_pruners_configuration(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    old = {aged(app, "discarded", 3) for _ in range(3)}
    kept = aged(app, "discarded", 1)

    unset = run("jobs", "prune", "--yes", "--url", db_url)
    assert unset.exit_code == 2
    assert "give --older-than (e.g. 7d): prune_after is not configured" in unset.output
    assert job_ids(app) == old | {kept}

    sizes: list[int] = []
    prune_batch = operations.prune_batch

    def sized(app: App, before: datetime, limit: int) -> list[int]:
        sizes.append(limit)
        return prune_batch(app, before, limit)

    monkeypatch.setattr(operations, "prune_batch", sized)
    configured = run(
        "jobs", "prune", "--yes", "--url", db_url,
        "--set", f"prune_after={2 * DAY}", "--set", "prune_limit=2",
    )  # fmt: skip
    assert configured.exit_code == 0, configured.output
    assert configured.output == f"pruned: 3 jobs [{', '.join(map(str, sorted(old)))}]\n"
    assert sizes == [2, 2] and job_ids(app) == {kept}

    bad = run("jobs", "prune", "--older-than", "lastweek", "--url", db_url)
    assert bad.exit_code == 2 and "Invalid value for '--older-than'" in bad.output


def test_an_interrupted_prune_reports_what_it_committed(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    for _ in range(5):
        aged(app, "completed", 2)
    monkeypatch.setattr(jobs_cli, "progress", progress_interrupted_at(2))
    stopped = run("jobs", "prune", "--older-than", "1d", "--batch", "2", "--yes", "--url", db_url)
    assert stopped.exit_code == 130
    assert stopped.stderr == (
        "interrupted: pruned 4 jobs before stopping (each batch is committed); "
        "run the command again for the rest\n"
    )
    assert len(job_ids(app)) == 1
