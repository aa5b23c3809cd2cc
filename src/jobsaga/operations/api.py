"""The operations part of :class:`~jobsaga.App`: job operations and queue control.

A mixin so the App stays a short file; every method builds a small operations object over
the app's engine and delegates to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Unpack, cast

from ..errors import FilterError
from ..job import Job
from .filters import JobCriteria, JobFilter
from .jobs import DEFAULT_CANCEL_REASON, JobOperations
from .queues import QueueControl, QueueInfo

if TYPE_CHECKING:
    from ..app import App


def _mutation_filter(operation: str, flt: JobFilter | None, criteria: JobCriteria) -> JobFilter:
    found = JobFilter.build(flt, criteria)
    if found.is_empty:
        raise FilterError(
            f"{operation} needs at least one criterion (ids, state, queue, worker, tags, "
            "since, until); to act on every job, name every state"
        )
    return found


class AppOperations:
    """Job operations (list, count, cancel, retry, delete) and queue control (pause, resume,
    scale, list); see docs/operations.md."""

    def _app(self) -> App:
        return cast("App", self)

    def signal_local_nodes(self, payload: Mapping[str, Any]) -> None:
        """Deliver a control payload to this process's nodes at once (others hear it by
        NOTIFY on PostgreSQL or by polling on SQLite). A queue control is in force on this
        process's nodes when this returns: a pause followed by an insert must not let the
        insert's wake-up fetch first."""
        app = self._app()
        for listener in list(app._listeners):
            listener(payload)
        if payload.get("signal") == "queues":
            for applier in list(app._control_appliers):
                applier()

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
        return JobOperations(self._app()).find(
            JobFilter.build(flt, criteria), limit=limit, offset=offset, newest_first=newest_first
        )

    def count_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> dict[str, int]:
        """How many jobs match, per state."""
        return JobOperations(self._app()).count(JobFilter.build(flt, criteria))

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
        return JobOperations(self._app()).cancel(found, reason=reason)

    def retry_job(self, job_id: int) -> bool:
        """Give a retryable, completed, discarded or cancelled job another attempt now."""
        return bool(self.retry_jobs(ids=[job_id]))

    def retry_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> list[int]:
        """Make matching non-running, non-pending jobs available now (max_attempts is raised
        by one when their attempts are used up); returns the ids."""
        found = _mutation_filter("retry_jobs", flt, criteria)
        return JobOperations(self._app()).retry(found)

    def delete_job(self, job_id: int) -> bool:
        """Delete one job unless it is executing (cancel it first)."""
        return bool(self.delete_jobs(ids=[job_id]))

    def delete_jobs(
        self, flt: JobFilter | None = None, /, **criteria: Unpack[JobCriteria]
    ) -> list[int]:
        """Delete matching jobs that are not executing; returns the ids."""
        found = _mutation_filter("delete_jobs", flt, criteria)
        return JobOperations(self._app()).delete(found)

    # --- queues -------------------------------------------------------------------------------

    def pause_queue(self, queue: str, *, node: str | None = None) -> None:
        """Stop fetching from ``queue`` on every node (or on ``node``); running jobs finish."""
        QueueControl(self._app()).set_paused(queue, True, node)

    def resume_queue(self, queue: str, *, node: str | None = None) -> None:
        """Fetch from ``queue`` again on every node (or on ``node``)."""
        QueueControl(self._app()).set_paused(queue, False, node)

    def scale_queue(self, queue: str, limit: int | None, *, node: str | None = None) -> None:
        """Set the concurrency limit of ``queue`` on every node (or ``node``); None goes back
        to each node's configured limit."""
        QueueControl(self._app()).set_concurrency(queue, limit, node)

    def list_queues(self) -> list[QueueInfo]:
        """Every queue with jobs, live nodes or controls: counts, controls, per-node limits
        and running jobs."""
        return QueueControl(self._app()).overview()
