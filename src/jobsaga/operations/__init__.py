"""Operating jobsaga: job operations (list, count, cancel, retry, delete) and queue control
(pause, resume, scale, list), over an :class:`~jobsaga.core.AppCore`. ``App`` exposes them as
its methods (docs/operations.md); a node's side of queue control is ``runtime/control.py``.
"""

from .filters import JobCriteria, JobFilter
from .queues import NodeQueue, QueueInfo

__all__ = ["JobCriteria", "JobFilter", "NodeQueue", "QueueInfo"]
