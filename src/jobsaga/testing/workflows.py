"""Run a saga in a test and assert on its run log: which steps did what, and the undo order.

A test run goes through the workflow layer's ``execute``, what ``WorkflowWorker.perform``
calls, so it behaves as a run inside a job does, rollback included; it is the one way to run
a workflow outside a job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..app import App
from ..engines import IN_MEMORY_URL
from ..workflow import RunResult, Workflow
from ..workflow.running import execute
from .runner import run_sync

STATUS_FILTERS = {
    "succeeded": ("succeeded",),
    "failed": ("failed",),
    "skipped": ("skipped",),
    "compensated": ("compensated",),
    "undone": ("undone",),
    "undo_failed": ("undo_failed",),
}


def run_workflow(
    workflow: type[Workflow],
    inputs: Any = None,
    context: Any = None,
    *,
    app: App | None = None,
    attempt: int = 1,
) -> RunResult:
    """Run ``workflow`` to its end, without a job, and return how it went.

    It behaves exactly as a run inside a ``WorkflowWorker`` would: inputs and the ``Context``
    model are validated first (``WorkflowInputError`` names a missing input), steps run
    concurrently with retries, compensation and undo, enqueueing from a step raises
    ``EnqueueInStepError``, and telemetry is emitted on ``app.telemetry``. The differences:
    ``ctx.job`` is None and ``ctx.attempt`` is ``attempt``; the run has no job id (so no
    crash recovery); follow-up jobs are returned, not inserted.

    With ``app`` (migrated) the run log is written to its database as production writes it;
    without, it is kept in memory. The returned :class:`RunResult` carries ``value`` or
    ``error`` (a ``WorkflowError``, returned, not raised: ``result.unwrap()`` raises it),
    ``status``, ``follow_ups`` and ``run``, the :class:`RunRecord` with every step's status,
    result, error and tries and the ordered events (``run.undo_order()``...).

    Call it from synchronous code; from a coroutine (an async test), ``await
    arun_workflow(...)``, which runs async steps on the test's own event loop.
    """
    return run_sync(arun_workflow(workflow, inputs, context, app=app, attempt=attempt))


async def arun_workflow(
    workflow: type[Workflow],
    inputs: Any = None,
    context: Any = None,
    *,
    app: App | None = None,
    attempt: int = 1,
) -> RunResult:
    """The async form of :func:`run_workflow`, for async tests."""
    runs_on = app if app is not None else App(IN_MEMORY_URL)
    result = await execute(
        runs_on,
        workflow,
        inputs,
        context,
        job=None,
        attempt=attempt,
        persist=app is not None,
        test_run=True,
    )
    assert result.log is not None
    result.run = await result.log.record(runs_on)
    return result


def _statuses(result: RunResult) -> dict[str, str]:
    if result.run is None:
        raise AssertionError("this RunResult carries no run log; run it with run_workflow")
    return result.run.statuses()


def assert_steps(result: RunResult, **expected: Sequence[str]) -> None:
    """Fail unless exactly these steps ended in each status given.

    Keywords: ``succeeded``, ``failed``, ``skipped``, ``compensated``, ``undone``,
    ``undo_failed``; a status left out is not checked.
    """
    unknown = set(expected) - set(STATUS_FILTERS)
    if unknown:
        raise TypeError(f"assert_steps: unknown status {', '.join(sorted(unknown))}")
    statuses = _statuses(result)
    wrong = []
    for name, wanted in expected.items():
        actual = sorted(s for s, st in statuses.items() if st in STATUS_FILTERS[name])
        if actual != sorted(wanted):
            wrong.append(f"  {name}: expected {sorted(wanted)}, got {actual}")
    if wrong:
        raise AssertionError(
            f"workflow {result.workflow} (run {result.status.value}) steps differ:\n"
            + "\n".join(wrong)
            + f"\nstep statuses: {statuses}"
        )


def assert_undo_order(result: RunResult, expected: Sequence[str]) -> None:
    """Fail unless the rollback undid exactly these steps, in this order."""
    _statuses(result)
    assert result.run is not None
    actual = result.run.undo_order()
    if actual != list(expected):
        raise AssertionError(
            f"workflow {result.workflow}: undo order expected {list(expected)}, got {actual}"
            f"\nstep statuses: {result.run.statuses()}"
        )
