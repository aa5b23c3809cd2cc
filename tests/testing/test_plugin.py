"""The toolkit exercised as a user's suite uses it: a pytester run per scenario."""

from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import pytest

from .support import run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "testing"


def test_examples_of_the_guide_pass_on_both_engines(pytester: pytest.Pytester) -> None:
    pkg = pytester.path / "examples_testing"
    shutil.copytree(EXAMPLES, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", str(pkg))
    result.assert_outcomes(passed=14)
    result.stdout.fnmatch_lines_random(
        [
            "*test_onboarding*[[]postgres[]] PASSED*",
            "*test_a_job_scheduled_for_new_year[[]postgres[]] PASSED*",
            "*test_the_worker_performed_with_the_app_leaves_its_run_log PASSED*",
        ]
    )


def test_perform_job_returns_raises_times_out_and_rejects(pytester: pytest.Pytester) -> None:
    body = """
import pytest
from jobsaga.errors import ArgsError, JobTimeout
from jobsaga.errors import InvalidResult
from jobsaga.testing import perform_job
from workers import Add, Bad, Boom, Slow

def test_value():
    assert perform_job(Add, {"a": 1, "b": 2}) == 3

def test_bad_args():
    with pytest.raises(ArgsError, match="b"):
        perform_job(Add, {"a": 1})

def test_raises():
    with pytest.raises(RuntimeError, match="boom"):
        perform_job(Boom)

def test_timeout():
    with pytest.raises(JobTimeout, match="0.1s"):
        perform_job(Slow)

def test_invalid_result():
    with pytest.raises(InvalidResult, match="returned the class Snooze; return an instance"):
        perform_job(Bad)
"""
    run(pytester, body).assert_outcomes(passed=5)


def test_importing_the_toolkit_into_a_test_module_adds_no_test(pytester: pytest.Pytester) -> None:
    body = """
from jobsaga.testing import *  # every public name, testing_mode among them
from jobsaga.testing import testing_mode
from workers import Add

def test_inline_by_hand(jobsaga_app):
    jobsaga_app.register(Add)
    with testing_mode("inline"):
        job = jobsaga_app.insert(Add.new({"a": 1, "b": 2}))
    assert job.state.value == "completed"
"""
    result = run(pytester, body, "-v")
    result.assert_outcomes(passed=1)  # and no error: testing_mode is not collected
    result.stdout.no_fnmatch_line("*testing_mode*")


def test_failed_assertions_list_the_enqueued_jobs(pytester: pytest.Pytester) -> None:
    body = """
from jobsaga.testing import assert_enqueued, refute_enqueued
from workers import Add

def test_missing(jobsaga_app):
    jobsaga_app.register(Add)
    jobsaga_app.insert(Add.new({"a": 1, "b": 2}, tags=["math"]))
    assert_enqueued(jobsaga_app, worker=Add, args={"a": 5})

def test_present(jobsaga_app):
    jobsaga_app.register(Add)
    jobsaga_app.insert(Add.new({"a": 1, "b": 2}))
    refute_enqueued(jobsaga_app, worker=Add)
"""
    result = run(pytester, body)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*expected a matching enqueued job, found none*",
            "*criteria: {'worker': 'workers.Add', 'args': {'a': 5}}*",
            "*#1 workers.Add queue=default state=available args={'a': 1, 'b': 2}*tags=[[]'math'[]]*",
            "*expected no matching enqueued job, found 1*",
        ]
    )


def test_drain_queue_counts_outcomes_and_propagates_without_safety(
    pytester: pytest.Pytester,
) -> None:
    body = """
import pytest
from jobsaga.testing import drain_queue, all_enqueued
from workers import Add, Boom, Fail, Fan, Nap

@pytest.mark.jobsaga_engines()
def test_counts(jobsaga_app, jobsaga_engine):
    jobsaga_app.register(Add, Boom, Fail, Nap)
    jobsaga_app.insert_all([Add.new({"a": 1, "b": 1}), Boom.new(), Fail.new(), Nap.new()])
    counts = drain_queue(jobsaga_app)
    assert counts == {"completed": 1, "retryable": 1, "snoozed": 1, "cancelled": 0,
                      "discarded": 1}
    assert len(all_enqueued(jobsaga_app, worker=Fail)) == 1

def test_recursion(jobsaga_app):
    jobsaga_app.register(Fan)
    jobsaga_app.insert(Fan.new({"n": 3}))
    assert drain_queue(jobsaga_app)["completed"] == 1
    assert drain_queue(jobsaga_app, with_recursion=True)["completed"] == 3

def test_limit(jobsaga_app):
    jobsaga_app.register(Add)
    jobsaga_app.insert_all([Add.new({"a": i, "b": 0}) for i in range(5)])
    assert drain_queue(jobsaga_app, with_limit=2)["completed"] == 2

def test_no_safety(jobsaga_app):
    jobsaga_app.register(Boom)
    jobsaga_app.insert(Boom.new())
    with pytest.raises(RuntimeError, match="boom"):
        drain_queue(jobsaga_app, with_safety=False)
"""
    run(pytester, body).assert_outcomes(passed=5)


