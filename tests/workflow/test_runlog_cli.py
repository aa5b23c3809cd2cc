"""The run log's read API, its cascade with jobs, and the ``jobsaga runs`` / ``workflow`` CLI."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from jobsaga import App, Workflow, WorkflowWorker, step
from jobsaga.cli.main import cli
from jobsaga.testing import run_workflow
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.running import execute


class Refund(Workflow, name="billing.refund", inputs=["amount"]):
    @step
    def hold(self, amount: int) -> dict[str, int]:
        return {"held": amount}

    @hold.undo
    def unhold(self, result: dict[str, int]) -> None:
        raise OSError("ledger offline")

    @step
    def credit(self, hold: dict[str, int]) -> int:
        return hold["held"]

    @credit.undo
    def uncredit(self, result: int) -> None:
        return None

    @step
    def notify(self, credit: int, amount: int) -> str:
        if amount > 100:
            raise ValueError(f"refund of {amount} needs approval")
        return "ok"


class RefundWorker(WorkflowWorker, workflow=Refund, name="billing.refund_worker"):
    pass


def app_factory(url: str) -> App:
    return App(url, workers=[RefundWorker])


def test_list_and_get(app: App) -> None:
    ok = run_workflow(Refund, {"amount": 5}, app=app)
    bad = run_workflow(Refund, {"amount": 500}, app=app)
    assert [r.id for r in list_runs(app)] == [bad.run_id, ok.run_id]
    assert [r.id for r in list_runs(app, status="succeeded")] == [ok.run_id]
    assert [r.id for r in list_runs(app, status="failed")] == [bad.run_id]
    assert [r.id for r in list_runs(app, status="rollback_failed")] == [bad.run_id]
    assert list_runs(app, status="rolled_back") == []
    assert [r.id for r in list_runs(app, workflow="billing.refund", limit=1)] == [bad.run_id]
    more = [run_workflow(Refund, {"amount": 1}, app=app) for _ in range(50)]
    assert len(list_runs(app)) == 50  # the default page
    assert len(list_runs(app, limit=None)) == 52 and more[-1].run_id == list_runs(app)[0].id
    with pytest.raises(ValueError, match="limit must be a positive number"):
        list_runs(app, limit=0)
    assert list_runs(app, workflow="nope") == []
    with pytest.raises(ValueError, match="unknown run status 'broken'"):
        list_runs(app, status="broken")
    run = get_run(app, bad.run_id)  # type: ignore[arg-type]
    assert run is not None
    assert run.error is not None and run.error["step"] == "notify"
    assert run.error["undo_errors"] == [
        {"step": "hold", "type": "builtins.OSError", "message": "ledger offline"}
    ]
    assert get_run(app, 999_999) is None


def test_runs_are_deleted_with_their_job(app: App) -> None:
    app.register(RefundWorker)
    job = app.insert(RefundWorker.new({"amount": 500}))
    result = asyncio.run(execute(app, Refund, {"amount": 500}, job=job))
    assert result.run_id is not None and list_runs(app, job_id=job.id)
    param = "%(id)s" if app.engine.dialect == "postgres" else ":id"
    with app.engine.transaction() as tx:
        tx.execute(f"DELETE FROM jobsaga_jobs WHERE id = {param}", {"id": job.id})
    assert get_run(app, result.run_id) is None
    with app.engine.transaction() as tx:
        for table in ("jobsaga_workflow_steps", "jobsaga_workflow_events"):
            assert tx.execute(f"SELECT count(*) AS n FROM {table}")[0]["n"] == 0


def test_cli_runs_list_and_show(db_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(RefundWorker)
    bad = run_workflow(Refund, {"amount": 500}, app=app)
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--status", "failed", "--url", db_url])
    assert listed.exit_code == 0, listed.output
    assert "rollback_failed" in listed.output and "billing.refund" in listed.output
    assert "at 'notify': ValueError: refund of 500 needs approval" in listed.output

    shown = runner.invoke(cli, ["runs", "show", str(bad.run_id), "--url", db_url, "--graph"])
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert f"run {bad.run_id}  billing.refund  rollback_failed" in out
    assert "notify" in out and "FAILED" in out and "UNDO FAILED" in out
    assert "rollback started by step 'notify'" in out
    assert "undo of 'hold' failed: OSError: ledger offline" in out
    # the DAG comes from the run log itself: no --app needed
    assert "credit  undone  <- hold" in out and "notify  FAILED  <- credit" in out
    assert "s_hold --> s_credit" in out and "class s_notify failed" in out
    trail = out[out.index("trail (times UTC):") : out.index("mermaid:")]
    assert trail.index("notify  FAILED") < trail.index("credit  undone")
    assert trail.index("credit  undone") < trail.index("hold    UNDO FAILED")

    missing = runner.invoke(cli, ["runs", "show", "424242", "--url", db_url])
    assert missing.exit_code != 0 and "no run 424242" in missing.output


def test_cli_show_lays_steps_along_the_dag_when_the_app_knows_the_workflow(
    db_url: str, make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(RefundWorker)
    bad = run_workflow(Refund, {"amount": 500}, app=app)
    monkeypatch.setenv("JOBSAGA_TEST_APP_URL", db_url)
    runner = CliRunner()
    shown = runner.invoke(
        cli,
        [
            "runs",
            "show",
            str(bad.run_id),
            "--graph",
            "--app",
            "tests.workflow.test_runlog_cli:env_app",
        ],
    )
    assert shown.exit_code == 0, shown.output
    assert "credit  undone  <- hold" in shown.output
    # the app knows the workflow: the richer chart, with its inputs
    assert "input_amount --> s_hold" in shown.output and "class s_notify failed" in shown.output


def env_app() -> App:
    import os

    return App(os.environ["JOBSAGA_TEST_APP_URL"], workers=[RefundWorker])


def test_cli_workflow_graph(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    runner = CliRunner()
    url = f"sqlite:///{tmp_path / 'x.db'}"
    by_path = runner.invoke(
        cli, ["workflow", "graph", "tests.workflow.test_runlog_cli:Refund", "--url", url]
    )
    assert by_path.exit_code == 0, by_path.output
    assert by_path.output == Refund.mermaid()
    assert "s_hold --> s_credit" in by_path.output
    monkeypatch.setenv("JOBSAGA_TEST_APP_URL", url)
    by_name = runner.invoke(
        cli,
        ["workflow", "graph", "billing.refund", "--app", "tests.workflow.test_runlog_cli:env_app"],
    )
    assert by_name.exit_code == 0, by_name.output
    assert by_name.output == Refund.mermaid()
    unknown = runner.invoke(cli, ["workflow", "graph", "nope", "--url", url])
    assert unknown.exit_code != 0 and "no workflow 'nope'" in unknown.output
