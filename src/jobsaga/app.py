"""The App: the facade a user builds over one database.

An :class:`App` is the :class:`~jobsaga.core.AppCore` every layer shares (workers,
workflows, inserting jobs) plus what a user calls on it: job operations and queue control
(docs/operations.md), and the nodes that run its queues. It sits above the runtime and the
operations, which take an ``AppCore``, so nothing below imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Unpack

from .core import AppCore
from .errors import FilterError
from .job import Job
from .operations.filters import JobCriteria, JobFilter
from .operations.jobs import DEFAULT_CANCEL_REASON, JobOperations
from .operations.queues import QueueControl, QueueInfo
from .runtime.node import Node, NodeOptions

__all__ = ["App"]


class App(AppCore):
    """Entry point of jobsaga: ``App()`` is an embedded SQLite file; ``App("postgresql://...")``.

    Register workers and workflows, insert jobs, list and act on them, control queues, and
    build nodes that run them.
    """

    def node(self, queues: Mapping[str, int] | None = None, **options: Unpack[NodeOptions]) -> Node:
        """Build a worker node for this app (start it with ``run()``, ``start()`` or
        ``start_in_thread()``). No ``queues`` means ``{"default": 10}``; an empty mapping is an
        error, not a silent default."""
        return Node(self, queues={"default": 10} if queues is None else queues, **options)

    # --- jobs ---------------------------------------------------------------------------------

    def list_jobs(
        self,
        flt: JobFilter | None = None,
        /,
        *,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
        **criteria: Unpack[JobCriteria],
    ) -> list[Job[Any]]:
        """Jobs matching a filter (``state=``, ``queue=``, ``worker=``, ``tags=``,
        ``since=``/``until=``...), newest first, at most ``limit`` (>= 1; None: every match,
        what ``jobsaga jobs list --limit 0`` asks for)."""
        return JobOperations(self).find(
            JobFilter.build(flt, criteria), limit=limit, offset=offset, newest_first=newest_first
        )

    def count_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> dict[str, int]:
        """How many jobs match, per state."""
        return JobOperations(self).count(JobFilter.build(flt, criteria))

    def cancel_job(self, job_id: int, *, reason: str = DEFAULT_CANCEL_REASON) -> bool:
        """Cancel one job; an executing one is stopped on its node. False if it was final."""
        return bool(self.cancel_jobs(ids=[job_id], reason=reason))

    def cancel_jobs(
        self,
        flt: JobFilter | None = None,
        /,
        *,
        reason: str = DEFAULT_CANCEL_REASON,
        **criteria: Unpack[JobCriteria],
    ) -> list[int]:
        """Cancel every matching job that is not final; returns the ids cancelled."""
        found = _mutation_filter("cancel_jobs", flt, criteria)
        return JobOperations(self).cancel(found, reason=reason)

    def retry_job(self, job_id: int) -> bool:
        """Give a retryable, completed, discarded or cancelled job another attempt now."""
        return bool(self.retry_jobs(ids=[job_id]))

    def retry_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> list[int]:
        """Make matching non-running, non-pending jobs available now (max_attempts is raised
        by one when their attempts are used up); returns the ids."""
        found = _mutation_filter("retry_jobs", flt, criteria)
        return JobOperations(self).retry(found)

    def delete_job(self, job_id: int) -> bool:
        """Delete one job unless it is executing (cancel it first)."""
        return bool(self.delete_jobs(ids=[job_id]))

    def delete_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> list[int]:
        """Delete matching jobs that are not executing; returns the ids."""
        found = _mutation_filter("delete_jobs", flt, criteria)
        return JobOperations(self).delete(found)

    # --- queues -------------------------------------------------------------------------------

    def pause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Stop fetching from ``queue`` on every node (or on ``node``); running jobs finish."""
        QueueControl(self).set_paused(queue, True, node)

    def resume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Fetch from ``queue`` again on every node (or on ``node``)."""
        QueueControl(self).set_paused(queue, False, node)

    def scale_queue(self, queue: str, limit: int | None, *, node: str | None = None) -> None:
        """Set the concurrency limit of ``queue`` on every node (or ``node``); None goes back
        to each node's configured limit."""
        QueueControl(self).set_concurrency(queue, limit, node)

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with jobs, live nodes or controls: counts, controls, per-node limits
        and running jobs."""
        return QueueControl(self).overview()


def _mutation_filter(operation: str, flt: JobFilter | None, criteria: JobCriteria) -> JobFilter:
    found = JobFilter.build(flt, criteria)
    if found.is_empty:
        raise FilterError(
            f"{operation} needs at least one criterion (ids, state, queue, worker, tags, "
            "priority, args, meta, since, until; empty tags, args or meta select every job); "
            "to act on every job, name every state"
        )
    return found
