"""Context variables shared by layers that must not import each other.

``current_step`` is set while a workflow step runs, so that ``App.insert`` can refuse to
enqueue from inside a step (the workflow layer sets it; the job layer reads it). A thread
that the step starts itself (``threading.Thread``, its own executor,
``loop.run_in_executor``) does not inherit context variables, so an insert from there is not
refused: a known limit, documented in docs/workflows.md ("The rule: steps never enqueue"),
left open on purpose rather than patching ``threading``.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

current_step: ContextVar[Any | None] = ContextVar("jobsaga_current_step", default=None)

# Set by the testing toolkit to run or capture inserts instead of storing them.
insert_interceptor: ContextVar[Any | None] = ContextVar("jobsaga_insert_interceptor", default=None)

# The App whose node is running the current job; set by the runtime executor around each
# perform (and by the testing toolkit), so a WorkflowWorker can reach its app's run log.
current_app: ContextVar[Any | None] = ContextVar("jobsaga_current_app", default=None)

# Set by the testing toolkit's perform_job when it runs without a database: a
# WorkflowWorker then keeps its run log in memory instead of writing it.
run_log_in_memory: ContextVar[bool] = ContextVar("jobsaga_run_log_in_memory", default=False)

# The node's bounded pool for sync user code; set by the runtime executor around each
# perform, so a saga's sync steps share the node's thread limit instead of making a pool of
# their own. None outside a node (tests): the workflow executor then uses a pool per run.
job_threads: ContextVar[Any | None] = ContextVar("jobsaga_job_threads", default=None)
