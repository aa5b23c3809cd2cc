"""jobsaga: persistent background jobs and saga workflows on PostgreSQL and SQLite."""

from .app import App
from .backoff import default_backoff, tenacity_backoff
from .config import NodeConfig
from .errors import (
    ArgsError,
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    DataRejected,
    EnqueueInStepError,
    FilterError,
    InvalidResult,
    JobOrphaned,
    JobsagaError,
    JobTimeout,
    MigrationError,
    PerformError,
    RunLogUnwritable,
    UndecodableRow,
    UnknownWorkerError,
    WorkflowError,
)
from .job import Job, JobSpec, JobState
from .operations import JobFilter, NodeQueue, QueueInfo
from .plugins.crontab import CronEntry
from .results import Cancel, Complete, Discard, Error, Snooze
from .runtime.node import Node, NodeThread
from .telemetry import Telemetry, logging_handler
from .telemetry_logging import attach_default_logger
from .unique import UniqueSpec
from .worker import Worker
from .workflow import (
    Continue,
    Retry,
    RunRecord,
    RunResult,
    StepContext,
    Workflow,
    WorkflowWorker,
    step,
)

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgsError",
    "Cancel",
    "Complete",
    "ConfigError",
    "Continue",
    "CronEntry",
    "DataRejected",
    "DatabaseError",
    "DatabaseUnavailable",
    "Discard",
    "EnqueueInStepError",
    "Error",
    "FilterError",
    "InvalidResult",
    "Job",
    "JobFilter",
    "JobOrphaned",
    "JobSpec",
    "JobState",
    "JobTimeout",
    "JobsagaError",
    "MigrationError",
    "Node",
    "NodeConfig",
    "NodeQueue",
    "NodeThread",
    "PerformError",
    "QueueInfo",
    "Retry",
    "RunLogUnwritable",
    "RunRecord",
    "RunResult",
    "Snooze",
    "StepContext",
    "Telemetry",
    "UndecodableRow",
    "UniqueSpec",
    "UnknownWorkerError",
    "Worker",
    "Workflow",
    "WorkflowError",
    "WorkflowWorker",
    "attach_default_logger",
    "default_backoff",
    "logging_handler",
    "step",
    "tenacity_backoff",
]