def test_modes_and_postgres_schema_cleanup(pytester: pytest.Pytester) -> None:
    body = """
import psycopg
import pytest
from jobsaga.testing import drain_queue, refute_enqueued
from workers import Add

SCHEMAS = []

@pytest.mark.jobsaga_mode("inline")
@pytest.mark.jobsaga_engines("postgres")
def test_inline(jobsaga_app, jobsaga_db_url, jobsaga_mode):
    SCHEMAS.append(jobsaga_db_url)
    jobsaga_app.register(Add)
    job = jobsaga_app.insert(Add.new({"a": 1, "b": 2}))
    assert (jobsaga_mode, job.state.value, job.attempt) == ("inline", "completed", 1)

def test_manual(jobsaga_app, jobsaga_mode):
    jobsaga_app.register(Add)
    job = jobsaga_app.insert(Add.new({"a": 1, "b": 2}))
    assert (jobsaga_mode, job.state.value) == ("manual", "available")

def test_schema_was_dropped():
    from urllib.parse import unquote
    schema = unquote(SCHEMAS[0]).rsplit("search_path=", 1)[1]
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test") as conn:
        rows = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)).fetchall()
    assert rows == []

@pytest.mark.jobsaga_mode("eager")
def test_unknown_mode():
    pass
"""
    result = run(pytester, body)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*jobsaga_mode: expected one of inline, manual, got 'eager'*"])


def test_saga_assertion_failures_show_the_step_statuses(pytester: pytest.Pytester) -> None:
    body = """
from jobsaga import Workflow, step
from jobsaga.testing import assert_steps, assert_undo_order, run_workflow

class Trip(Workflow, inputs=["fail"]):
    @step
    def flight(self) -> str:
        return "F1"
    @flight.undo
    def cancel_flight(self, booking: str) -> None:
        pass
    @step
    def hotel(self, flight: str, fail: bool) -> str:
        if fail:
            raise RuntimeError("no rooms")
        return "H1"

def test_rolled_back():
    result = run_workflow(Trip, {"fail": True})
    assert_steps(result, undone=["flight"], failed=["hotel"])
    assert_undo_order(result, ["flight"])

def test_wrong_expectation():
    result = run_workflow(Trip, {"fail": True})
    assert_steps(result, succeeded=["flight", "hotel"])

def test_wrong_order():
    assert_undo_order(run_workflow(Trip, {"fail": True}), ["hotel", "flight"])
"""
    result = run(pytester, body)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*workflow test_user.Trip (run rolled_back) steps differ:*",
            "*succeeded: expected *'flight', 'hotel'*, got *",
            "*step statuses: {'flight': 'undone', 'hotel': 'failed'}*",
            "*undo order expected *'hotel', 'flight'*, got *'flight'*",
        ]
    )


def test_assert_enqueued_waits_for_another_thread(pytester: pytest.Pytester) -> None:
    body = """
import threading
import pytest
from jobsaga.testing import assert_enqueued, refute_enqueued
from workers import Add

def test_wait(jobsaga_app):
    jobsaga_app.register(Add)
    timer = threading.Timer(0.2, lambda: jobsaga_app.insert(Add.new({"a": 1, "b": 1})))
    timer.start()
    refute_enqueued(jobsaga_app, worker=Add)
    assert assert_enqueued(jobsaga_app, worker=Add, timeout=5).raw_args == {"a": 1, "b": 1}
    timer.join()

def test_unknown_criterion(jobsaga_app):
    with pytest.raises(TypeError, match="unknown enqueued-job criteria: worker_name"):
        assert_enqueued(jobsaga_app, worker_name="Add")
"""
    run(pytester, body).assert_outcomes(passed=2)


def test_every_python_block_of_the_testing_guide_is_in_the_examples() -> None:
    """Each block of docs/testing.md is whole definitions of examples/testing, word for word,
    and no definition is shown twice."""
    definitions: dict[str, str] = {}
    for path in sorted(EXAMPLES.glob("*.py")):
        text = path.read_text()
        lines = text.splitlines()
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                definitions[node.name] = "\n".join(lines[first - 1 : node.end_lineno])
    guide = (Path(__file__).resolve().parents[2] / "docs" / "testing.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", guide, re.S)
    shown: list[str] = []
    for block in blocks:
        for part in block.strip().split("\n\n\n"):
            name = re.search(r"^(?:async def|def|class) (\w+)", part, re.M)
            assert name is not None, f"docs/testing.md block without a definition:\n{part}"
            assert definitions.get(name[1]) == part.strip(), f"not as in examples: {name[1]}"
            shown.append(name[1])
    assert len(shown) == len(set(shown)) >= 15
