"""Saga workflows: a DAG of ``@step`` methods run inside jobs, with compensate and undo.

See ``docs/workflows.md``. The public names are re-exported from :mod:`jobsaga`.
"""

from .context import StepContext
from .dsl import Workflow, step
from .encoding import StepResultError
from .errors import (
    JobCancelled,
    RecordedError,
    RetriesExhausted,
    RetryCancelled,
    RunAbandoned,
    RunLogUnwritable,
    RunStateError,
    StepArgumentError,
    StepFailure,
    WorkflowDefinitionError,
    WorkflowError,
    WorkflowInputError,
    WorkflowOutsideJobError,
)
from .records import (
    FAILED_STATUSES,
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    get_run,
    list_runs,
)
from .results import Continue, Retry
from .running import (
    aroll_back_run,
    arun_workflow_in_test_context,
    roll_back_run,
    run_workflow_in_test_context,
)
from .state import RunResult
from .worker import WorkflowWorker

__all__ = [
    "Continue",
    "EventRecord",
    "FAILED_STATUSES",
    "JobCancelled",
    "RecordedError",
    "RetriesExhausted",
    "Retry",
    "RetryCancelled",
    "RunAbandoned",
    "RunLogUnwritable",
    "RunRecord",
    "RunResult",
    "RunStateError",
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
    "aroll_back_run",
    "arun_workflow_in_test_context",
    "get_run",
    "list_runs",
    "roll_back_run",
    "run_workflow_in_test_context",
    "step",
]
