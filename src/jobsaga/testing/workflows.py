"""Run a saga in a test and assert on its run log: which steps did what, and the undo order.

Built on the workflow layer's sanctioned entry point (``run_workflow_in_test_context``), so a
test run behaves as a run inside a ``WorkflowWorker`` does, rollback included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..app import App
from ..workflow import RunResult, Workflow, run_workflow_in_test_context

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
    """Run ``workflow`` to its end and return its result or error and its run log (``.run``).

    With ``app`` (migrated) the run log is written to its database as production writes it;
    without, it is kept in memory. The error is returned, not raised (``result.unwrap()``).
    """
    if app is None:
        app = App("sqlite:///:memory:")
        return run_workflow_in_test_context(
            app, workflow, inputs, context, attempt=attempt, persist=False
        )
    return run_workflow_in_test_context(app, workflow, inputs, context, attempt=attempt)


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
