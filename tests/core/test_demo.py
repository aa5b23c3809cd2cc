"""The README's first command: ``jobsaga demo`` settles every job and every saga run, and
prints both tables and a ``runs show`` hint that works against the demo database."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
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


def test_demo_names_the_job_the_unique_duplicate_matched(demo: Demo) -> None:
    with sqlite3.connect(demo.path) as db:
        [(stored,)] = db.execute(
            "SELECT id FROM jobsaga_jobs WHERE worker = 'demo.import_catalog'"
        ).fetchall()
    assert (
        'unique duplicate: demo.import_catalog {"supplier": "s-1", "since": "2026-11-02"} '
        f'matched job {stored} {{"supplier": "s-1", "since": "2026-11-01"}} and was not stored'
    ) in demo.output.splitlines()
    jobs = {row[0]: row for row in table_after(demo.output, "ID  WORKER")}
    assert jobs[str(stored)][1:] == [
        "demo.import_catalog", "default", "completed", "1/20", "matched", "by", "the", "unique",
        "duplicate",
    ]  # fmt: skip


def test_demo_prints_what_the_node_logged_in_order_and_nothing_on_stderr(
    tmp_path: Path,
) -> None:
    """The real command in a process: the timed-out job's warnings come in the demo's own
    output, before the tables, not on stderr (where they landed in the middle of them)."""
    done = subprocess.run(
        [sys.executable, "-m", "jobsaga.cli.main", "demo", "--db", str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    lines = done.stdout.splitlines()
    logged = lines.index("the node logged:")
    assert re.fullmatch(
        r"  warning: job \d+ \(demo.resize_images\) attempt 1 overran its timeout; .*",
        lines[logged + 1],
    )
    assert logged < next(i for i, line in enumerate(lines) if line.startswith("ID  WORKER"))
    jobs = table_after(done.stdout, "ID  WORKER")
    runs = table_after(done.stdout, "RUN  WORKFLOW")
    assert len(jobs) == 18 and len(runs) == 5  # whole tables, nothing between their rows


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


def table_after(output: str, header: str) -> list[list[str]]:
    """The rows (cells split on blanks) of the table whose header line starts with
    ``header``, up to the first line that is not a row (rows start with a number)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 1
    rows = []
    for line in lines[start:]:
        if not line.split() or not line.split()[0].isdigit():
            break
        rows.append(line.split())
    return rows


def test_demo_prints_the_runs_table_and_a_working_hint(demo: Demo) -> None:
    rows = table_after(demo.output, "RUN  WORKFLOW   JOB  ATTEMPT  STATUS")
    assert len(rows) == 5
    assert [int(row[0]) for row in rows] == sorted(int(row[0]) for row in rows)  # by run id
    by_prompt: dict[str, list[list[str]]] = {}
    for row in rows:
        by_prompt.setdefault(row[5], []).append(row)
    assert {p: [(r[1], r[4]) for r in found] for p, found in by_prompt.items()} == {
        "prompt_id=p-revenue": [("analytics", "succeeded")],
        "prompt_id=p-churn": [("analytics", "succeeded")],
        "prompt_id=p-forecast": [("analytics", "rolled_back"), ("analytics", "rolled_back")],
        "prompt_id=p-cohorts": [("analytics", "succeeded")],
    }
    forecast = by_prompt["prompt_id=p-forecast"]
    assert forecast[0][2] == forecast[1][2] and [r[3] for r in forecast] == ["1", "2"]
    trails = {p: " ".join(found[0][6:]) for p, found in by_prompt.items()}
    assert trails["prompt_id=p-revenue"] == "every step succeeded; follow-up analytics.notify_user"
    assert trails["prompt_id=p-churn"].startswith(
        "summarize compensated (continue) after ModelUnavailable"
    )
    assert (
        " ".join(forecast[1][6:])
        == trails["prompt_id=p-forecast"]
        == ("save_report failed with ConnectionError; run_query undone")
    )
    assert trails["prompt_id=p-cohorts"].startswith("run_query retried after WarehouseBusy")
    assert "on_final_failure: prompt p-forecast marked failed" in demo.output

    hint = re.search(r"inspect a run: jobsaga (runs show .+)$", demo.output, re.M)
    assert hint is not None
    shown = CliRunner().invoke(cli, hint.group(1).split())
    assert shown.exit_code == 0, shown.output
    assert "rolled_back" in shown.output  # the run the hint names is the one that failed
    assert re.search(r"run_query\s+undone", shown.output)


def test_workflows_analytics_is_the_packaged_saga() -> None:
    """The guide's ``--app workflows.analytics:build_app`` loads the same classes."""
    app = load_app("workflows.analytics:build_app")
    assert app.worker_for("analytics.agent") is analytics.AnalyticsAgentWorker
    assert app.workflows["analytics"] is analytics.AnalyticsWorkflow
