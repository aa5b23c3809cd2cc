"""The run log: every run, every step transition and every event, persisted in order.

Writes are group-committed: the executor records transitions without waiting, and one
background flush at a time writes everything recorded so far in a single transaction (the
latest row of each step that changed, plus all new events). A run therefore costs about
one round trip per burst of activity rather than several per step, and nothing is lost
that matters: a transition not yet written when a node dies is a step whose outcome the
next attempt does not know, so it runs that step again, exactly as it would have anyway.
Before the run reports success or failure, everything is flushed.

``persist=False`` swaps in :class:`MemoryRunLog`, which keeps the same records in memory
(no crash recovery, no ``jobsaga runs``), for callers that measure or do not need the log.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..engines.sql import load_queries
from ..runtime.waiting import wait_event
from ..serialization import dumps, find_unserializable

if TYPE_CHECKING:
    from ..app import App
    from ..engines import Engine


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    """Failed with nothing to undo."""
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    RETRIED = "retried"
    """Failed a try and waits to run again."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    COMPENSATED = "compensated"
    """Failed, and its compensation continued with a value: counts as succeeded."""
    SKIPPED = "skipped"
    UNDONE = "undone"
    UNDO_FAILED = "undo_failed"


FAILED_STATUSES = (RunStatus.FAILED, RunStatus.ROLLED_BACK, RunStatus.ROLLBACK_FAILED)
"""What ``status="failed"`` means when listing runs: every way a saga can end in failure."""


class StepResultError(TypeError):
    """A step returned a value the run log cannot store as JSON."""


def error_json(error: BaseException) -> dict[str, Any]:
    import traceback

    return {
        "type": f"{type(error).__module__}.{type(error).__qualname__}",
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)) if error.__traceback__ else "",
    }


def jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (pydantic models, dataclasses, datetimes included)."""
    try:
        data = to_jsonable_python(value)
    except PydanticSerializationError:
        data = value
    bad = find_unserializable(data)
    if bad is not None:
        where = "" if bad == "<root>" else f" (at {bad})"
        raise StepResultError(
            f"{what} is a {type(value).__name__}{where}, which cannot be stored as JSON; "
            "the run log keeps results as JSON so a rescued job can resume from them: "
            "return plain data or a pydantic model"
        )
    return data


# --- what is read back ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StepRecord:
    step: str
    position: int
    status: str
    result: Any
    error: dict[str, Any] | None
    tries: int
    undo_tries: int
    completed_seq: int | None
    enqueue: list[dict[str, Any]] | None
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    seq: int
    at: datetime
    attempt: int
    step: str | None
    kind: str
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One saga run as the log holds it: ``runs show`` prints exactly this."""

    id: int | None
    workflow: str
    job_id: int | None
    attempt: int
    status: str
    inputs: Any
    context: Any
    result: Any
    error: dict[str, Any] | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: tuple[StepRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()

    def step(self, name: str) -> StepRecord:
        for record in self.steps:
            if record.step == name:
                return record
        raise KeyError(f"run {self.id} has no step {name!r}")

    def statuses(self) -> dict[str, str]:
        return {s.step: s.status for s in self.steps}

    def steps_with(self, *statuses: str) -> list[str]:
        return [s.step for s in self.steps if s.status in statuses]

    def events_of(self, *kinds: str) -> list[EventRecord]:
        return [e for e in self.events if e.kind in kinds]

    def undo_order(self) -> list[str]:
        """The steps whose undo ran (for good or not), in the order the rollback took."""
        return [e.step for e in self.events_of("step.undone", "step.undo_failed") if e.step]


# --- writing ------------------------------------------------------------------------------


@dataclass(slots=True)
class Resumed:
    """An unfinished run of the same job found at start: the next attempt continues it."""

    run_id: int
    status: str
    error: dict[str, Any] | None
    steps: dict[str, StepRecord]
    next_seq: int


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

    persistent = False

    def encode_result(self, value: Any, what: str) -> Any:
        return value

    async def open(
        self,
        inputs: Mapping[str, Any],
        context: Any,
        positions: Iterable[str],
        *,
        job_id: int | None,
        attempt: int,
        now: datetime,
    ) -> Resumed | None:
        self.job_id, self.attempt = job_id, attempt
        self.run = {
            "status": RunStatus.RUNNING.value,
            "inputs": dict(inputs),
            "context": context,
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
        self.events.append(
            {
                "seq": self.seq,
                "at": at,
                "attempt": self.attempt,
                "step": step,
                "kind": kind,
                "detail": detail,
            }
        )
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

    def _changed(self, run: bool = False) -> None:
        """Hook for persistence."""

    async def flush(self) -> None:
        """Wait until everything recorded is durable (nothing to do in memory)."""

    async def record(self, app: App) -> RunRecord:
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
            result=run["result"],
            error=run["error"],
            started_at=run["started_at"],
            updated_at=run["updated_at"],
            finished_at=run["finished_at"],
            steps=tuple(
                StepRecord(**{k: v for k, v in row.items()})
                for row in sorted(self.steps.values(), key=lambda r: r["position"])
            ),
            events=tuple(EventRecord(**event) for event in self.events),
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


@functools.lru_cache(maxsize=4)
def queries(dialect: str) -> dict[str, str]:
    return load_queries("jobsaga.workflow.sql", f"{dialect}.sql")


def _text(value: Any) -> str | None:
    return None if value is None else dumps(value)


def _load(value: Any) -> Any:
    return None if value is None else json.loads(value)


@dataclass(slots=True)
class SqlRunLog(RunLog):
    """The persisted log, on the app's engine (SQLite or PostgreSQL)."""

    engine: Engine | None = None
    _dirty_steps: set[str] = field(default_factory=set)
    _written: set[str] = field(default_factory=set)
    _new_events: list[dict[str, Any]] = field(default_factory=list)
    _run_dirty: bool = False
    flush_delay: float = 0.002
    """Seconds a flush waits to gather more transitions (none when the run needs it now)."""
    _flusher: asyncio.Task[None] | None = None
    _urgent: asyncio.Event | None = None
    _failure: BaseException | None = None

    persistent = True

    def encode_result(self, value: Any, what: str) -> Any:
        return jsonable(value, what)

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
    ) -> Resumed | None:
        await RunLog.open(self, inputs, context, positions, job_id=job_id, attempt=attempt, now=now)
        return await asyncio.to_thread(self._open, now)

    def _open(self, now: datetime) -> Resumed | None:
        engine = self._engine
        q = queries(engine.dialect)
        with engine.transaction() as tx:
            if self.job_id is not None:
                found = tx.execute(
                    q["find_resumable"], {"job_id": self.job_id, "workflow": self.workflow}
                )
                if found:
                    run_id = int(found[0]["id"])
                    tx.execute(
                        q["resume_run"],
                        {"id": run_id, "attempt": self.attempt, "now": engine.time_param(now)},
                    )
                    self.run_id = run_id
                    run = read_run(engine, tx, run_id)
                    assert run is not None
                    self.seq = int(tx.execute(q["max_seq"], {"run_id": run_id})[0]["seq"])
                    self.run.update(status=run.status, error=run.error, started_at=run.started_at)
                    self._written.update(record.step for record in run.steps)
                    for record in run.steps:
                        self.steps[record.step] = {
                            k: getattr(record, k) for k in StepRecord.__slots__
                        }
                    return Resumed(
                        run_id,
                        run.status,
                        run.error,
                        {s.step: s for s in run.steps},
                        self.seq + 1,
                    )
            row = tx.execute(
                q["insert_run"],
                {
                    "workflow": self.workflow,
                    "job_id": self.job_id,
                    "attempt": self.attempt,
                    "inputs": dumps(jsonable(self.run["inputs"], "the workflow inputs")),
                    "context": _text(jsonable(self.run["context"], "the workflow context")),
                    "now": engine.time_param(now),
                },
            )
            self.run_id = int(row[0]["id"])
        # Step rows are written when a step first moves; those that never did are written
        # as pending when the run ends, so a run costs no row per step up front.
        return None

    def step(self, row: dict[str, Any], kind: str, at: datetime, detail: Any = None) -> None:
        self._dirty_steps.add(row["step"])
        RunLog.step(self, row, kind, at, detail)

    def event(
        self, kind: str, at: datetime, *, step: str | None = None, detail: Any = None
    ) -> None:
        RunLog.event(self, kind, at, step=step, detail=detail)
        self._new_events.append(self.events[-1])

    def _changed(self, run: bool = False) -> None:
        if run:
            self._run_dirty = True
            if self.run["finished_at"] is not None:
                self._dirty_steps.update(set(self.steps) - self._written)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        if self._urgent is None:
            self._urgent = asyncio.Event()
        while (self._dirty_steps or self._new_events or self._run_dirty) and self._failure is None:
            if not self._urgent.is_set():
                await wait_event(self._urgent, self.flush_delay)
            steps = [self._wire(self.steps[name]) for name in self._dirty_steps]
            self._written.update(self._dirty_steps)
            events = [self._wire_event(e) for e in self._new_events]
            run = self._wire_run() if self._run_dirty else None
            self._dirty_steps, self._new_events, self._run_dirty = set(), [], False
            try:
                await asyncio.to_thread(self._write, steps, events, run)
            except Exception as exc:  # surfaced by flush(): the attempt fails, the job retries
                self._failure = exc

    def _write(
        self, steps: list[dict[str, Any]], events: list[dict[str, Any]], run: dict[str, Any] | None
    ) -> None:
        engine = self._engine
        q = queries(engine.dialect)
        with engine.transaction() as tx:
            if steps:
                tx.execute(q["upsert_steps"], {"run_id": self.run_id, "rows": dumps(steps)})
            if events:
                tx.execute(q["insert_events"], {"run_id": self.run_id, "rows": dumps(events)})
            if run is not None:
                tx.execute(q["update_run"], run)

    def _wire(self, row: dict[str, Any]) -> dict[str, Any]:
        tj = self._engine.time_json
        return {
            **row,
            "result": _text(row["result"]),
            "error": _text(row["error"]),
            "enqueue": _text(row["enqueue"]),
            "started_at": tj(row["started_at"]) if row["started_at"] else None,
            "finished_at": tj(row["finished_at"]) if row["finished_at"] else None,
        }

    def _wire_event(self, event: dict[str, Any]) -> dict[str, Any]:
        return {
            **event,
            "at": self._engine.time_json(event["at"]),
            "detail": _text(event["detail"]),
        }

    def _wire_run(self) -> dict[str, Any]:
        run, tp = self.run, self._engine.time_param
        return {
            "id": self.run_id,
            "status": run["status"],
            "result": _text(run["result"]),
            "error": _text(run["error"]),
            "now": tp(run["updated_at"]),
            "finished_at": tp(run["finished_at"]) if run["finished_at"] else None,
        }

    async def flush(self) -> None:
        if self._urgent is None:
            self._urgent = asyncio.Event()
        self._urgent.set()
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)
        if self._failure is not None:
            raise self._failure

    async def record(self, app: App) -> RunRecord:
        await self.flush()
        assert self.run_id is not None
        found = await asyncio.to_thread(get_run, app, self.run_id)
        assert found is not None
        return found


