"""The public API is curated: the top level holds what application code writes, each public
submodule has a sorted ``__all__`` of names it really exports, and nothing private leaks."""

from __future__ import annotations

import importlib

import pytest

import jobsaga

TOP_LEVEL = [
    # the app, and jobs
    "App",
    "Worker",
    "Job",
    "JobSpec",
    "JobState",
    "UniqueSpec",
    "CronEntry",
    "JobFilter",
    # what perform returns
    "Snooze",
    "Discard",
    "Cancel",
    "Complete",
    "Error",
    # sagas, and what steps and compensations return
    "Workflow",
    "step",
    "WorkflowWorker",
    "StepContext",
    "Retry",
    "Continue",
    # composing sagas (Reactor's map, switch, group/around, compose, recurse, collect, halt):
    # written in workflow classes as often as @step
    "Map",
    "Switch",
    "Case",
    "Default",
    "Group",
    "compose",
    "recurse",
    "collect",
    "Halt",
    # what an application catches around an insert, an operation or a saga
    "JobsagaError",
    "ArgsError",
    "FilterError",
    "DatabaseError",
    "DatabaseUnavailable",
    "WorkflowError",
]
"""Adding a name to the top level is a decision: make it here, with the reason it belongs."""

PUBLIC_MODULES = [
    "jobsaga.backoff",
    "jobsaga.config",
    "jobsaga.errors",
    "jobsaga.operations",
    "jobsaga.redaction",
    "jobsaga.runtime",
    "jobsaga.telemetry",
    "jobsaga.telemetry_logging",
    "jobsaga.telemetry_otel",
    "jobsaga.testing",
    "jobsaga.web",
    "jobsaga.workflow",
]
"""Submodules the docs send users to; everything else is internal."""

MOVED = {
    "Node": "jobsaga.runtime",
    "NodeThread": "jobsaga.runtime",
    "NodeConfig": "jobsaga.config",
    "Telemetry": "jobsaga.telemetry",
    "logging_handler": "jobsaga.telemetry",
    "attach_default_logger": "jobsaga.telemetry_logging",
    "default_backoff": "jobsaga.backoff",
    "RunRecord": "jobsaga.workflow",
    "RunResult": "jobsaga.workflow",
    "NodeQueue": "jobsaga.operations",
    "QueueInfo": "jobsaga.operations",
    "ConfigError": "jobsaga.errors",
    "InvalidResult": "jobsaga.errors",
    "PerformError": "jobsaga.errors",
    "UndecodableRow": "jobsaga.errors",
}
"""Names that left the top level, and where they are imported from now."""


def test_the_top_level_is_exactly_what_application_code_writes() -> None:
    assert jobsaga.__all__ == sorted(TOP_LEVEL)


def test_all_is_sorted_and_importable() -> None:
    assert jobsaga.__all__ == sorted(jobsaga.__all__)
    for name in jobsaga.__all__:
        assert not name.startswith("_")
        assert getattr(jobsaga, name) is not None


def test_every_public_class_is_exported() -> None:
    public = {
        name
        for name, value in vars(jobsaga).items()
        if isinstance(value, type) and not name.startswith("_")
    }
    assert public <= set(jobsaga.__all__)


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_each_public_submodule_has_a_sorted_importable_all(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert exported == sorted(exported), module_name
    assert len(set(exported)) == len(exported), module_name
    for name in exported:
        assert not name.startswith("_")
        assert getattr(module, name) is not None, f"{module_name}.{name}"


def test_moved_names_live_in_their_submodule_only() -> None:
    for name, module_name in MOVED.items():
        assert name in importlib.import_module(module_name).__all__, (name, module_name)
        assert not hasattr(jobsaga, name), name


def test_every_exception_is_importable_from_errors() -> None:
    from jobsaga import errors

    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, BaseException)
        and value.__module__ == errors.__name__
    }
    assert classes <= set(errors.__all__)
    for name in jobsaga.__all__:
        value = getattr(jobsaga, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert getattr(errors, name) is value


def test_importing_opens_no_connection() -> None:
    app = jobsaga.App("postgresql://nobody@127.0.0.1:1/none")
    assert app._engine is None  # built lazily, on first use
