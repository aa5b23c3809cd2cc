"""jobsaga's testing toolkit: perform, assert on and drain jobs in a test; the pytest plugin.

Kept out of the top-level package: production code never needs it.
"""

from __future__ import annotations

from .assertions import all_enqueued, assert_enqueued, refute_enqueued
from .drain import drain_queue
from .modes import testing_mode
from .perform import aperform_job, build_job, perform_job
from .workflows import arun_workflow, assert_steps, assert_undo_order, run_workflow

__all__ = [
    "all_enqueued",
    "aperform_job",
    "arun_workflow",
    "assert_enqueued",
    "assert_steps",
    "assert_undo_order",
    "build_job",
    "drain_queue",
    "perform_job",
    "refute_enqueued",
    "run_workflow",
    "testing_mode",
]