# --- reading ------------------------------------------------------------------------------


def _run_from_row(engine: Engine, row: Mapping[str, Any]) -> RunRecord:
    tv = engine.time_value
    return RunRecord(
        id=int(row["id"]),
        workflow=row["workflow"],
        job_id=None if row["job_id"] is None else int(row["job_id"]),
        attempt=int(row["attempt"]),
        status=row["status"],
        inputs=_load(row["inputs"]),
        context=_load(row["context"]),
        result=_load(row["result"]),
        error=_load(row["error"]),
        started_at=tv(row["started_at"]),  # type: ignore[arg-type]
        updated_at=tv(row["updated_at"]),  # type: ignore[arg-type]
        finished_at=tv(row["finished_at"]),
    )


def read_run(engine: Engine, tx: Any, run_id: int) -> RunRecord | None:
    q = queries(engine.dialect)
    rows = tx.execute(q["get_run"], {"id": run_id})
    if not rows:
        return None
    tv = engine.time_value
    steps = tuple(
        StepRecord(
            step=r["step"],
            position=int(r["position"]),
            status=r["status"],
            result=_load(r["result"]),
            error=_load(r["error"]),
            tries=int(r["tries"]),
            undo_tries=int(r["undo_tries"]),
            completed_seq=None if r["completed_seq"] is None else int(r["completed_seq"]),
            enqueue=_load(r["enqueue"]),
            started_at=tv(r["started_at"]),
            finished_at=tv(r["finished_at"]),
        )
        for r in tx.execute(q["get_steps"], {"run_id": run_id})
    )
    events = tuple(
        EventRecord(
            seq=int(r["seq"]),
            at=tv(r["at"]),  # type: ignore[arg-type]
            attempt=int(r["attempt"]),
            step=r["step"],
            kind=r["kind"],
            detail=_load(r["detail"]),
        )
        for r in tx.execute(q["get_events"], {"run_id": run_id})
    )
    run = _run_from_row(engine, rows[0])
    return RunRecord(**{**_fields(run), "steps": steps, "events": events})


def _fields(run: RunRecord) -> dict[str, Any]:
    return {name: getattr(run, name) for name in RunRecord.__slots__}


def get_run(app: App, run_id: int) -> RunRecord | None:
    """One run with its steps (in declaration order) and its events (in the order they happened)."""
    with app.engine.transaction() as tx:
        return read_run(app.engine, tx, run_id)


def list_runs(
    app: App,
    *,
    status: str | Iterable[str] | None = None,
    workflow: str | None = None,
    job_id: int | None = None,
    limit: int = 50,
) -> list[RunRecord]:
    """Runs, newest first, without their steps. ``status="failed"`` matches every failed
    ending (failed, rolled_back, rollback_failed); give the exact statuses to narrow it."""
    statuses: list[str] | None = None
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        statuses = []
        for item in wanted:
            valid = {s.value for s in RunStatus}
            if item not in valid:
                raise ValueError(f"unknown run status {item!r}; use one of {sorted(valid)}")
            statuses += [s.value for s in FAILED_STATUSES] if item == "failed" else [item]
    engine = app.engine
    q = queries(engine.dialect)
    params: dict[str, Any] = {
        "statuses": statuses
        if engine.dialect == "postgres" or statuses is None
        else dumps(statuses),
        "workflow": workflow,
        "job_id": job_id,
        "limit": limit,
    }
    with engine.transaction() as tx:
        rows = tx.execute(q["list_runs"], params)
    return [_run_from_row(engine, row) for row in rows]
