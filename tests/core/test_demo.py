"""The README's first command: ``jobsaga demo`` settles every job and every saga run, and
prints both tables and a ``runs show`` hint that works against the demo database."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import NamedTuple

import pytest
from click.testing import CliRunner

from jobsaga import JobState
from jobsaga.cli.loading import load_app
from jobsaga.cli.main import cli
from jobsaga.demo import analytics, build_app
from jobsaga.workflow import RunRecord, get_run, list_runs


class Demo(NamedTuple):
    path: Path
    output: str
    store: analytics.AnalyticsStore
    """The saga's in-memory stand-in for the warehouse and report store, as the demo left it."""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = CliRunner().invoke(cli, ["demo", "--db", str(path)])
    assert result.exit_code == 0, result.output
    return Demo(path, result.output, analytics.AnalyticsWorkflow.store)


def runs_by_prompt(path: Path) -> dict[str, list[RunRecord]]:
    app = build_app(f"sqlite:///{path}")
    try:
        found: dict[str, list[RunRecord]] = {}
        for listed in sorted(list_runs(app), key=lambda r: r.id or 0):
            run = get_run(app, listed.id or 0)
            assert run is not None
            found.setdefault(run.inputs["prompt_id"], []).append(run)
        return found
    finally:
        app.close()


def test_demo_settles_every_job_outcome(demo: Demo) -> None:
    with sqlite3.connect(demo.path) as db:
        rows = db.execute("SELECT worker, state FROM jobsaga_jobs ORDER BY id").fetchall()
    by_worker: dict[str, list[str]] = {}
    for worker, state in rows:
        by_worker.setdefault(worker, []).append(state)
    assert by_worker["demo.charge_card"] == ["completed"]
    assert by_worker["demo.notify_partner"] == ["discarded"]
    assert by_worker["demo.build_report"] == ["cancelled"]
    assert sorted(by_worker["demo.fetch_exchange_rate"]) == ["completed", "discarded"]
    assert by_worker["demo.import_catalog"] == ["completed"]  # the duplicate was not stored
    assert by_worker["demo.resize_images"] == ["discarded"]  # timed out twice
    assert "on_final_failure: job" in demo.output
    assert "unique duplicate returned as a conflict" in demo.output


def test_demo_runs_every_saga_path(demo: Demo) -> None:
    runs = runs_by_prompt(demo.path)
    assert {prompt: [r.status for r in found] for prompt, found in runs.items()} == {
        "p-revenue": ["succeeded"],
        "p-churn": ["succeeded"],
        "p-forecast": ["rolled_back", "rolled_back"],  # one run per attempt of its job
        "p-cohorts": ["succeeded"],
    }
    [churn] = runs["p-churn"]
    assert churn.step("summarize").status == "compensated"
    assert churn.step("summarize").result["source"] == "statistics"
    [cohorts] = runs["p-cohorts"]
    assert cohorts.step("run_query").tries == 2 and cohorts.events_of("step.retried")

    forecast = runs["p-forecast"]
    assert [r.attempt for r in forecast] == [1, 2]
    assert len({r.job_id for r in forecast}) == 1
    dropped = []
    for run in forecast:
        assert run.error is not None and run.error["step"] == "save_report"
        assert run.undo_order() == ["run_query"]  # the temp table is dropped
        dropped.append(run.step("run_query").result["name"])
    assert not set(dropped) & set(demo.store.temp_tables)
    assert demo.store.reports.keys() == {
        runs[p][0].result for p in ("p-revenue", "p-churn", "p-cohorts")
    }
    assert demo.store.ui_messages == [
        {
            "prompt_id": "p-forecast",
            "event": "processing_failed",
            "error": "report store unreachable",
            "cleaned_up": True,
        }
    ]


def test_demo_notifies_only_after_successful_sagas(demo: Demo) -> None:
    app = build_app(f"sqlite:///{demo.path}")
    try:
        sagas = app.list_jobs(worker=analytics.DemoAnalyticsAgentWorker, limit=None)
        notified = app.list_jobs(worker=analytics.NotifyUser, limit=None)
    finally:
        app.close()
    states = {job.args["prompt_id"]: job.state for job in sagas}
    assert states == {
        "p-revenue": JobState.COMPLETED,
        "p-churn": JobState.COMPLETED,
        "p-forecast": JobState.DISCARDED,
        "p-cohorts": JobState.COMPLETED,
    }
    assert sorted(job.args["prompt_id"] for job in notified) == [
        "p-churn",
        "p-cohorts",
        "p-revenue",
    ]
    assert all(job.state is JobState.COMPLETED for job in notified)


def test_demo_prints_the_runs_table_and_a_working_hint(demo: Demo) -> None:
    lines = demo.output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("run  workflow"))
    table = lines[header + 2 : header + 7]
    rows = [line.split() for line in table]  # run, workflow, job/attempt, status, inputs...
    assert [(row[1], row[3], row[4]) for row in rows] == [
        ("analytics", "succeeded", "prompt_id=p-revenue"),
        ("analytics", "succeeded", "prompt_id=p-churn"),
        ("analytics", "rolled_back", "prompt_id=p-forecast"),
        ("analytics", "rolled_back", "prompt_id=p-forecast"),
        ("analytics", "succeeded", "prompt_id=p-cohorts"),
    ]
    forecast_job = rows[2][2].split("/")[0]
    assert [rows[2][2], rows[3][2]] == [f"{forecast_job}/1", f"{forecast_job}/2"]
    assert "every step succeeded; follow-up analytics.notify_user" in table[0]
    assert "summarize compensated (continue) after ModelUnavailable" in table[1]
    assert "save_report failed with ConnectionError; run_query undone" in table[2]
    assert "save_report failed with ConnectionError; run_query undone" in table[3]
    assert "run_query retried after WarehouseBusy" in table[4]
    assert "on_final_failure: prompt p-forecast marked failed" in demo.output

    hint = re.search(r"inspect a run: jobsaga (runs show .+)$", demo.output, re.M)
    assert hint is not None
    shown = CliRunner().invoke(cli, hint.group(1).split())
    assert shown.exit_code == 0, shown.output
    assert "status=rolled_back" in shown.output
    assert re.search(r"run_query\s+undone", shown.output)


def test_workflows_analytics_is_the_packaged_saga() -> None:
    """The guide's ``--app workflows.analytics:build_app`` loads the same classes."""
    app = load_app("workflows.analytics:build_app")
    assert app.worker_for("analytics.agent") is analytics.AnalyticsAgentWorker
    assert app.workflows["analytics"] is analytics.AnalyticsWorkflow
