"""Operating jobsaga at runtime: job operations, queue control, and a node's side of both.

``App`` gets its operations methods from :class:`~jobsaga.operations.api.AppOperations`;
see docs/operations.md.
"""

from .filters import JobCriteria, JobFilter
from .queues import NodeQueue, QueueInfo

__all__ = ["JobCriteria", "JobFilter", "NodeQueue", "QueueInfo"]
