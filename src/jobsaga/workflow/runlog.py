"""The run log: every run, every step transition and every event, persisted in order.

Writes are group-committed: the executor records transitions without waiting, and one
background flush at a time writes everything recorded so far in a single transaction (the
latest row of each step that changed, plus all new events). A run therefore costs about
one round trip per burst of activity rather than several per step, and nothing is lost
that matters: a transition not yet written when a node dies is a step whose outcome the
next attempt does not know, so it runs that step again, exactly as it would have anyway.
Before the run reports success or failure, everything is flushed.

``persist=False`` uses the base :class:`RunLog`, which keeps the same records in memory
(no crash recovery, no ``jobsaga runs``), for callers that measure or do not need the log.
What is read back (:class:`RunRecord` and friends) lives in :mod:`.records`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import MigrationError
from ..runtime.waiting import wait_event
from ..serialization import dumps, find_unserializable
from .records import (
    EventRecord,
    RunRecord,
    RunStatus,
    StepRecord,
    StepStatus,
    get_run,
    queries,
    read_run,
)

if TYPE_CHECKING:
    from ..app import App
    from ..engines import Engine


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


# --- writing ------------------------------------------------------------------------------


@dataclass(slots=True)
class Resumed:
    """The job's run found at start: an unfinished one, which this attempt continues, or a
    succeeded one, which is final (the attempt completes the job without running a step)."""

    run_id: int
    status: str
    """``running`` or ``rolling_back`` (resumed), or ``succeeded``: final, nothing runs."""
    error: dict[str, Any] | None
    steps: dict[str, StepRecord]
    result: Any = None


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


def _text(value: Any) -> str | None:
    return None if value is None else dumps(value)


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
    q = queries(engine.dialect)
    seq = int(tx.execute(q["max_seq"], {"run_id": run_id})[0]["seq"]) + 1
    event = {
        "seq": seq,
        "at": engine.time_json(at),
        "attempt": attempt,
        "step": None,
        "kind": kind,
        "detail": _text(detail),
    }
    tx.execute(q["insert_events"], {"run_id": run_id, "rows": dumps([event])})


@dataclass(slots=True)
class SqlRunLog(RunLog):
    """The persisted log, on the app's engine (SQLite or PostgreSQL)."""

    engine: Engine | None = None
    resume_id: int | None = None
    """Take over this unfinished run (``runs rollback``) instead of looking one up by job."""
    _dirty_steps: set[str] = field(default_factory=set)
    _written: set[str] = field(default_factory=set)
    _new_events: list[dict[str, Any]] = field(default_factory=list)
    _run_dirty: bool = False
    flush_delay: float = 0.002
    """Seconds a flush waits to gather more transitions (none when the run needs it now)."""
    _flusher: asyncio.Task[None] | None = None
    _urgent: asyncio.Event | None = None
    _failure: BaseException | None = None

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
        dag: Mapping[str, list[str]] | None = None,
    ) -> Resumed | None:
        await RunLog.open(
            self, inputs, context, positions, job_id=job_id, attempt=attempt, now=now, dag=dag
        )
        try:
            return await asyncio.to_thread(self._open, now)
        except Exception as exc:
            text = str(exc)
            if "jobsaga_workflow_runs" in text and ("no such table" in text or "exist" in text):
                raise MigrationError(
                    "the workflow run log tables are missing: run app.migrate() (or "
                    "`jobsaga migrate`), or pass persist=False to keep the log in memory"
                ) from exc
            raise

    def _open(self, now: datetime) -> Resumed | None:
        engine = self._engine
        q = queries(engine.dialect)
        with engine.transaction() as tx:
            run_id = self.resume_id
            if run_id is None and self.job_id is not None:
                found = tx.execute(
                    q["find_run_of_job"], {"job_id": self.job_id, "workflow": self.workflow}
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
                self.run.update(
                    status=run.status,
                    error=run.error,
                    result=run.result,
                    started_at=run.started_at,
                    finished_at=run.finished_at,
                )
                self._written.update(record.step for record in run.steps)
                for record in run.steps:
                    self.steps[record.step] = {k: getattr(record, k) for k in StepRecord.__slots__}
                return Resumed(
                    run_id,
                    run.status,
                    run.error,
                    {s.step: s for s in run.steps},
                    run.result,
                )
            row = tx.execute(
                q["insert_run"],
                {
                    "workflow": self.workflow,
                    "job_id": self.job_id,
                    "attempt": self.attempt,
                    "inputs": dumps(jsonable(self.run["inputs"], "the workflow inputs")),
                    "context": _text(jsonable(self.run["context"], "the workflow context")),
                    "dag": _text(self.run["dag"]),
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
