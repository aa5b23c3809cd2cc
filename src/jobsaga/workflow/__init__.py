"""Saga workflows: a DAG of ``@step`` methods run inside jobs, with compensate and undo.

See ``docs/workflows.md``. The public names are re-exported from :mod:`jobsaga`; the
workflow errors live with every other error in :mod:`jobsaga.errors`.
"""

from .context import StepContext
from .dsl import Workflow, step
from .middleware import Middleware, RunInfo, StepEvent
from .parts import Case, Default, Group, Map, Switch, collect, compose, recurse
from .records import (
    FAILED_STATUSES,
    ChildRun,
    EventRecord,
    FollowUpJob,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    count_runs,
    follow_up_jobs,
    get_run,
    list_runs,
)
from .results import Continue, Halt, Retry
from .resuming import ResumedRun, aresume_run, resume_run
from .running import aroll_back_run, roll_back_run
from .state import RunResult
from .worker import WorkflowWorker

__all__ = [
    "Case",
    "ChildRun",
    "Continue",
    "Default",
    "EventRecord",
    "FAILED_STATUSES",
    "FollowUpJob",
    "Group",
    "Halt",
    "Map",
    "Middleware",
    "ResumedRun",
    "Retry",
    "RunInfo",
    "RunRecord",
    "RunResult",
    "RunStatus",
    "StepContext",
    "StepEvent",
    "StepRecord",
    "StepStatus",
    "Switch",
    "Workflow",
    "WorkflowWorker",
    "aresume_run",
    "aroll_back_run",
    "collect",
    "compose",
    "count_runs",
    "follow_up_jobs",
    "get_run",
    "list_runs",
    "recurse",
    "resume_run",
    "roll_back_run",
    "step",
]
