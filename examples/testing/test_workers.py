"""The examples of docs/testing.md, run as a user's suite runs them (plugin fixtures)."""

from __future__ import annotations

import pytest

from jobsaga import Discard
from jobsaga.testing import assert_enqueued, drain_queue, perform_job, refute_enqueued

from .workers import SENT, Onboard, SendWelcome


def test_perform_sends_the_welcome() -> None:
    assert perform_job(SendWelcome, {"account_id": 1}) == {"sent_to": "ada@example.com"}


def test_missing_account_is_discarded() -> None:
    result = perform_job(SendWelcome, {"account_id": 404})
    assert isinstance(result, Discard)
    assert result.reason == "account 404 does not exist"


@pytest.mark.jobsaga_engines("sqlite", "postgres")
def test_onboarding_schedules_the_welcome_in_an_hour(jobsaga_app, jobsaga_engine) -> None:
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
def test_inline_mode_runs_the_job_at_insert(jobsaga_app) -> None:
    jobsaga_app.register(SendWelcome)
    job = jobsaga_app.insert(SendWelcome.new({"account_id": 404}))
    assert job.state.value == "discarded"
