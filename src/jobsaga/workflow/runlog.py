"""The run log: every run, every step transition and every event, persisted in order.

Writes are group-committed: the executor records transitions without waiting, and the
event loop's writer (:mod:`.writer`) writes, one round at a time, everything every run on the
loop recorded so far (the latest row of each step that changed, plus all new events) in a
single transaction. A run therefore costs about one round trip per burst of activity rather
than several per step, and runs side by side share their rounds. What must be durable first
is waited for: a step starts only once the outcomes of the steps it depends on are written
(:meth:`RunLog.wait_ready`), an undo only once the rollback's cause is, and the run reports
success or failure only after everything is flushed. So a transition not yet written when a
node dies is a step whose outcome the next attempt does not know, and it runs that step
again, but never a step that used it.

A write that fails is retried (with everything recorded since) while no user code starts;
when the database refuses the data, or the writes still fail after ``write_timeout``, the
log gives up (:class:`RunLogUnwritable`) and the executor stops the run for the next attempt
to resume (docs/workflows.md, "When the run log cannot be written").

``persist=False`` uses the base :class:`RunLog`, which keeps the same records in memory
(no crash recovery, no ``jobsaga runs``), for callers that measure or do not need the log.
What is read back (:class:`RunRecord` and friends) lives in :mod:`.records`; how values
become storable JSON, in :mod:`.encoding`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import DatabaseUnavailable, DataRejected, MigrationError, RunLogUnwritable
from ..serialization import dumps
from .encoding import json_text, jsonable, storable
from .records import (
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    get_run,
    read_run,
)
from .writer import LogWriter, writer_for

if TYPE_CHECKING:
    from ..core import AppCore
    from ..engines import Engine


log = logging.getLogger("jobsaga.workflow")

LOG_WRITE_TIMEOUT = 30.0
"""Seconds the run log keeps retrying a write that fails (the database restarting, a lost
connection) before it stops the run; no new step starts meanwhile."""
RETRY_FIRST = 0.05
RETRY_MAX = 1.0
"""The backoff between retries of a failing write: 50 ms doubling to 1 s."""


# --- writing ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParentLink:
    """What makes a run a child run: the parent run, and the parent's step that runs it
    (compose: another workflow run as one step), with its iteration (recurse: a workflow run
    repeatedly, one child run per iteration). A log opened with one finds the child run the
    link names, in whatever status, and takes it up (:class:`Resumed`), or makes it."""

    run_id: int | None
    """The parent run's id; None for a parent whose log is kept in memory (then the child
    cannot be found again: each open makes a new one)."""
    step: str
    iteration: int = 0
    """0 for compose; 0, 1, 2... for the iterations of recurse."""


@dataclass(slots=True)
class Resumed:
    """The run found at start: the job's unfinished one, which this attempt continues, or its
    succeeded one, which is final (the attempt completes the job without running a step);
    for a child log, the child run its link names, in whatever status."""

    run_id: int
    status: str
    """As found, before the takeover: ``running``, ``rolling_back`` or ``halted`` (resumed;
    a halted run's row is ``running`` again once taken up), or ``succeeded``: final, nothing
    runs. A child run may also be found ended in failure (``failed``, ``rolled_back``,
    ``rollback_failed``): the executor decides (a parent's rollback reopens it to undo it)."""
    error: dict[str, Any] | None
    steps: dict[str, StepRecord]
    result: Any = None
    compensations: dict[str, int] = field(default_factory=dict)
    """How often each step's compensation ran (its ``step.compensate`` events), so a resumed
    compensation's ``ctx.tries`` goes on counting."""
    plans: dict[str, Any] = field(default_factory=dict)
    """What each map recorded when it started (its collection), so a resumed run rebuilds
    the same elements even if what it maps over has changed since (a resume's new inputs)."""


@dataclass(slots=True)
class RunLog:
    """The in-memory log; :class:`SqlRunLog` adds persistence. The executor records each
    transition with :meth:`step` and :meth:`event`, which never block."""

    workflow: str
    run_id: int | None = None
    attempt: int = 0
    job_id: int | None = None
    run: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    seq: int = 0
    on_broken: Callable[[RunLogUnwritable], None] | None = None
    """Called once when the log gives up writing, so the run stops (the executor's)."""
    parent: ParentLink | None = None
    """Set for a child run (compose, recurse): its parent run and step. Its job and attempt
    are the parent's, passed to :meth:`open` as for any run."""

    def encode_result(self, value: Any, what: str) -> Any:
        return value

    @property
    def row_written(self) -> bool:
        """The run's row is in the database (always, in memory): a child run may name it."""
        return True

    def ready(self, seq: int) -> bool:
        """True when every transition up to event ``seq`` is durable and no write is failing:
        user code may start (always, in memory)."""
        return True

    async def wait_ready(self, seq: int) -> bool:
        """Wait until :meth:`ready` (writing what is pending at once); False once the log
        gave up writing."""
        return True

    async def open(
        self,
        inputs: Mapping[str, Any],
        context: Any,
        positions: Iterable[str],
        *,
        job_id: int | None,
        attempt: int,
        now: datetime,
        dag: Mapping[str, list[str]] | None = None,
    ) -> Resumed | None:
        self.job_id, self.attempt = job_id, attempt
        self.run = {
            "status": RunStatus.RUNNING.value,
            "inputs": dict(inputs),
            "context": context,
            "dag": dict(dag) if dag is not None else None,
            "result": None,
            "error": None,
            "started_at": now,
            "updated_at": now,
            "finished_at": None,
        }
        for position, name in enumerate(positions):
            self.steps[name] = _step_row(name, position, StepStatus.PENDING.value)
        return None

    def step(self, row: dict[str, Any], kind: str, at: datetime, detail: Any = None) -> None:
        self.steps[row["step"]] = row
        self.event(kind, at, step=row["step"], detail=detail)

    def event(
        self, kind: str, at: datetime, *, step: str | None = None, detail: Any = None
    ) -> None:
        self.seq += 1
        recorded = {
            "seq": self.seq,
            "at": at,
            "attempt": self.attempt,
            "step": step,
            "kind": kind,
            "detail": detail,
        }
        self.events.append(recorded)
        self._recorded(recorded)
        self._changed()

    def set_run(
        self,
        status: str,
        at: datetime,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
        finished: bool = False,
    ) -> None:
        self.run.update(
            status=status,
            result=result,
            error=error,
            updated_at=at,
            finished_at=at if finished else None,
        )
        self._changed(run=True)

    def _recorded(self, event: dict[str, Any]) -> None:
        """Hook for persistence: a new event."""

    def _changed(self, run: bool = False) -> None:
        """Hook for persistence: something changed (the run's row when ``run``)."""

    async def flush(self) -> None:
        """Wait until everything recorded is durable (nothing to do in memory)."""

    def close(self) -> None:
        """The attempt is over (cut short): write nothing more."""

    async def record(self, app: AppCore) -> RunRecord:
        """The run as a record, the same shape ``get_run`` reads from the database."""
        run = self.run
        return RunRecord(
            id=self.run_id,
            workflow=self.workflow,
            job_id=self.job_id,
            attempt=self.attempt,
            status=run["status"],
            inputs=run["inputs"],
            context=run["context"],
            dag=run["dag"],
            result=run["result"],
            error=run["error"],
            started_at=run["started_at"],
            updated_at=run["updated_at"],
            finished_at=run["finished_at"],
            steps=tuple(
                StepRecord(**row)
                for row in sorted(self.steps.values(), key=lambda r: r["position"])
            ),
            events=tuple(EventRecord(**event) for event in self.events),
            parent_run_id=self.parent.run_id if self.parent is not None else None,
            parent_step=self.parent.step if self.parent is not None else None,
            iteration=self.parent.iteration if self.parent is not None else 0,
        )


def _step_row(name: str, position: int, status: str) -> dict[str, Any]:
    return {
        "step": name,
        "position": position,
        "status": status,
        "result": None,
        "error": None,
        "tries": 0,
        "undo_tries": 0,
        "completed_seq": None,
        "enqueue": None,
        "started_at": None,
        "finished_at": None,
    }


def _refused(error: BaseException) -> bool:
    """A write the database will refuse however often it is retried: bad data (its
    SQLSTATE class 22 when the driver's error arrives untranslated) or data this process
    cannot encode; not a database that is away."""
    if isinstance(error, DatabaseUnavailable):
        return False
    if isinstance(error, (DataRejected, ValueError, TypeError)):
        return True
    return str(getattr(error, "sqlstate", "") or "").startswith("22")


def append_event(
    engine: Engine,
    tx: Any,
    run_id: int,
    kind: str,
    *,
    attempt: int,
    at: datetime,
    detail: Any = None,
) -> None:
    """Add one event to a run that no log is writing (one that has ended), in ``tx``."""
    q = engine.queries
    seq = int(tx.execute(q["max_seq"], {"run_id": run_id})[0]["seq"]) + 1
    event = {
        "seq": seq,
        "at": engine.time_json(at),
        "attempt": attempt,
        "step": None,
        "kind": kind,
        "detail": json_text(detail),
    }
    tx.execute(q["insert_events"], {"run_id": run_id, "rows": dumps([event])})


@dataclass(slots=True)
class Part:
    """What one run's log writes in a round of the writer: its changed step rows, its new
    events and its run row (always there: it carries the attempt every write is fenced
    by), encoded for the engine; and what to put back if the round fails."""

    steps: list[dict[str, Any]]
    events: list[dict[str, Any]]
    run: dict[str, Any]
    names: set[str]
    recorded: list[dict[str, Any]]
    """The events as recorded (put back in front of newer ones when the write fails)."""
    run_dirty: bool


@dataclass(slots=True)
class SqlRunLog(RunLog):
    """The persisted log, on the app's engine (SQLite or PostgreSQL), written by the
    event loop's :class:`~.writer.LogWriter` together with every other run's."""

    engine: Engine | None = None
    resume_id: int | None = None
    """Take over this unfinished run (``runs rollback``) instead of looking one up by job."""
    retried_after: int | None = None
    """The attempt after which the job was retried by hand: a run that succeeded at or before
    it is not final (``running.retried_after``)."""
    write_timeout: float = LOG_WRITE_TIMEOUT
    """Seconds a failing write is retried before the log gives up and the run stops."""
    writer: LogWriter | None = None
    """Set when the run is opened."""
    _create: dict[str, Any] | None = None
    """The run's row as its first write creates it (its opening only reserved its id), until
    a write has."""
    _dirty_steps: set[str] = field(default_factory=set)
    _written: set[str] = field(default_factory=set)
    _new_events: list[dict[str, Any]] = field(default_factory=list)
    _run_dirty: bool = False
    _queued: bool = False
    """Handed to the writer, which has not taken it yet: later changes join it there."""
    _in_flight: Part | None = None
    """This log's part of the writer's round under way (one at a time: writes land in
    order)."""
    _retry: asyncio.TimerHandle | None = None
    """Set while a failed write waits out its backoff."""
    _failure: RunLogUnwritable | None = None
    _trouble: BaseException | None = None
    """The error of the write being retried, while one is."""
    _since: float = 0.0
    _delay: float = RETRY_FIRST
    _durable_seq: int = 0
    """Every event up to this one is written."""
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)
    """``wait_ready`` and ``flush`` waiting: woken when a write succeeds, the log gives up,
    or it is closed."""
    _closed: bool = False
    _times: dict[datetime, Any] = field(default_factory=dict)

    def encode_result(self, value: Any, what: str) -> Any:
        return jsonable(value, what)

    @property
    def row_written(self) -> bool:
        return self._create is None  # opened in a round: created by its first write

    def ready(self, seq: int) -> bool:
        return self._trouble is None and self._failure is None and self._durable_seq >= seq

    async def wait_ready(self, seq: int) -> bool:
        while (
            self._failure is None
            and not self._closed
            and (self._trouble is not None or self._durable_seq < seq)
        ):
            await self._wait_progress()
        return self._failure is None and not self._closed

    async def _wait_progress(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def close(self) -> None:
        """The attempt was cut short and has written what it could: stop. A write waiting
        to be retried is dropped; one already sent (a thread cannot be stopped) is fenced by
        attempt in the database (``write_logs``), so neither lands after the job's next
        attempt (perhaps on another node) has taken the run over."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._signal()

    def _signal(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():  # a waiter cancelled meanwhile is done
                waiter.set_result(None)

    @property
    def _engine(self) -> Engine:
        assert self.engine is not None
        return self.engine

    async def open(
        self,
        inputs: Mapping[str, Any],
        context: Any,
        positions: Iterable[str],
        *,
        job_id: int | None,
        attempt: int,
        now: datetime,
        dag: Mapping[str, list[str]] | None = None,
    ) -> Resumed | None:
        await RunLog.open(
            self, inputs, context, positions, job_id=job_id, attempt=attempt, now=now, dag=dag
        )
        self.writer = writer_for(self._engine)
        if self.resume_id is None and self.parent is None:
            # Most attempts start a run: opened in the writer's next round with the other
            # runs starting, and created by its first write.
            row = self._open_row(now)
            try:
                run_id, found = await self.writer.open(row)
            except Exception:  # the round failed: opened alone below, which retries or says why
                found = True
            if not found:
                self.run_id = run_id
                self._create = {
                    "workflow": self.workflow,
                    "job_id": self.job_id,
                    "inputs": row["inputs"],
                    "context": row["context"],
                    "dag": row["dag"],
                    "started_at": row["now"],
                }
                self._submit()
                return None
        try:
            resumed = await self._open_retrying(now)
        except Exception as exc:
            text = str(exc)
            if "jobsaga_workflow_runs" in text and ("no such table" in text or "exist" in text):
                raise MigrationError(
                    "the workflow run log tables are missing: run app.migrate() (or "
                    "`jobsaga migrate`), or pass persist=False to keep the log in memory"
                ) from exc
            raise
        self._submit()
        return resumed

    def _open_row(self, now: datetime) -> dict[str, Any]:
        """The ``open_runs`` request; JSON values travel as JSON inside the payload."""
        return {
            "workflow": self.workflow,
            "job_id": self.job_id,
            "attempt": self.attempt,
            "retried_after": self.retried_after,
            "inputs": jsonable(self.run["inputs"], "the workflow inputs"),
            "context": jsonable(self.run["context"], "the workflow context"),
            "dag": self.run["dag"],
            "now": self._engine.time_json(now),
        }

    async def _open_retrying(self, now: datetime) -> Resumed | None:
        """Open the run alone (one it takes up, a child run, or one whose round failed),
        retrying while the database is away (up to ``write_timeout``). A retry after a
        commit whose reply was lost finds the run it created (by its job, or its link)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.write_timeout
        delay = RETRY_FIRST
        while True:
            try:
                return await asyncio.to_thread(self._open, now)
            except DatabaseUnavailable:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    def _open(self, now: datetime) -> Resumed | None:
        engine = self._engine
        q = engine.queries
        parent = self.parent
        with engine.transaction() as tx:
            run_id = self.resume_id
            if run_id is None and parent is not None:
                if parent.run_id is not None:
                    found = tx.execute(
                        q["find_child_run"],
                        {
                            "parent_run_id": parent.run_id,
                            "parent_step": parent.step,
                            "iteration": parent.iteration,
                            "workflow": self.workflow,
                        },
                    )
                    run_id = int(found[0]["id"]) if found else None
            elif run_id is None and self.job_id is not None:
                found = tx.execute(
                    q["find_run_of_job"],
                    {
                        "job_id": self.job_id,
                        "workflow": self.workflow,
                        "retried_after": self.retried_after,
                    },
                )
                run_id = int(found[0]["id"]) if found else None
            if run_id is not None:
                run = read_run(engine, tx, run_id)
                assert run is not None
                if run.status != RunStatus.SUCCEEDED.value:
                    # A succeeded run keeps the attempt that ran it; only its events grow.
                    tx.execute(
                        q["resume_run"],
                        {"id": run_id, "attempt": self.attempt, "now": engine.time_param(now)},
                    )
                self.run_id = run_id
                self.seq = int(tx.execute(q["max_seq"], {"run_id": run_id})[0]["seq"])
                self._durable_seq = self.seq
                self.run.update(
                    status=RunStatus.RUNNING.value
                    if run.status == RunStatus.HALTED.value
                    else run.status,  # as resume_run left it
                    error=run.error,
                    result=None if run.status == RunStatus.HALTED.value else run.result,
                    started_at=run.started_at,
                    finished_at=run.finished_at,
                )
                self._written.update(record.step for record in run.steps)
                for record in run.steps:
                    self.steps[record.step] = {k: getattr(record, k) for k in StepRecord.__slots__}
                compensations: dict[str, int] = {}
                plans: dict[str, Any] = {}
                for event in run.events:
                    if event.step is None:
                        continue
                    if event.kind == "step.compensate":
                        compensations[event.step] = compensations.get(event.step, 0) + 1
                    elif (
                        event.kind == "step.started"
                        and isinstance(event.detail, dict)
                        and "collection" in event.detail
                    ):
                        plans[event.step] = event.detail
                return Resumed(
                    run_id,
                    run.status,
                    run.error,
                    {s.step: s for s in run.steps},
                    run.result,
                    compensations,
                    plans,
                )
            row = tx.execute(
                q["insert_run"],
                {
                    "workflow": self.workflow,
                    "job_id": self.job_id,
                    "attempt": self.attempt,
                    "inputs": dumps(jsonable(self.run["inputs"], "the workflow inputs")),
                    "context": json_text(jsonable(self.run["context"], "the workflow context")),
                    "dag": json_text(self.run["dag"]),
                    "now": engine.time_param(now),
                    "parent_run_id": parent.run_id if parent is not None else None,
                    "parent_step": parent.step if parent is not None else None,
                    "iteration": parent.iteration if parent is not None else 0,
                },
            )
            self.run_id = int(row[0]["id"])
        # Step rows are written when a step first moves; those that never did are written
        # as pending when the run ends, so a run costs no row per step up front.
        return None

    def step(self, row: dict[str, Any], kind: str, at: datetime, detail: Any = None) -> None:
        self._dirty_steps.add(row["step"])
        RunLog.step(self, row, kind, at, detail)

    def _recorded(self, event: dict[str, Any]) -> None:
        self._new_events.append(event)

    def _changed(self, run: bool = False) -> None:
        if run:
            self._run_dirty = True
            if self.run["finished_at"] is not None:
                self._dirty_steps.update(set(self.steps) - self._written)
        self._submit()

    def _pending(self) -> bool:
        return bool(self._dirty_steps or self._new_events or self._run_dirty)

    def _submit(self) -> None:
        """Hand the log to the writer's next round, unless it has a write under way (the
        next is handed over when that one settles) or waiting out a backoff."""
        if (
            not self._queued
            and self.writer is not None
            and self.run_id is not None
            and self._in_flight is None
            and self._retry is None
            and self._failure is None
            and not self._closed
            and self._pending()
        ):
            self._queued = True
            self.writer.submit(self)

    def take(self) -> Part | None:
        """What the writer's round writes of this log: everything recorded since the last
        write (the latest row of each step that changed, the new events, the run row)."""
        self._queued = False
        if (
            self._in_flight is not None
            or self._retry is not None
            or self._failure is not None
            or self._closed
            or not self._pending()
        ):
            return None
        names, recorded, run_dirty = self._dirty_steps, self._new_events, self._run_dirty
        self._dirty_steps, self._new_events, self._run_dirty = set(), [], False
        try:
            part = Part(
                steps=[self._wire(self.steps[name]) for name in names],
                events=[self._wire_event(e) for e in recorded],
                run=self._wire_run(run_dirty),
                names=names,
                recorded=recorded,
                run_dirty=run_dirty,
            )
        except Exception as exc:  # data this process cannot encode: it never will
            self._put_back(names, recorded, run_dirty)
            self._give_up(exc, "the run log could not encode its data")
            return None
        self._in_flight = part
        return part

    def _put_back(self, names: set[str], recorded: list[dict[str, Any]], run_dirty: bool) -> None:
        self._dirty_steps |= names
        self._new_events[:0] = recorded
        self._run_dirty = self._run_dirty or run_dirty

    def settle(self, part: Part, error: BaseException | None) -> None:
        """The writer's round wrote ``part`` (``error`` None) or failed it. A failing write
        is retried, with everything recorded since, 50 ms doubling to 1 s apart (no user
        code starts meanwhile: see :meth:`ready`) until it succeeds, the database refuses
        the data, or ``write_timeout`` passes; then the log gives up (:meth:`_give_up`)."""
        self._in_flight = None
        if error is None:
            self._written.update(part.names)
            if part.events:
                self._durable_seq = max(self._durable_seq, int(part.events[-1]["seq"]))
            if part.run["create_run"]:
                self._create = None
            if self._trouble is not None:
                log.warning(
                    "run %s: the run log is written again after %.2fs",
                    self.run_id,
                    asyncio.get_running_loop().time() - self._since,
                )
                self._trouble, self._delay = None, RETRY_FIRST
            self._signal()
            self._submit()
            return
        # Nothing of it was written (one transaction): it goes out with the next try.
        self._put_back(part.names, part.recorded, part.run_dirty)
        if self._closed or not isinstance(error, Exception):
            self._signal()  # closed (or the loop is closing): nothing more is written
            return
        loop = asyncio.get_running_loop()
        if self._trouble is None:
            self._since = loop.time()
            log.warning(
                "run %s: writing the run log failed (%s: %s); retrying for up to %gs, "
                "and no step starts meanwhile",
                self.run_id,
                type(error).__name__,
                error,
                self.write_timeout,
            )
        self._trouble = error
        waited = loop.time() - self._since
        if _refused(error):
            self._give_up(error, "the database refused its data")
        elif waited + self._delay > self.write_timeout:
            self._give_up(error, f"writes still failed after {waited:.1f}s of retries")
        else:
            self._retry = loop.call_later(self._delay, self._retry_now)
            self._delay = min(self._delay * 2, RETRY_MAX)

    def _retry_now(self) -> None:
        self._retry = None
        self._submit()

    def _give_up(self, error: BaseException, how: str) -> None:
        """Stop writing: ``flush`` raises :class:`RunLogUnwritable` from now on, and the
        executor (``on_broken``) stops the run: no new step, no rollback (neither could be
        recorded); the next attempt resumes the run from what was written."""
        failure = RunLogUnwritable(self.run_id, error, how)
        self._failure = failure
        self._trouble = None
        self._signal()
        log.error("%s", failure)
        if self.on_broken is not None:
            self.on_broken(failure)

    def _time_json(self, value: datetime) -> Any:
        """A time as the engine writes it in JSON, the last few remembered: a transition's
        time is its event's and its step's (started, finished), written more than once."""
        cache = self._times
        text = cache.get(value)
        if text is None:
            if len(cache) > 16:
                cache.clear()
            text = cache[value] = self._engine.time_json(value)
        return text

    # A write's rows, as the writer's statements read them: JSON values (results, errors,
    # details) travel as JSON inside the payload, encoded once with it; results and inputs
    # were checked storable when recorded, the log's own texts are made so here.

    def _wire(self, row: dict[str, Any]) -> dict[str, Any]:
        tj = self._time_json
        error = row["error"]
        return {
            **row,
            "run_id": self.run_id,
            "error": None if error is None else storable(error),
            "started_at": tj(row["started_at"]) if row["started_at"] else None,
            "finished_at": tj(row["finished_at"]) if row["finished_at"] else None,
        }

    def _wire_event(self, event: dict[str, Any]) -> dict[str, Any]:
        detail = event["detail"]
        return {
            **event,
            "run_id": self.run_id,
            "at": self._time_json(event["at"]),
            "detail": None if detail is None else storable(detail),
        }

    def _wire_run(self, changed: bool) -> dict[str, Any]:
        """The run row of a write: what fences the whole write (its id, this attempt, its
        workflow and job), its new status, result and error when the run changed, and the
        whole row while it is not created yet."""
        row: dict[str, Any] = {
            "id": self.run_id,
            "attempt": self.attempt,
            "workflow": self.workflow,
            "job_id": self.job_id,
            "create_run": self._create is not None,
            "update_run": changed,
        }
        if changed or self._create is not None:
            run, tj = self.run, self._time_json
            row.update(
                status=run["status"],
                result=run["result"],
                error=None if run["error"] is None else storable(run["error"]),
                now=tj(run["updated_at"]),
                finished_at=tj(run["finished_at"]) if run["finished_at"] else None,
            )
        if self._create is not None:
            row.update(self._create)
        return row

    async def flush(self) -> None:
        while (
            self._failure is None
            and not self._closed
            and (self._in_flight is not None or self._pending())
        ):
            self._submit()
            await self._wait_progress()
        if self._failure is not None:
            raise self._failure

    async def record(self, app: AppCore) -> RunRecord:
        await self.flush()
        assert self.run_id is not None
        found = await asyncio.to_thread(get_run, app, self.run_id)
        assert found is not None
        return found
