"""The narrow storage interface every engine implements, and the logic they share.

The runtime and the app talk to an engine only through domain operations (insert, fetch,
ack, stage); SQL stays in the dialect's ``.sql`` files. Extension modules (the workflow run
log, plugins) use :meth:`Engine.transaction` with SQL from their own named-query files.
"""

from __future__ import annotations

import abc
import asyncio
import json
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, TypeVar

from ..errors import ArgsError, UndecodableRow, UniqueInsertContention
from ..job import Job, JobSpec, JobState
from ..serialization import dumps
from . import sql as sqlfiles
from .rows import (
    LATEST,
    clean_ack,
    clean_json,
    diagnose_row,
    later_than_latest,
    needs_cleaning,
    well_shaped,
)

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("jobsaga.engines")

Clock = Callable[[], datetime]
CallerConnection: TypeAlias = "psycopg.Connection[Any]"
"""A caller's own open connection, for a write inside the caller's transaction (``conn=``);
only PostgreSQL's engine takes one."""
AsyncCallerConnection: TypeAlias = "psycopg.AsyncConnection[Any]"
"""A caller's own async connection, for ``ainsert(..., conn=)`` inside the caller's
transaction (PostgreSQL only)."""
Row = dict[str, Any]
WakeCallback = Callable[[Mapping[str, Any]], None]
MigrationListener = Callable[[str, "float | None"], None]
"""Told of each migration ``migrate`` applies: ``(version, None)`` as it starts, then
``(version, seconds)`` once its script ran (all pending migrations commit together, after the
last), so a terminal can say which one a slow migration is."""


def utcnow() -> datetime:
    return datetime.now(UTC)


@contextmanager
def reporting(version: str, listener: MigrationListener | None) -> Iterator[None]:
    """Tell ``listener`` that migration ``version`` starts, and how long it took once run."""
    if listener is None:
        yield
        return
    listener(version, None)
    started = time.perf_counter()
    yield
    listener(version, time.perf_counter() - started)


