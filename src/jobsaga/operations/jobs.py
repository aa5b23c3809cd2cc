"""Job operations: list, count, cancel, retry and delete, for one job or all a filter matches.

Each change is one write transaction that first reads (and on PostgreSQL locks) the jobs it
will change, so the answer says exactly which jobs changed. Given a ``batch_size`` (the CLI's
bulk commands), a change runs as one such transaction per batch of at most that many jobs, in
id order: each batch is committed before the next is read, so progress can be reported, and
a process that dies or is stopped between batches leaves the batches before done (reported
through ``on_batch`` as each commits) and the rest untouched; running the change again picks
up the rest, since a changed job no longer matches the eligible states.

Pruning by hand (``jobsaga jobs prune``) applies the pruner's own rule and statement
(``plugins/pruner.py``): finished jobs older than a time, deleted a batch at a time, their saga
runs with them.

Cancelling an executing job marks it cancelled in the database first: the ack path only
writes a job that is still executing the same attempt, so whatever its node reports later is
ignored. Then the node is told, over NOTIFY (PostgreSQL) or directly (nodes of this process),
and stops the attempt; nodes in other processes on SQLite see it within their control
interval.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ..engines.base import Tx
from ..errors import FilterError
from ..job import Job
from ..plugins.pruner import prune_batch
from ..serialization import printable, short_repr
from .filters import MAX_ID, JobFilter

if TYPE_CHECKING:
    from ..core import AppCore

log = logging.getLogger("jobsaga.operations.jobs")
T = TypeVar("T")

CANCELLABLE = ("available", "scheduled", "retryable", "executing")
RETRYABLE_FROM = ("retryable", "completed", "discarded", "cancelled")
DELETABLE = ("available", "scheduled", "retryable", "completed", "discarded", "cancelled")
PRUNABLE = ("completed", "discarded", "cancelled")
BulkKind = Literal["cancel", "retry", "delete", "prune"]
ELIGIBLE: Mapping[BulkKind, tuple[str, ...]] = {
    "cancel": CANCELLABLE,
    "retry": RETRYABLE_FROM,
    "delete": DELETABLE,
    "prune": PRUNABLE,
}
"""The states each bulk change applies to: a matching job in another state is left as it is."""
DEFAULT_CANCEL_REASON = "cancelled by an operator"
SIGNAL_IDS_MAX = 200
"""More executing ids than this and the signal carries none: each node checks its own jobs
against the database instead (a NOTIFY payload must stay under 8000 bytes)."""
TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure


@dataclass(frozen=True, slots=True)
class Preview:
    """What a bulk change would do, read before it runs: the matching jobs per state, and how
    many of them the change applies to (a cancel does not apply to a completed job), so a
    prompt asks about what can change and "nothing to do" needs no prompt at all."""

    action: BulkKind
    matched: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.matched.values())

    @property
    def changeable(self) -> int:
        return sum(n for state, n in self.matched.items() if state in ELIGIBLE[self.action])

    @property
    def unchangeable(self) -> dict[str, int]:
        """The matching jobs the change leaves alone, per state."""
        eligible = ELIGIBLE[self.action]
        return {s: n for s, n in sorted(self.matched.items()) if s not in eligible and n}


@dataclass(frozen=True, slots=True)
class Batch:
    """Where a batched change is: the last id done, and how many to take next."""

    after: int
    size: int


@dataclass(frozen=True, slots=True)
class Target:
    id: int
    state: str
    queue: str
    attempted_by: str | None


def _is_count(value: Any, lowest: int) -> bool:
    """An int (not a bool) that a 64-bit LIMIT/OFFSET parameter can take."""
    return isinstance(value, int) and not isinstance(value, bool) and lowest <= value <= MAX_ID


def cancel_signal(executing: Sequence[int]) -> dict[str, Any]:
    ids = list(executing) if len(executing) <= SIGNAL_IDS_MAX else None
    return {"signal": "cancel", "job_ids": ids}


def with_retries(fn: Callable[[], T], tries: int = 5) -> T:
    """Run a transaction again when PostgreSQL picked it as a deadlock victim (it can meet a
    concurrent batched acknowledgement); anything else propagates."""
    for attempt in range(tries):
        try:
            return fn()
        except Exception as exc:
            driver = exc.__cause__ or exc  # engines raise jobsaga errors, the driver's chained
            if getattr(driver, "sqlstate", None) not in TRANSIENT_SQLSTATES or attempt == tries - 1:
                raise
            time.sleep(0.01 * 2**attempt)
    raise AssertionError("unreachable")


class JobOperations:
    def __init__(self, app: AppCore) -> None:
        self.app = app
        self.engine = app.engine
        self.sql = self.engine.queries

    def _params(self, flt: JobFilter, **extra: Any) -> dict[str, Any]:
        return {**flt.params(self.engine), **extra}

    def _ids(self, ids: Sequence[int]) -> Any:
        return self.engine.list_param(ids)

    def _states(self, states: Sequence[str]) -> Any:
        return self.engine.list_param(states)

    # --- reading ----------------------------------------------------------------------------

    def find(
        self, flt: JobFilter, *, limit: int | None, offset: int = 0, newest_first: bool = True
    ) -> list[Job[Any]]:
        if limit is not None and not _is_count(limit, 1):
            # 0 is refused rather than read as "nothing" (or as "all", as the CLI's --limit 0)
            raise FilterError(
                f"limit must be >= 1, or None for every match; got {short_repr(limit)} "
                f"(an integer, at most {MAX_ID})"
            )
        if not _is_count(offset, 0):
            raise FilterError(
                f"offset must be >= 0, got {short_repr(offset)} (an integer, at most {MAX_ID})"
            )
        name = "list_jobs_newest" if newest_first else "list_jobs_oldest"
        with self.engine.read() as tx:
            rows = tx.execute(self.sql[name], self._params(flt, limit=limit, offset=offset))
        jobs, bad = self.engine.decode_rows(rows)
        for row, exc in bad:  # one corrupt row must not hide every other job from a listing
            log.warning("job %s left out of the listing: %s", row.get("id"), exc)
        return jobs

    def count(self, flt: JobFilter) -> dict[str, int]:
        with self.engine.read() as tx:
            rows = tx.execute(self.sql["count_jobs"], self._params(flt))
        return {str(row["state"]): int(row["n"]) for row in rows}

    def preview(self, action: BulkKind, flt: JobFilter) -> Preview:
        """How many jobs ``action`` would change, of those matching."""
        return Preview(action, self.count(flt))

    def preview_prune(self, before: datetime) -> Preview:
        """The jobs :meth:`prune` would delete, per state: the pruner's rule, counted."""
        params = {"before": self.engine.time_param(before)}
        with self.engine.read() as tx:
            rows = tx.execute(self.sql["count_prunable"], params)
        return Preview("prune", {str(row["state"]): int(row["n"]) for row in rows})

    def states_of(self, ids: Sequence[int]) -> dict[int, str]:
        """The state of each id that exists (an id missing from the answer has no job)."""
        if not ids:
            return {}
        with self.engine.read() as tx:
            rows = tx.execute(self.sql["states_of_ids"], {"ids": self._ids(ids)})
        return {int(row["id"]): str(row["state"]) for row in rows}

    # --- changing ---------------------------------------------------------------------------

    def _targets(
        self, tx: Tx, flt: JobFilter, eligible: Sequence[str], batch: Batch | None
    ) -> list[Target]:
        params = self._params(flt, eligible=self._states(eligible))
        if batch is None:
            rows = tx.execute(self.sql["select_targets"], params)
        else:
            params.update(after=batch.after, batch=batch.size)
            rows = tx.execute(self.sql["select_target_batch"], params)
        return [
            Target(int(r["id"]), str(r["state"]), str(r["queue"]), r["attempted_by"]) for r in rows
        ]

    def _in_batches(
        self,
        flt: JobFilter,
        eligible: Sequence[str],
        write: Callable[[Tx, list[Target]], None],
        committed: Callable[[list[Target]], None],
        batch_size: int | None,
        on_batch: Callable[[list[int]], None] | None,
    ) -> list[int]:
        """Find and ``write`` the targets, all in one transaction, or ``batch_size`` at a
        time, each batch its own transaction; ``committed`` (signals, telemetry) and then
        ``on_batch`` run after each commit, so what they report is done."""
        if batch_size is not None and not _is_count(batch_size, 1):
            raise FilterError(f"batch_size must be >= 1 or None, got {short_repr(batch_size)}")
        done: list[int] = []
        batch = None if batch_size is None else Batch(0, batch_size)
        while True:

            def run(batch: Batch | None = batch) -> list[Target]:
                with self.engine.transaction() as tx:
                    targets = self._targets(tx, flt, eligible, batch)
                    if targets:
                        write(tx, targets)
                    return targets

            targets = with_retries(run)
            if targets or batch is None or batch.after == 0:
                committed(targets)  # one telemetry event even when nothing changed
            ids = [t.id for t in targets]
            done += ids
            if ids and on_batch is not None:
                on_batch(ids)
            if batch is None or len(targets) < batch.size:
                return done
            batch = Batch(targets[-1].id, batch.size)

    def cancel(
        self,
        flt: JobFilter,
        *,
        reason: str = DEFAULT_CANCEL_REASON,
        batch_size: int | None = None,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> list[int]:
        """Cancel every matching job that is not final; returns the ids cancelled.

        The reason is free text for people: a NUL or a lone surrogate in it (jsonb refuses
        both) is written escaped rather than failing the cancel."""
        now = self.app.clock()
        reason = printable(str(reason))

        def write(tx: Tx, targets: list[Target]) -> None:
            tx.execute(
                self.sql["cancel_ids"],
                {
                    "ids": self._ids([t.id for t in targets]),
                    "now": self.engine.time_param(now),
                    "at_text": now.isoformat(),
                    "error": f"cancelled: {reason}",
                },
            )
            executing = [t.id for t in targets if t.state == "executing"]
            if executing:
                self.engine.notify(tx, cancel_signal(executing))

        def committed(targets: list[Target]) -> None:
            executing = [t.id for t in targets if t.state == "executing"]
            if executing:
                self.app.signal_local_nodes(cancel_signal(executing))
            ids = [t.id for t in targets]
            self._emit("job.cancel", ids, {"reason": reason, "executing": executing})

        return self._in_batches(flt, CANCELLABLE, write, committed, batch_size, on_batch)

    def retry(
        self,
        flt: JobFilter,
        *,
        batch_size: int | None = None,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> list[int]:
        """Make matching retryable/completed/discarded/cancelled jobs available now, with one
        more attempt allowed when their attempts are used up; returns the ids."""
        now = self.app.clock()

        def write(tx: Tx, targets: list[Target]) -> None:
            tx.execute(
                self.sql["retry_ids"],
                {"ids": self._ids([t.id for t in targets]), "now": self.engine.time_param(now)},
            )
            self.engine.notify(tx, wake(targets))

        def committed(targets: list[Target]) -> None:
            if targets:
                self.app.signal_local_nodes(wake(targets))
            self._emit("job.retry", [t.id for t in targets], {})

        return self._in_batches(flt, RETRYABLE_FROM, write, committed, batch_size, on_batch)

    def delete(
        self,
        flt: JobFilter,
        *,
        batch_size: int | None = None,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> list[int]:
        """Delete matching jobs that are not executing (cancel those first); returns the ids."""

        def write(tx: Tx, targets: list[Target]) -> None:
            tx.execute(self.sql["delete_ids"], {"ids": self._ids([t.id for t in targets])})

        def committed(targets: list[Target]) -> None:
            self._emit("job.delete", [t.id for t in targets], {})

        return self._in_batches(flt, DELETABLE, write, committed, batch_size, on_batch)

    def prune(
        self,
        before: datetime,
        *,
        batch_size: int,
        on_batch: Callable[[list[int]], None] | None = None,
    ) -> list[int]:
        """Delete every finished job that reached its state before ``before`` (the pruner's
        rule and statement, with its saga runs), ``batch_size`` at a time, each batch its own
        transaction reported to ``on_batch`` once committed; returns the ids deleted. On
        PostgreSQL a row another prune holds is skipped (``SKIP LOCKED``): that prune takes it."""
        if not _is_count(batch_size, 1):
            raise FilterError(f"batch_size must be >= 1, got {short_repr(batch_size)}")
        done: list[int] = []
        while True:
            ids = with_retries(lambda: prune_batch(self.app, before, batch_size))
            done += ids
            if ids and on_batch is not None:
                on_batch(ids)
            if len(ids) < batch_size:
                return done

    def _emit(self, event: str, ids: list[int], extra: Mapping[str, Any]) -> None:
        telemetry = self.app.telemetry
        if telemetry.active:
            telemetry.emit(event, {"count": len(ids)}, {"ids": ids, **extra})


def wake(targets: Sequence[Target]) -> dict[str, Any]:
    return {"queues": sorted({t.queue for t in targets})}
