"""Saga workflows: a DAG of ``@step`` methods run inside jobs, with compensate and undo.

See ``docs/workflows.md``. The public names are re-exported from :mod:`jobsaga`.
"""

from .context import StepContext
from .dsl import Workflow, step
from .errors import (
    RecordedError,
    RetriesExhausted,
    StepArgumentError,
    StepFailure,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowInputError,
    WorkflowOutsideJobError,
)
from .executor import RunResult
from .results import Continue, Retry
from .runlog import (
    FAILED_STATUSES,
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepResultError,
    StepStatus,
    get_run,
    list_runs,
)
from .running import arun_workflow_in_test_context, run_workflow_in_test_context
from .worker import WorkflowWorker

__all__ = [
    "FAILED_STATUSES",
    "Continue",
    "EventRecord",
    "RecordedError",
    "Retry",
    "RetriesExhausted",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "StepArgumentError",
    "StepContext",
    "StepFailure",
    "StepRecord",
    "StepResultError",
    "StepStatus",
    "Workflow",
    "WorkflowDefinitionError",
    "WorkflowError",
    "WorkflowInputError",
    "WorkflowOutsideJobError",
    "WorkflowWorker",
    "arun_workflow_in_test_context",
    "get_run",
    "list_runs",
    "run_workflow_in_test_context",
    "step",
]
