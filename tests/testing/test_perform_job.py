"""perform_job and aperform_job as a user's suite uses them: without a database, with an
app (the consequences written), with a workflow worker, and from an async test."""

from __future__ import annotations

import pytest

from .support import run


def test_a_workflow_worker_runs_its_saga_without_a_database(pytester: pytest.Pytester) -> None:
    body = """
import pytest
from jobsaga import Complete, WorkflowError
from jobsaga.testing import perform_job
from workers import LEDGER, Book, BookWorker, Greet

def test_success_returns_the_follow_ups():
    LEDGER.clear()
    result = perform_job(BookWorker, {"seat": "12A", "fail": False})
    assert isinstance(result, Complete)
    assert [(spec.worker, spec.args) for spec in result.enqueue] == [
        ("workers.Greet", {"name": "12A"})]
    assert LEDGER == ["held 12A"]

def test_failure_raises_the_workflow_error_after_the_undo():
    LEDGER.clear()
    with pytest.raises(WorkflowError, match="card declined") as caught:
        perform_job(BookWorker, {"seat": "12A", "fail": True})
    assert caught.value.find(RuntimeError) is not None
    assert LEDGER == ["held 12A", "released 12A"]

def test_missing_input_is_refused_like_an_insert():
    from jobsaga import ArgsError
    with pytest.raises(ArgsError, match="fail"):
        perform_job(BookWorker, {"seat": "12A"})
"""
    run(pytester, body).assert_outcomes(passed=3)


def test_with_an_app_the_outcome_is_written_as_a_node_writes_it(pytester: pytest.Pytester) -> None:
    body = """
import pytest
from jobsaga.testing import assert_enqueued, perform_job, refute_enqueued
from jobsaga.workflow import get_run, list_runs
from workers import FINAL, LEDGER, BookWorker, Fan, Flaky, Greet, Nap

pytestmark = pytest.mark.jobsaga_engines("sqlite", "postgres")

def test_follow_ups_are_enqueued(jobsaga_app, jobsaga_engine):
    perform_job(Fan, {"n": 2}, app=jobsaga_app)
    assert_enqueued(jobsaga_app, worker=Fan, args={"n": 1})
    (done,) = jobsaga_app.list_jobs(state="completed")
    assert (done.worker, done.raw_args, done.attempt) == ("workers.Fan", {"n": 2}, 1)

def test_the_saga_run_log_is_in_the_database(jobsaga_app, jobsaga_engine):
    LEDGER.clear()
    perform_job(BookWorker, {"seat": "3C", "fail": False}, app=jobsaga_app)
    assert_enqueued(jobsaga_app, worker=Greet, queue="mailers", args={"name": "3C"})
    (run,) = list_runs(jobsaga_app)
    assert (run.status, run.result, run.attempt) == ("succeeded", "paid 3C", 1)
    (job,) = jobsaga_app.list_jobs(worker=BookWorker)
    assert run.job_id == job.id and job.state.value == "completed"

def test_a_failed_saga_is_logged_rolled_back_and_the_job_retryable(jobsaga_app, jobsaga_engine):
    with pytest.raises(Exception, match="card declined"):
        perform_job(BookWorker, {"seat": "3C", "fail": True}, app=jobsaga_app)
    (run,) = list_runs(jobsaga_app)
    assert get_run(jobsaga_app, run.id).statuses() == {"hold": "undone", "pay": "failed"}
    refute_enqueued(jobsaga_app, worker=Greet)
    (job,) = jobsaga_app.list_jobs(worker=BookWorker)
    assert job.state.value == "retryable" and "card declined" in job.errors[0]["error"]

def test_the_final_attempt_runs_the_hook_once(jobsaga_app, jobsaga_engine):
    FINAL.clear()
    with pytest.raises(RuntimeError, match="flaky on attempt 3"):
        perform_job(Flaky, app=jobsaga_app, attempt=3)
    assert FINAL == [(3, "flaky on attempt 3")]
    (job,) = jobsaga_app.list_jobs(worker=Flaky)
    assert (job.state.value, job.attempt) == ("discarded", 3)

def test_a_snooze_is_counted_on_the_job(jobsaga_app, jobsaga_engine):
    perform_job(Nap, app=jobsaga_app)
    (job,) = jobsaga_app.list_jobs(worker=Nap)
    assert (job.state.value, job.attempt, job.meta["snoozed"]) == ("scheduled", 0, 1)
"""
    run(pytester, body).assert_outcomes(passed=10)


def test_aperform_job_runs_on_the_tests_event_loop(pytester: pytest.Pytester) -> None:
    body = """
import asyncio
from jobsaga.testing import aperform_job, perform_job
from workers import LOOPS, Add, Greet

def test_async_test():
    async def main():
        loop = asyncio.get_running_loop()
        assert await aperform_job(Greet, {"name": "ada"}) == {"hello": "ada"}
        assert LOOPS == [loop]
        assert await aperform_job(Add, {"a": 2, "b": 3}) == 5
        # the sync form still works under a running loop, on a private one
        assert perform_job(Greet, {"name": "bob"}) == {"hello": "bob"}
        assert len(LOOPS) == 2 and LOOPS[1] is not loop
    asyncio.run(main())
"""
    run(pytester, body).assert_outcomes(passed=1)
