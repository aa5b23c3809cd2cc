"""The examples of docs/testing.md, run as a user's suite runs them (plugin fixtures)."""

from __future__ import annotations

import pytest

from jobsaga import App, Discard
from jobsaga.testing import (
    assert_enqueued,
    assert_steps,
    assert_undo_order,
    drain_queue,
    perform_job,
    refute_enqueued,
    run_workflow,
)
from jobsaga.workflow import list_runs

from .workers import LEDGER, SENT, Onboard, Provision, ProvisionWorker, SendWelcome


def test_perform_sends_the_welcome() -> None:
    assert perform_job(SendWelcome, {"account_id": 1}) == {"sent_to": "ada@example.com"}


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
