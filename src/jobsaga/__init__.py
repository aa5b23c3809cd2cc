"""jobsaga: persistent background jobs and saga workflows on PostgreSQL and SQLite."""

from .app import App
from .backoff import default_backoff, tenacity_backoff
from .errors import (
    ArgsError,
    ConfigError,
    EnqueueInStepError,
    JobsagaError,
    JobTimeout,
    MigrationError,
    UnknownWorkerError,
)
from .job import Job, JobSpec, JobState
from .results import Cancel, Complete, Discard, Error, Snooze
from .runtime.executor import PerformError
from .runtime.node import Node, NodeThread
from .telemetry import Telemetry, logging_handler
from .unique import UniqueSpec
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgsError",
    "Cancel",
    "Complete",
    "ConfigError",
    "Discard",
    "EnqueueInStepError",
    "Error",
    "Job",
    "JobSpec",
    "JobState",
    "JobTimeout",
    "JobsagaError",
    "MigrationError",
    "Node",
    "NodeThread",
    "PerformError",
    "Snooze",
    "Telemetry",
    "UniqueSpec",
    "UnknownWorkerError",
    "Worker",
    "default_backoff",
    "logging_handler",
    "tenacity_backoff",
]
