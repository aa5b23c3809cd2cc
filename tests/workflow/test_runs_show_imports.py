"""Reading runs never imports what a database row names (issue 9, fault 13).

A run row's workflow name is data: ``jobsaga runs show`` once imported it to draw a richer
chart, so a row naming ``this.Zen`` printed the Zen of Python, and any importable module's
top-level code ran. Only workflows registered with the app, or a ``module:Class`` the operator
typed (``--workflow``, ``--app``), are imported."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobsaga import App
from jobsaga.cli.main import cli
from jobsaga.testing import run_workflow

from .test_runlog_cli import Refund, RefundWorker

MARKER = "tests.workflow.imported_marker"
ROOT = Path(__file__).resolve().parents[2]


def name_run(app: App, run_id: int, workflow: str) -> None:
    """Set a run's workflow name, as anyone with write access to the database could."""
    param = "%(w)s" if app.engine.dialect == "postgres" else ":w"
    where = "%(id)s" if app.engine.dialect == "postgres" else ":id"
    with app.engine.transaction() as tx:
        tx.execute(
            f"UPDATE jobsaga_workflow_runs SET workflow = {param} WHERE id = {where}",
            {"w": workflow, "id": run_id},
        )


def jobsaga(*args: str, mark: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a fresh interpreter, where nothing is imported yet."""
    env = {**os.environ, "JOBSAGA_TEST_IMPORT_MARK": str(mark), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "jobsaga.cli.main", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize("named", [f"{MARKER}:Marked", f"{MARKER}.Marked", "this.Zen"])
def test_runs_show_and_list_import_nothing_a_row_names(
    db_url: str, make_app: Callable[..., App], tmp_path: Path, named: str
) -> None:
    app = make_app()
    run = run_workflow(Refund, {"amount": 5}, app=app)
    assert run.run_id is not None
    name_run(app, run.run_id, named)
    mark = tmp_path / "imported"

    shown = jobsaga("runs", "show", str(run.run_id), "--url", db_url, "--graph", mark=mark)
    assert shown.returncode == 0, shown.stderr
    assert not mark.exists(), "runs show imported the module a row names"
    assert "Beautiful is better than ugly" not in shown.stdout + shown.stderr
    assert f"run {run.run_id}  {named}  succeeded" in shown.stdout
    assert (
        f"workflow {named!r} is not registered with the app: the chart is drawn from the "
        "run log" in shown.stdout
    )
    assert "s_hold --> s_credit" in shown.stdout  # the run log's own DAG is still shown

    listed = jobsaga("runs", "list", "--url", db_url, mark=mark)
    assert listed.returncode == 0, listed.stderr
    assert named in listed.stdout and not mark.exists()
    assert "Beautiful is better than ugly" not in listed.stdout + listed.stderr


def test_runs_show_imports_the_workflow_the_operator_names(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app()
    run = run_workflow(Refund, {"amount": 5}, app=app)
    assert run.run_id is not None
    runner = CliRunner()
    typed = runner.invoke(
        cli,
        [
            "runs",
            "show",
            str(run.run_id),
            "--url",
            db_url,
            "--workflow",
            "tests.workflow.test_runlog_cli:Refund",
        ],
    )
    assert typed.exit_code == 0, typed.output
    assert "input_amount --> s_hold" in typed.output  # the workflow's own chart
    assert "not registered" not in typed.output

    other = runner.invoke(
        cli, ["runs", "show", str(run.run_id), "--url", db_url, "--workflow", f"{MARKER}:Marked"]
    )
    assert other.exit_code != 0
    assert (
        f"--workflow {MARKER}:Marked is the workflow '{MARKER}:Marked', but run "
        f"{run.run_id} is a 'billing.refund' run" in other.output
    )

    missing = runner.invoke(
        cli, ["runs", "show", str(run.run_id), "--url", db_url, "--workflow", "no.such:Thing"]
    )
    assert missing.exit_code != 0 and "cannot import 'no.such'" in missing.output


def test_runs_show_uses_the_workflow_registered_with_the_app(
    db_url: str, make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(RefundWorker)
    run = run_workflow(Refund, {"amount": 5}, app=app)
    monkeypatch.setenv("JOBSAGA_TEST_APP_URL", db_url)
    shown = CliRunner().invoke(
        cli,
        [
            "runs",
            "show",
            str(run.run_id),
            "--graph",
            "--app",
            "tests.workflow.test_runlog_cli:env_app",
        ],
    )
    assert shown.exit_code == 0, shown.output
    assert "input_amount --> s_hold" in shown.output and "not registered" not in shown.output
