"""The examples of docs/testing.md, run as a user's suite runs them (plugin fixtures)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from jobsaga import App, ArgsError, Complete, Discard, WorkflowError
from jobsaga.testing import (
    assert_enqueued,
    assert_steps,
    assert_undo_order,
    drain_queue,
    perform_job,
    refute_enqueued,
    run_workflow,
)
from jobsaga.workflow import get_run, list_runs

from .workers import (
    LEDGER,
    SENT,
    SHARED,
    Actor,
    Onboard,
    Provision,
    ProvisionWorker,
    Role,
    SendWelcome,
    ShareReport,
)


def test_perform_sends_the_welcome() -> None:
    assert perform_job(SendWelcome, {"account_id": 1}) == {"sent_to": "ada@example.com"}


def test_sharing_a_report_as_an_actor(jobsaga_app: App) -> None:
    actor = Actor(id=5, organization_id=1, role=Role.ANALYST)
    job = jobsaga_app.insert(ShareReport.new({"report_id": 10, "actor": actor}))
    assert job.raw_args["actor"] == {"id": 5, "organization_id": 1, "role": "analyst"}

    SHARED.clear()
    assert perform_job(ShareReport, job.raw_args) is None
    assert SHARED == [(10, 5)]

    assert_enqueued(jobsaga_app, worker=ShareReport)
    refute_enqueued(jobsaga_app, worker=SendWelcome)


def test_an_unknown_role_is_refused_at_insert() -> None:
    with pytest.raises(ArgsError, match="field 'actor.role'"):
        ShareReport.new({"report_id": 10, "actor": {"id": 5, "organization_id": 1, "role": "x"}})


def test_a_missing_report_is_discarded() -> None:
    actor = {"id": 5, "organization_id": 1, "role": "admin"}
    assert perform_job(ShareReport, {"report_id": 404, "actor": actor}) == Discard("not_found")


def test_missing_account_is_discarded() -> None:
    result = perform_job(SendWelcome, {"account_id": 404})
    assert isinstance(result, Discard)
    assert result.reason == "account 404 does not exist"


@pytest.mark.jobsaga_engines("sqlite", "postgres")
def test_onboarding_schedules_the_welcome_in_an_hour(jobsaga_app: App, jobsaga_engine: str) -> None:
    jobsaga_app.register(Onboard, SendWelcome)
    jobsaga_app.insert(Onboard.new({"account_id": 1}))
    assert_enqueued(jobsaga_app, worker=Onboard, args={"account_id": 1})
    refute_enqueued(jobsaga_app, worker=SendWelcome)

    assert drain_queue(jobsaga_app, "default")["completed"] == 1

    job = assert_enqueued(
        jobsaga_app, worker=SendWelcome, queue="mailers", args={"account_id": 1}, schedule_in=3600
    )
    assert job.state.value == "scheduled"
    SENT.clear()
    assert drain_queue(jobsaga_app, "mailers", with_scheduled=True)["completed"] == 1
    assert SENT == ["ada@example.com"]


@pytest.mark.jobsaga_mode("inline")
def test_inline_mode_runs_the_job_at_insert(jobsaga_app: App) -> None:
    jobsaga_app.register(SendWelcome)
    job = jobsaga_app.insert(SendWelcome.new({"account_id": 404}))
    assert job.state.value == "discarded"


@pytest.mark.jobsaga_engines("sqlite", "postgres")
def test_a_job_scheduled_for_new_year(jobsaga_app: App, jobsaga_engine: str) -> None:
    new_year = datetime(2099, 1, 1, tzinfo=UTC)  # far ahead: still scheduled
    job = jobsaga_app.insert(SendWelcome.new({"account_id": 1}, scheduled_at=new_year))
    assert job.scheduled_at == new_year
    assert job.state.value == "scheduled"


def test_perform_the_worker_and_check_the_side_effects() -> None:
    LEDGER.clear()
    result = perform_job(ProvisionWorker, {"account_id": 7, "plan": "basic"})
    assert isinstance(result, Complete)
    assert LEDGER == ["reserved 7", "charged basic"]


def test_a_failed_charge_releases_the_seat() -> None:
    LEDGER.clear()
    result = run_workflow(Provision, {"account_id": 7, "plan": "gold"})
    assert not result.ok and "card declined" in str(result.error)
    assert_steps(result, undone=["reserve_seat"], failed=["charge"])
    assert_undo_order(result, ["reserve_seat"])
    assert LEDGER == ["reserved 7", "released seat-7"]


def test_the_worker_runs_the_saga_and_logs_it(jobsaga_app: App) -> None:
    LEDGER.clear()
    jobsaga_app.register(ProvisionWorker)
    jobsaga_app.insert(ProvisionWorker.new({"account_id": 7, "plan": "basic"}))
    assert drain_queue(jobsaga_app)["completed"] == 1
    assert LEDGER == ["reserved 7", "charged basic"]
    (run,) = list_runs(jobsaga_app)
    assert run.status == "succeeded" and run.result == "invoice-basic"


def test_the_worker_performed_with_the_app_leaves_its_run_log(jobsaga_app: App) -> None:
    with pytest.raises(WorkflowError, match="card declined"):
        perform_job(ProvisionWorker, {"account_id": 8, "plan": "gold"}, app=jobsaga_app)
    (run,) = list_runs(jobsaga_app, status="failed")
    assert run.status == "rolled_back"
    assert get_run(jobsaga_app, run.id).undo_order() == ["reserve_seat"]
