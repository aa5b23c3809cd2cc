"""drain_queue's passes, its guard against a job that always snoozes, inline mode inside the
caller's transaction, and the engines chosen for a whole suite."""

from __future__ import annotations

import pytest

from .support import run


def test_drain_passes_and_the_snooze_guard(pytester: pytest.Pytester) -> None:
    body = """
import pytest
from jobsaga.testing import all_enqueued, drain_queue
from workers import FINAL, Add, Fan, Flaky, Nap

pytestmark = pytest.mark.jobsaga_engines("sqlite", "postgres")

def test_one_pass_runs_every_waiting_job_but_not_what_they_enqueue(jobsaga_app, jobsaga_engine):
    jobsaga_app.register(Add, Fan)
    jobsaga_app.insert_all([Add.new({"a": i, "b": 0}) for i in range(250)])
    jobsaga_app.insert(Fan.new({"n": 1}))
    assert drain_queue(jobsaga_app)["completed"] == 251
    (left,) = all_enqueued(jobsaga_app, worker=Fan)
    assert left.raw_args == {"n": 0}

def test_a_job_that_always_snoozes_ends_the_drain(jobsaga_app, jobsaga_engine):
    jobsaga_app.register(Nap, Add)
    jobsaga_app.insert_all([Nap.new(), Add.new({"a": 1, "b": 1}, schedule_in=600)])
    counts = drain_queue(jobsaga_app, with_scheduled=True, with_recursion=True)
    assert (counts["snoozed"], counts["completed"]) == (1, 1)
    (nap,) = all_enqueued(jobsaga_app, worker=Nap)
    assert (nap.state.value, nap.meta["snoozed"], nap.attempt) == ("scheduled", 1, 0)

def test_recursion_with_scheduled_retries_to_the_final_attempt(jobsaga_app, jobsaga_engine):
    FINAL.clear()
    jobsaga_app.register(Flaky)
    jobsaga_app.insert(Flaky.new())
    assert drain_queue(jobsaga_app)["retryable"] == 1  # one pass: the retry waits
    counts = drain_queue(jobsaga_app, with_scheduled=True, with_recursion=True)
    assert (counts["retryable"], counts["discarded"]) == (1, 1)
    assert FINAL == [(3, "flaky on attempt 3")]
    (job,) = jobsaga_app.list_jobs(worker=Flaky)
    assert [e["attempt"] for e in job.errors] == [1, 2, 3]

def test_limit_counts_across_passes(jobsaga_app, jobsaga_engine):
    jobsaga_app.register(Fan)
    jobsaga_app.insert(Fan.new({"n": 5}))
    assert drain_queue(jobsaga_app, with_recursion=True, with_limit=3)["completed"] == 3
    (left,) = all_enqueued(jobsaga_app, worker=Fan)
    assert left.raw_args == {"n": 2}
"""
    run(pytester, body).assert_outcomes(passed=8)


def test_inline_mode_inside_the_callers_transaction(pytester: pytest.Pytester) -> None:
    body = """
import psycopg
import pytest
from jobsaga.testing import refute_enqueued
from workers import Add

pytestmark = [pytest.mark.jobsaga_engines("postgres"), pytest.mark.jobsaga_mode("inline")]

def test_committed(jobsaga_app, jobsaga_db_url):
    jobsaga_app.register(Add)
    with psycopg.connect(jobsaga_db_url) as conn:
        job = jobsaga_app.insert(Add.new({"a": 1, "b": 2}), conn=conn)
        assert (job.state.value, job.attempt) == ("completed", 1)
    assert jobsaga_app.get_job(job.id).state.value == "completed"

def test_rolled_back(jobsaga_app, jobsaga_db_url):
    jobsaga_app.register(Add)
    with psycopg.connect(jobsaga_db_url) as conn:
        job = jobsaga_app.insert(Add.new({"a": 1, "b": 2}), conn=conn)
        assert job.state.value == "completed"
        conn.rollback()
    assert jobsaga_app.get_job(job.id) is None
"""
    run(pytester, body).assert_outcomes(passed=2)


def test_ini_engines_run_every_unmarked_test_on_each(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\njobsaga_engines = sqlite postgres\n")
    body = """
import pytest

def test_unmarked(jobsaga_app, jobsaga_engine):
    assert jobsaga_app.engine.dialect == jobsaga_engine

@pytest.mark.jobsaga_engines("postgres")
def test_marked(jobsaga_app):
    assert jobsaga_app.engine.dialect == "postgres"

def test_without_an_app():
    pass

@pytest.mark.parametrize("x, jobsaga_engine", [(1, "postgres")], indirect=["jobsaga_engine"])
def test_own_parametrize(x, jobsaga_app):
    assert jobsaga_app.engine.dialect == "postgres"
"""
    result = run(pytester, body, "-v")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines_random(
        [
            "*test_unmarked[[]sqlite[]] PASSED*",
            "*test_unmarked[[]postgres[]] PASSED*",
            "*test_marked[[]postgres[]] PASSED*",
            "*test_without_an_app PASSED*",
            "*test_own_parametrize[[]1-postgres[]] PASSED*",
        ]
    )


def test_an_unknown_engine_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\njobsaga_engines = sqlite mysql\n")
    result = run(pytester, "def test_x(jobsaga_app):\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini jobsaga_engines: unknown engine 'mysql'*"])


def test_inline_mode_stores_follow_ups_without_running_them(pytester: pytest.Pytester) -> None:
    body = """
import pytest
from jobsaga.testing import all_enqueued, drain_queue
from workers import Fan

@pytest.mark.jobsaga_mode("inline")
def test_fan(jobsaga_app):
    jobsaga_app.register(Fan)
    job = jobsaga_app.insert(Fan.new({"n": 2}))
    assert job.state.value == "completed"
    assert [j.raw_args for j in all_enqueued(jobsaga_app, worker=Fan)] == [{"n": 1}]
    assert drain_queue(jobsaga_app, with_recursion=True)["completed"] == 2
"""
    run(pytester, body).assert_outcomes(passed=1)
