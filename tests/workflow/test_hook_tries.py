"""An undo and a compensation count their own tries in ``ctx.tries`` (issue 12, item 11).

The step's count is ``ctx.step_tries`` there. Before, ``ctx.tries`` in an undo was the step's,
so ``if ctx.tries < 2: return Retry()`` after a step that ran once retried until exhausted."""

from __future__ import annotations

from typing import Any

from jobsaga import App, StepContext, Workflow, step
from jobsaga.testing import run_workflow
from jobsaga.workflow import Continue, Retry
from tests.workflow.conftest import TRAIL


class Release(Workflow, name="tests.hook_tries.release", inputs=["order"]):
    @step(undo_retries=5, backoff=0)
    def reserve(self, order: str) -> str:
        return f"r-{order}"

    @reserve.undo
    def release(self, result: str, ctx: StepContext[Any]) -> Retry | None:
        TRAIL.append(f"undo try {ctx.tries} (step ran {ctx.step_tries})")
        if ctx.tries < 2:
            return Retry("warehouse busy", delay=0)
        return None

    @step
    def charge(self, reserve: str) -> str:
        raise ValueError("card declined")


def test_an_undo_sees_its_own_tries(app: App) -> None:
    result = run_workflow(Release, {"order": "o-1"}, app=app)
    assert not result.ok and result.error is not None
    assert result.error.undone == ("reserve",) and not result.error.undo_errors
    assert TRAIL == ["undo try 1 (step ran 1)", "undo try 2 (step ran 1)"]
    assert result.run.status == "rolled_back"
    assert result.run.step("reserve").undo_tries == 2


class Flaky(Workflow, name="tests.hook_tries.flaky", inputs=["n"]):
    @step(max_retries=4, retry_on=(ConnectionError,), backoff=0)
    def fetch(self, n: int, ctx: StepContext[Any]) -> int:
        TRAIL.append(f"fetch try {ctx.tries}")
        raise ConnectionError("down") if ctx.tries <= 2 else LookupError("gone")

    @fetch.compensate
    def on_fetch(self, error: BaseException, ctx: StepContext[Any]) -> Any:
        TRAIL.append(f"compensate {ctx.tries} after try {ctx.step_tries}")
        if ctx.tries < 2:
            return Retry()
        return Continue(-1)


def test_a_compensation_sees_its_own_calls_and_the_steps_tries(app: App) -> None:
    result = run_workflow(Flaky, {"n": 1}, app=app)
    assert result.ok and result.value == -1
    # tries 1 and 2 were retried by retry_on, without the compensation
    assert TRAIL == [
        "fetch try 1",
        "fetch try 2",
        "fetch try 3",
        "compensate 1 after try 3",
        "fetch try 4",
        "compensate 2 after try 4",
    ]