class Tx(Protocol):
    """A transaction on one connection, rows as dicts."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]: ...


T = TypeVar("T")
Steps: TypeAlias = Generator[Any, Any, T]
"""The steps of a write (see ``Engine.insert_steps``): each ``(sql, params)`` yielded is run
and answered with its rows; a :class:`Wake` is sent as the transaction's wake-up; a dialect's
own steps (PostgreSQL's COPY) go to its own driver. The generator returns the result."""


@dataclass(frozen=True, slots=True)
class Wake:
    """A step of an insert: tell other nodes about new work, when the transaction commits
    (one per insert, whatever the number of jobs)."""

    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ack:
    """The outcome of one attempt, written back in a batch with others."""

    id: int
    attempt: int
    state: JobState
    at: datetime
    scheduled_at: datetime | None = None
    attempt_delta: int = 0
    error: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    inserts: tuple[JobSpec, ...] = ()
    """Jobs to insert in the same transaction, only if this outcome is written (follow-ups)."""


INSERT_UNIQUE_TRIES = 10
STAGE_BATCH = 5000


class Engine(abc.ABC):
    dialect: str = ""
    own_queries: frozenset[str] = frozenset()
    """Named queries only this dialect has, used by the methods it overrides (PostgreSQL's
    one-statement run log write, say); every other name exists in every dialect."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self.clock = clock
        self.queries = sqlfiles.dialect_queries(self.dialect)
        """Every named query of this dialect (jobs, operations, plugins, workflow)."""

    # --- primitives each dialect provides -------------------------------------------------

    @abc.abstractmethod
    def transaction(self, conn: CallerConnection | None = None) -> AbstractContextManager[Tx]:
        """A write transaction; with ``conn`` (PostgreSQL), run inside the caller's transaction."""

    def read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction. The same as :meth:`transaction` on PostgreSQL; on SQLite
        it takes no write lock, so frequent polls do not hold up other processes' writes."""
        return self.transaction()

    def json_path(self, keys: Sequence[str]) -> Any:
        """A path of object keys into a JSON column, as this dialect's SQL takes it
        (PostgreSQL's ``#>>``: the keys as an array)."""
        return list(keys)

    @abc.abstractmethod
    def time_param(self, value: datetime) -> Any:
        """A time as this dialect stores it (a datetime for PostgreSQL, unix seconds for SQLite)."""

    @abc.abstractmethod
    def list_param(self, values: Sequence[Any]) -> Any:
        """A list of scalars as one query parameter (an array on PostgreSQL, JSON text that
        ``json_each`` reads on SQLite)."""

    @abc.abstractmethod
    def time_json(self, value: datetime) -> Any:
        """A time inside a JSON parameter."""

    @abc.abstractmethod
    def time_value(self, value: Any) -> datetime | None:
        """A stored time back as an aware UTC datetime."""

    hears_other_processes = True
    """Whether :meth:`listen` hears other processes' notifications (PostgreSQL's NOTIFY).
    Without it a node learns of other processes' inserts and controls only by polling, so
    it polls more often."""

    json_as_text = False
    """Whether the driver returns JSON columns as text (SQLite) rather than parsed (psycopg)."""

    def stored_json(self, value: Any) -> Any:
        """A stored JSON column as Python data, parsed once: a jsonb string that holds JSON
        text (``'"{}"'``) stays the string it is, on both engines."""
        if self.json_as_text and isinstance(value, (str, bytes)):
            return json.loads(value)
        return value

    @abc.abstractmethod
    def migrate(self, on_migration: MigrationListener | None = None) -> list[str]:
        """Apply pending migrations, idempotently and safely against concurrent migrators."""

    @abc.abstractmethod
    def applied_migrations(self) -> list[str]: ...

    @abc.abstractmethod
    def notify(self, tx: Tx, payload: Mapping[str, Any]) -> None:
        """Tell other nodes about new work; delivered when ``tx`` commits."""

    @abc.abstractmethod
    def listen(self, callback: WakeCallback) -> Callable[[], None]:
        """Call ``callback`` for notifications from other nodes; returns a function to stop."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # --- decoding -------------------------------------------------------------------------

    def row_to_job(self, row: Mapping[str, Any], *, conflict: bool = False) -> Job[Any]:
        """The job a stored row holds; :class:`UndecodableRow` (a DatabaseError naming each
        bad column) when it holds none, whatever the driver error underneath."""
        try:
            return self._decode(row, conflict)
        except Exception as exc:  # a bad row only: find out exactly what is wrong with it
            problems = diagnose_row(row, self.stored_json, self.time_value)
            raise UndecodableRow(
                row.get("id"), problems or [f"{type(exc).__name__}: {exc}"]
            ) from exc

    def _decode(self, row: Mapping[str, Any], conflict: bool) -> Job[Any]:
        tv, jv = self.time_value, self.stored_json
        args, meta, tags, errors = (
            jv(row["args"]),
            jv(row["meta"]),
            jv(row["tags"]),
            jv(row["errors"]),
        )
        # The shapes a job needs, checked inline (this runs for every fetched row); which
        # check failed is found again by diagnose_row, for a bad row only.
        if type(args) is not dict or type(meta) is not dict or type(tags) is not list:
            raise TypeError("a JSON column does not have the shape a job needs")
        if type(errors) is not list or (tags and not well_shaped("tags", tags)):
            raise TypeError("a JSON column does not have the shape a job needs")
        if errors and not well_shaped("errors", errors):
            raise TypeError("a JSON column does not have the shape a job needs")
        inserted_at, scheduled_at = tv(row["inserted_at"]), tv(row["scheduled_at"])
        if inserted_at is None or scheduled_at is None:
            raise TypeError("a job needs inserted_at and scheduled_at")
        return Job(
            id=int(row["id"]),
            state=JobState(row["state"]),
            queue=row["queue"],
            worker=row["worker"],
            args=args,
            meta=meta,
            tags=tuple(tags),
            errors=tuple(errors),
            attempt=int(row["attempt"]),
            max_attempts=int(row["max_attempts"]),
            priority=int(row["priority"]),
            inserted_at=inserted_at,
            scheduled_at=scheduled_at,
            attempted_at=tv(row["attempted_at"]),
            attempted_by=row["attempted_by"],
            completed_at=tv(row["completed_at"]),
            discarded_at=tv(row["discarded_at"]),
            cancelled_at=tv(row["cancelled_at"]),
            unique_key=row["unique_key"],
            conflict=conflict,
        )

    def decode_rows(
        self, rows: Sequence[Mapping[str, Any]]
    ) -> tuple[list[Job[Any]], list[tuple[Row, UndecodableRow]]]:
        """The jobs ``rows`` hold, and apart the rows that hold none (with why): how a
        caller holding a batch (the fetch, a rescue, a listing) keeps one bad row from
        failing the others."""
        jobs: list[Job[Any]] = []
        bad: list[tuple[Row, UndecodableRow]] = []
        for row in rows:
            try:
                jobs.append(self.row_to_job(row))
            except UndecodableRow as exc:
                bad.append((dict(row), exc))
        return jobs, bad

    def discard_undecodable(self, bad: Sequence[tuple[Row, UndecodableRow]], node: str) -> None:
        """Discard claimed jobs whose rows cannot be decoded, each with the reason recorded
        in its errors. Such a row can never run (retrying decodes the same bytes), and left
        ``executing`` it would be rescued and fail the same way for ever. Never raises: the
        caller's other jobs were claimed too and must still run; a job this cannot write
        stays executing until the lifeline rescues it."""
        now = self.clock()
        payload = []
        for row, exc in bad:
            try:
                attempt = int(row["attempt"])
            except (KeyError, TypeError, ValueError):
                attempt = 0
            record: dict[str, Any] = {
                "attempt": attempt,
                "at": now.isoformat(),
                "kind": "undecodable",
                "error": f"{type(exc).__name__}: {exc}",
                "traceback": "",
            }
            if any(problem.startswith("errors:") for problem in exc.problems):
                raw = row.get("errors")  # the column is replaced: its text is kept here
                text = raw if isinstance(raw, str) else json.dumps(raw, default=str)
                record["previous_errors"] = text[:2000]
            payload.append({"id": int(row["id"]), "at": self.time_json(now), "error": record})
            log.error("%s; discarding it (its batch-mates run)", exc)
        try:
            self.execute_one(
                self.queries["discard_undecodable"],
                {"rows": dumps(clean_json(payload)[0]), "node": node},
            )
        except Exception:
            log.exception(
                "could not discard undecodable jobs %s; they stay executing until rescued",
                [item["id"] for item in payload],
            )

    # --- insert ---------------------------------------------------------------------------
    #
    # The logic of an insert (plain rows, unique keys held or skipped, holders past their
    # period, the wake-up) is written once, as steps: a generator that yields each statement
    # it needs run (``(sql, params)``, answered with the rows) and a final :class:`Wake`, and
    # returns the jobs. A driver runs the steps on a transaction: :meth:`insert_in` here, a
    # dialect's own for other statements it yields (PostgreSQL's COPY) or for an async
    # connection, so ``ainsert`` shares this logic without a thread.

    def _spec_row(
        self, index: int, spec: JobSpec, now: datetime, stamp: Any = None
    ) -> dict[str, Any]:
        """A job as ``insert_jobs`` takes it. ``stamp``: ``now`` as :meth:`time_json` gives
        it, when the caller made it once for the batch."""
        at, state = birth(spec, now)
        if stamp is None:
            stamp = self.time_json(now)
        unique_key = spec.unique_key
        lookup_key = None
        if unique_key is not None and f",{state.value}," not in (spec.unique_states or ""):
            # Born outside the protected states: the job does not hold the key, but a job that
            # does (in a protected state) still makes it a duplicate, as in Oban.
            unique_key, lookup_key = None, unique_key
        return {
            "idx": index,
            "state": state.value,
            "queue": spec.queue,
            "worker": spec.worker,
            "args": spec.args,
            "meta": spec.meta,
            "tags": list(spec.tags),
            "max_attempts": spec.max_attempts,
            "priority": spec.priority,
            "inserted_at": stamp,
            "scheduled_at": stamp if at is now else self.time_json(at),
            "unique_key": unique_key,
            "unique_states": spec.unique_states,
            "lookup_key": lookup_key,
        }

    def insert(
        self, specs: Sequence[JobSpec], conn: CallerConnection | None = None
    ) -> list[Job[Any]]:
        """Store jobs in one transaction; unique ones that conflict come back marked ``conflict``."""
        if not specs:
            return []
        with self.transaction(conn) as tx:
            return self.insert_in(tx, specs)

    async def ainsert(
        self, specs: Sequence[JobSpec], conn: AsyncCallerConnection | CallerConnection | None = None
    ) -> list[Job[Any]]:
        """:meth:`insert` for async callers. An engine whose driver is synchronous runs it in
        a thread (SQLite's, which serializes its one connection anyway); PostgreSQL's
        overrides it with an async connection, and takes the caller's async one."""
        return await asyncio.to_thread(self.insert, specs, conn)  # type: ignore[arg-type]

    def insert_in(self, tx: Tx, specs: Sequence[JobSpec]) -> list[Job[Any]]:
        """Insert within an open transaction (and notify other nodes when it commits)."""
        steps = self.insert_steps(specs, self.clock())
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            if isinstance(step, Wake):
                self.notify(tx, step.payload)
                reply = None
            else:
                reply = tx.execute(*step)

    def insert_steps(self, specs: Sequence[JobSpec], now: datetime) -> Steps[list[Job[Any]]]:
        """The steps of inserting ``specs`` at ``now``; returns the jobs in the order given."""
        plain = [i for i, spec in enumerate(specs) if spec.unique_key is None]
        if len(plain) == len(specs):  # the common case: no uniqueness to look after
            created = yield from self._insert_plain(specs, now)
            yield Wake(wake_payload(created))
            return created
        jobs: dict[int, Job[Any]] = {}
        if plain:
            stored = yield from self._insert_plain([specs[i] for i in plain], now)
            jobs.update(zip(plain, stored, strict=True))
        stamp = self.time_json(now)
        rows = [
            self._spec_row(i, spec, now, stamp) for i, spec in enumerate(specs) if i not in jobs
        ]
        unique = [row for row in rows if row["unique_key"] is not None]
        if unique:
            jobs.update((yield from self._insert_unique_batch(unique, specs, now)))
        for row in rows:
            if row["lookup_key"] is not None:
                jobs[row["idx"]] = yield from self._insert_unless_held(row, specs[row["idx"]], now)
        created = [job for job in jobs.values() if not job.conflict]
        if created:
            yield Wake(wake_payload(created))
        return [jobs[i] for i in range(len(specs))]

    def stored_job(self, stored: Row, spec: JobSpec, now: datetime) -> Job[Any]:
        """The job ``spec`` became, from the row ``insert_jobs`` returned for it. Here the
        whole row, read back; a dialect whose ``insert_jobs`` returns only ``id`` and
        ``unique_key`` builds the rest from the spec (PostgreSQL: decoding whole rows was most
        of a bulk insert)."""
        return self.row_to_job(stored)

    def _insert_plain(self, specs: Sequence[JobSpec], now: datetime) -> Steps[list[Job[Any]]]:
        """Jobs without a unique key, all stored: their jobs, in the order of ``specs``."""
        stamp = self.time_json(now)
        rows = [self._spec_row(i, spec, now, stamp) for i, spec in enumerate(specs)]
        stored = yield (self.queries["insert_jobs"], {"rows": dumps(rows)})
        stored.sort(key=lambda r: int(r["id"]))  # ids follow the rows' order
        return [
            self.stored_job(db_row, spec, now) for spec, db_row in zip(specs, stored, strict=True)
        ]

    def _insert_keyed(self, ordered: list[dict[str, Any]]) -> Steps[list[Row]]:
        """Insert rows holding unique keys, in key order; a held key is skipped. Returns the
        rows stored (each with its ``unique_key``): the first row of each free key."""
        stored = yield (self.queries["insert_jobs"], {"rows": dumps(ordered)})
        return stored  # type: ignore[no-any-return]

    def _insert_unique_batch(
        self, rows: list[dict[str, Any]], specs: Sequence[JobSpec], now: datetime
    ) -> Steps[dict[int, Job[Any]]]:
        """Unique jobs in two statements whatever their number: insert them all (the unique
        index skips each key that is held), then look up the holders of the skipped ones. Only
        a holder past its period, or one released meanwhile, takes the row-by-row path."""
        ordered = sorted(rows, key=itemgetter("unique_key", "idx"))
        stored = yield from self._insert_keyed(ordered)
        inserted = {str(r["unique_key"]): r for r in stored}
        jobs: dict[int, Job[Any]] = {}
        skipped: list[dict[str, Any]] = []
        for row in ordered:
            db_row = inserted.pop(row["unique_key"], None)
            if db_row is not None:  # the first row of its key is the one stored
                jobs[row["idx"]] = self.stored_job(db_row, specs[row["idx"]], now)
            else:
                skipped.append(row)
        if not skipped:
            return jobs
        keys = sorted({row["unique_key"] for row in skipped})
        found = yield (self.queries["find_unique_many"], {"keys": dumps(keys)})
        holders = {str(r["unique_key"]): self.row_to_job(r, conflict=True) for r in found}
        for row in skipped:
            spec = specs[row["idx"]]
            holder = holders.get(row["unique_key"])
            if holder is not None and _within_period(holder, spec, now):
                jobs[row["idx"]] = holder
            else:
                jobs[row["idx"]] = yield from self._insert_unique(row, spec, now)
        return jobs

    def _insert_unique(self, row: dict[str, Any], spec: JobSpec, now: datetime) -> Steps[Job[Any]]:
        for _ in range(INSERT_UNIQUE_TRIES):
            stored = yield (self.queries["insert_jobs"], {"rows": dumps([row])})
            if stored:
                return self.stored_job(stored[0], spec, now)
            existing = yield (self.queries["find_unique"], {"unique_key": row["unique_key"]})
            if not existing:
                continue  # released between our insert and lookup: try again
            job = self.row_to_job(existing[0], conflict=True)
            if _within_period(job, spec, now):
                return job
            assert spec.unique_period is not None
            cutoff = now - timedelta(seconds=spec.unique_period)
            yield (
                self.queries["release_unique"],
                {"id": job.id, "unique_key": row["unique_key"], "before": self.time_param(cutoff)},
            )
        raise UniqueInsertContention(
            "unique insert did not settle; the table is under extreme contention"
        )

    def _insert_unless_held(
        self, row: dict[str, Any], spec: JobSpec, now: datetime
    ) -> Steps[Job[Any]]:
        """Insert a unique job that does not hold its key, unless a live holder exists."""
        existing = yield (self.queries["find_unique"], {"unique_key": row["lookup_key"]})
        if existing:
            holder = self.row_to_job(existing[0], conflict=True)
            if _within_period(holder, spec, now):
                return holder
        stored = yield (self.queries["insert_jobs"], {"rows": dumps([row])})
        return self.stored_job(stored[0], spec, now)

    # --- the execution path ---------------------------------------------------------------

    def execute_one(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """One statement as its own transaction: the hot path's fetch and acknowledgement.
        A dialect may run it more cheaply than a full ``transaction()``."""
        with self.transaction() as tx:
            return tx.execute(sql, params)

    hot_path_on_loop = False
    """Whether a node fetches and acknowledges on its event loop (:meth:`afetch`,
    :meth:`aack`) rather than through its database threads: true where the driver has an
    async side (psycopg), which saves two thread hand-offs per round trip."""

    def fetch(self, queue: str, limit: int, node: str) -> list[Job[Any]]:
        """Claim up to ``limit`` available jobs of ``queue`` for ``node``, in fetch order."""
        if limit <= 0:
            return []
        rows = self.execute_one(self.queries["fetch_jobs"], self.fetch_params(queue, limit, node))
        jobs, bad = self.decode_rows(rows)  # the claim has committed: none may be stranded
        if bad:
            self.discard_undecodable(bad, node)
        return in_fetch_order(jobs)

    async def afetch(self, queue: str, limit: int, node: str) -> list[Job[Any]]:
        """:meth:`fetch` on the running loop, for engines with :attr:`hot_path_on_loop`."""
        raise NotImplementedError(f"{type(self).__name__} fetches through threads")

    async def aack(self, acks: Sequence[Ack]) -> set[int]:
        """:meth:`ack` on the running loop, for engines with :attr:`hot_path_on_loop`."""
        raise NotImplementedError(f"{type(self).__name__} acknowledges through threads")

    def fetch_params(self, queue: str, limit: int, node: str) -> dict[str, Any]:
        return {"queue": queue, "limit": limit, "node": node, "now": self.time_param(self.clock())}

    def ack_params(self, acks: Sequence[Ack]) -> dict[str, Any]:
        """The ``ack_jobs`` parameters for ``acks`` (cleaned: see :meth:`ack`)."""
        payload = [
            {
                "id": a.id,
                "attempt": a.attempt,
                "state": a.state.value,
                "at": self.time_json(a.at),
                "scheduled_at": self.time_json(a.scheduled_at) if a.scheduled_at else None,
                "attempt_delta": a.attempt_delta,
                "error": a.error,
                "meta": a.meta,
            }
            for a in acks
        ]
        return {"acks": dumps(payload)}

    def ack(self, acks: Sequence[Ack], conn: CallerConnection | None = None) -> set[int]:
        """Write a batch of outcomes; returns the ids that were still this attempt's to write.

        ``conn``: the caller's open transaction (PostgreSQL), for a job claimed inside it."""
        if not acks:
            return set()
        acks = writable(acks)
        params = self.ack_params(acks)
        if conn is None and not any(a.inserts for a in acks):
            rows = self.execute_one(self.queries["ack_jobs"], params)
            return {int(r["id"]) for r in rows}
        with self.transaction(conn) as tx:
            rows = tx.execute(self.queries["ack_jobs"], params)
            written = {int(r["id"]) for r in rows}
            follow_ups = [spec for a in acks if a.inserts and a.id in written for spec in a.inserts]
            if follow_ups:
                self.insert_in(tx, follow_ups)
        return written

    def claim(
        self, job_id: int, node: str, attempt: int, conn: CallerConnection | None = None
    ) -> Job[Any] | None:
        """Mark one given waiting job (available, scheduled or retryable) executing as its
        ``attempt``-th try, whatever its queue or schedule: how the testing toolkit runs a job
        at once. None when it is not waiting. The node's path is ``fetch``."""
        params = {
            "id": job_id,
            "node": node,
            "attempt": attempt,
            "now": self.time_param(self.clock()),
        }
        with self.transaction(conn) as tx:
            rows = tx.execute(self.queries["claim_job"], params)
        if not rows:
            return None
        try:
            return self.row_to_job(rows[0])
        except UndecodableRow as exc:
            if conn is None:  # claimed for good: discard it, as a fetch would
                self.discard_undecodable([(rows[0], exc)], node)
            raise

    def make_due(self, queue: str, except_ids: Sequence[int] = ()) -> None:
        """Bring ``queue``'s scheduled and retryable jobs (but ``except_ids``) to now; the next
        ``stage`` makes them available. Used by the testing toolkit's ``drain_queue``."""
        params = {
            "queue": queue,
            "now": self.time_param(self.clock()),
            "except_ids": dumps(list(except_ids)),
        }
        with self.transaction() as tx:
            tx.execute(self.queries["make_due"], params)

    def stage(self) -> set[str]:
        """Make due scheduled and retryable jobs available; returns the queues that got work."""
        with self.transaction() as tx:
            rows = tx.execute(
                self.queries["stage_jobs"],
                {"now": self.time_param(self.clock()), "limit": STAGE_BATCH},
            )
            queues = {str(r["queue"]) for r in rows}
            if queues:
                self.notify(tx, {"queues": sorted(queues)})
        return queues

    # Polled reads go through read(): on SQLite it takes no write lock, so a stager or an
    # operator's poll never queues behind (or holds up) another process's writes.

    def next_due(self) -> datetime | None:
        with self.read() as tx:
            rows = tx.execute(self.queries["next_due"])
        return self.time_value(rows[0]["at"]) if rows else None

    def get_job(self, job_id: int, conn: CallerConnection | None = None) -> Job[Any] | None:
        with self.read() if conn is None else self.transaction(conn) as tx:
            rows = tx.execute(self.queries["get_job"], {"id": job_id})
        return self.row_to_job(rows[0]) if rows else None

    def queue_counts(self) -> dict[str, dict[str, int]]:
        with self.read() as tx:
            rows = tx.execute(self.queries["queue_counts"])
        counts: dict[str, dict[str, int]] = {}
        for row in rows:
            counts.setdefault(row["queue"], {})[row["state"]] = int(row["n"])
        return counts


def in_fetch_order(jobs: list[Job[Any]]) -> list[Job[Any]]:
    """A fetch's jobs in the order the queue serves them (``RETURNING`` has no order)."""
    jobs.sort(key=lambda j: (j.priority, j.scheduled_at, j.id))
    return jobs


def writable(acks: Sequence[Ack]) -> list[Ack]:
    """``acks`` made writable before the first try (NULs stripped, dates capped, reasons
    recorded): a refused outcome would otherwise cost the acker a split and a retry."""
    return [clean_ack(a) if needs_cleaning(a) else a for a in acks]


def birth(spec: JobSpec, now: datetime) -> tuple[datetime, JobState]:
    """When a job inserted ``now`` becomes due, and so the state it is stored in.

    A time past :data:`~jobsaga.engines.rows.LATEST` is refused (ArgsError, before anything
    is written): it could not be read back, and ``now + 1e12 s`` overflows."""
    if spec.scheduled_at is not None:
        at = spec.scheduled_at
        if at > LATEST:
            raise ArgsError(
                f"{spec.worker}: scheduled_at {at.isoformat()} is past the latest time jobsaga "
                f"stores ({LATEST.date().isoformat()})"
            )
    elif spec.schedule_in:
        if later_than_latest(spec.schedule_in, now):
            raise ArgsError(
                f"{spec.worker}: schedule_in={spec.schedule_in!r} s is past the latest time "
                f"jobsaga stores ({LATEST.date().isoformat()})"
            )
        at = now + timedelta(seconds=spec.schedule_in)
    else:
        return now, JobState.AVAILABLE  # most jobs: no comparison of aware datetimes
    return at, JobState.SCHEDULED if at > now else JobState.AVAILABLE


def inserted_job(
    spec: JobSpec, job_id: int, now: datetime, unique_key: str | None = None
) -> Job[Any]:
    """The job an insert of ``spec`` at ``now`` stored, built without reading it back: only
    its id (and the unique key it holds, if any) comes from the database (decoding whole
    rows was most of a bulk insert)."""
    at, state = birth(spec, now)
    return Job(
        id=job_id,
        state=state,
        queue=spec.queue,
        worker=spec.worker,
        args=spec.args,
        meta=spec.meta,
        tags=spec.tags,
        errors=(),
        attempt=0,
        max_attempts=spec.max_attempts,
        priority=spec.priority,
        inserted_at=now,
        scheduled_at=at,
        unique_key=unique_key,
    )


def _within_period(holder: Job[Any], spec: JobSpec, now: datetime) -> bool:
    """Whether an existing job still makes ``spec`` a duplicate (inserted within the period)."""
    if spec.unique_period is None:
        return True
    return holder.inserted_at >= now - timedelta(seconds=spec.unique_period)


def wake_payload(jobs: Sequence[Job[Any]]) -> dict[str, Any]:
    """What other nodes need to hear after an insert: which queues have work, and whether
    something was scheduled (so stagers recompute their next wake-up)."""
    return {
        "queues": sorted({j.queue for j in jobs if j.state is JobState.AVAILABLE}),
        "scheduled": any(j.state is JobState.SCHEDULED for j in jobs),
    }


def iter_statements(script: str) -> Iterator[str]:
    """Split a migration script for drivers that run one statement per call (SQLite)."""
    import sqlite3

    buffer: list[str] = []
    for line in script.splitlines(keepends=True):
        buffer.append(line)
        text = "".join(buffer)
        if sqlite3.complete_statement(text):
            if text.strip():
                yield text.strip()
            buffer = []
    rest = "".join(buffer).strip()
    if rest and not all(ln.strip().startswith("--") or not ln.strip() for ln in rest.splitlines()):
        yield rest
