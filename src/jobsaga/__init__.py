"""jobsaga: persistent background jobs and saga workflows on PostgreSQL and SQLite.

The top level holds what application code writes: the app, workers and what ``perform``
returns, workflows and what steps return, and the exceptions an application catches around
an insert or an operation. Everything else lives in a named submodule: the node and its
thread (:mod:`jobsaga.runtime`), node configuration from files and the environment
(:mod:`jobsaga.config`), retry curves (:mod:`jobsaga.backoff`), telemetry
(:mod:`jobsaga.telemetry`, :mod:`jobsaga.telemetry_logging`), run records
(:mod:`jobsaga.workflow`), queue listings (:mod:`jobsaga.operations`), every exception
(:mod:`jobsaga.errors`) and the test toolkit (:mod:`jobsaga.testing`).
"""

from .app import App
from .errors import (
    ArgsError,
    DatabaseError,
    DatabaseUnavailable,
    FilterError,
    JobsagaError,
    WorkflowError,
)
from .job import Job, JobSpec, JobState
from .operations import JobFilter
from .plugins.crontab import CronEntry
from .results import Cancel, Complete, Discard, Error, Snooze
from .unique import UniqueSpec
from .worker import Worker
from .workflow import (
    Case,
    Continue,
    Default,
    Group,
    Halt,
    Map,
    Retry,
    StepContext,
    Switch,
    Workflow,
    WorkflowWorker,
    collect,
    compose,
    recurse,
    step,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgsError",
    "Cancel",
    "Case",
    "Complete",
    "Continue",
    "CronEntry",
    "DatabaseError",
    "DatabaseUnavailable",
    "Default",
    "Discard",
    "Error",
    "FilterError",
    "Group",
    "Halt",
    "Job",
    "JobFilter",
    "JobSpec",
    "JobState",
    "JobsagaError",
    "Map",
    "Retry",
    "Snooze",
    "StepContext",
    "Switch",
    "UniqueSpec",
    "Worker",
    "Workflow",
    "WorkflowError",
    "WorkflowWorker",
    "collect",
    "compose",
    "recurse",
    "step",
]
