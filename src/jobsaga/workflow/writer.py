"""The run log writer: one group commit for every run on an event loop.

Each run's log (:class:`~.runlog.SqlRunLog`) records transitions without waiting and hands
what it has not written yet to the writer of its event loop and engine. The writer writes in
rounds, one at a time, in a thread of its own: a round opens the runs whose attempts just
started (``open_runs``) and writes what every run has pending, its changed step rows, new
events and run row (``write_logs``): one statement each on PostgreSQL, one ``BEGIN
IMMEDIATE`` each on SQLite. A step waits for the outcomes it depends on to be durable, so a
chain of steps pays one round per step; the sagas a node runs side by side share those
rounds, so ten sagas cost about one commit per round, not ten, and one hand-off to the
writer's thread.

Opening a run is a read (the job's run to take up, if any, else a new run's id; the new
run's row is created by its first write), answered before the round's writes commit, so a
saga's first step does not wait for a commit. A round that fails is split, each run's part
written alone, so a run whose data the database refuses fails alone (its log gives up and
its run stops) while the others go on; each log retries its own failing writes
(:mod:`.runlog`). A run's log has at most one write under way, so its writes land in the
order it recorded them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import queue
import re
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..serialization import dumps

if TYPE_CHECKING:
    from ..engines import Engine
    from ..engines.base import Row
    from .runlog import Part, SqlRunLog

GATHER_TURNS = 2
"""Event loop turns a round lets pass before it takes what is pending: a run whose step just
completed records its next transition a turn later (the run's success after its last step,
say), and steps of other runs completing at the same moment join the same round."""

IDLE_THREAD_SECONDS = 2.0
"""How long the writer's thread waits for another round before it ends (a new one starts
with the next round): a node keeps it, a finished test's loop does not leave it behind."""

_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def statements(sql: str) -> tuple[str, ...]:
    """A named query as the statements it holds, run in order in one transaction: one on
    PostgreSQL, several on SQLite (which writes one table a statement), each ending with
    ``;`` at the end of a line."""
    return tuple(part.strip() for part in _STATEMENT_END.split(sql) if part.strip())


@dataclass(slots=True)
class Opening:
    """A run to open in the next round; its attempt awaits ``done``."""

    row: dict[str, Any]
    done: asyncio.Future[tuple[int, bool]]
    """The run's id, and whether it is the job's run found to take up (succeeded: final;
    unfinished: resumed; the attempt then opens it alone) rather than a new one."""


class LogWriter:
    """Group-commits the run logs of every run on one event loop, for one engine
    (:func:`writer_for`)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._open_sql = statements(engine.queries["open_runs"])
        self._write_sql = statements(engine.queries["write_logs"])
        self._logs: dict[int, SqlRunLog] = {}
        """Logs with something to write, by identity, in the order they asked."""
        self._opening: list[Opening] = []
        self._pump: asyncio.Task[None] | None = None
        self._thread = _RoundThread()

    def submit(self, log: SqlRunLog) -> None:
        """``log`` has something to write: the next round takes it."""
        self._logs[id(log)] = log
        self._start()

    def open(self, row: dict[str, Any]) -> asyncio.Future[tuple[int, bool]]:
        """Open a run (``row``: the ``open_runs`` request) in the next round."""
        done: asyncio.Future[tuple[int, bool]] = asyncio.get_running_loop().create_future()
        self._opening.append(Opening(row, done))
        self._start()
        return done

    def _start(self) -> None:
        if self._pump is None or self._pump.done():
            # A context of its own: the rounds serve every run, whichever asked first.
            self._pump = asyncio.get_running_loop().create_task(
                self._rounds(), name="jobsaga-run-log-writer", context=contextvars.Context()
            )

    async def _rounds(self) -> None:
        """Write rounds, one at a time, while there is something to write. One at a time:
        what is recorded while a round commits waits for the next, so rounds grow with the
        load (ten sagas in step share each round) rather than multiply (a second round under
        way took the stragglers of the first, and cost more commits than it saved waits)."""
        while True:
            # Also after a round: the steps its commit let start record their outcomes a
            # turn or two later, and join the next round without a new task.
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            opening, self._opening = self._opening, []
            logs, self._logs = list(self._logs.values()), {}
            writes = [(log, part) for log in logs if (part := log.take()) is not None]
            if not opening and not writes:
                return
            await self._round(opening, writes)

    async def _round(self, opening: list[Opening], writes: list[tuple[SqlRunLog, Part]]) -> None:
        loop = asyncio.get_running_loop()
        failures: dict[int, BaseException] = {}
        try:
            parts = [part for _, part in writes]
            failures = await self._thread.run(loop, lambda: self._write(loop, opening, parts))
        except asyncio.CancelledError as exc:  # the loop is closing: nobody will wait
            failures = dict.fromkeys(range(len(writes)), exc)
            _settle_openings(opening, exc)
            raise
        except Exception as exc:  # the round itself broke: its parts are retried
            failures = dict.fromkeys(range(len(writes)), exc)
            _settle_openings(opening, exc)
        finally:
            for index, (log, part) in enumerate(writes):
                log.settle(part, failures.get(index))

    def _write(
        self, loop: asyncio.AbstractEventLoop, opening: list[Opening], parts: list[Part]
    ) -> dict[int, BaseException]:
        """One round, in the writer's thread. First the runs to open (answered at once, so
        their first steps start while the rest of the round commits; an error answers them
        all, and each attempt then opens its run alone), then the parts to write, in one
        transaction. Returns the error of each part that failed, by index: a failed write
        is split, each part written alone, so only the parts that fail on their own fail."""
        if opening:
            try:
                rows: list[Row] | BaseException = self._execute(
                    self._open_sql,
                    {"runs": dumps([{**o.row, "idx": i} for i, o in enumerate(opening)])},
                )
            except Exception as exc:
                rows = exc
            loop.call_soon_threadsafe(_settle_openings, opening, rows)
        if not parts:
            return {}
        try:
            self._execute(self._write_sql, _write_params(parts))
            return {}
        except Exception as exc:
            if len(parts) == 1:
                return {0: exc}
        failures: dict[int, BaseException] = {}
        for index, part in enumerate(parts):
            try:
                self._execute(self._write_sql, _write_params([part]))
            except Exception as exc:
                failures[index] = exc
        return failures

    def _execute(self, sql: tuple[str, ...], params: dict[str, Any]) -> list[Row]:
        if len(sql) == 1:  # one statement: its own transaction, without BEGIN and COMMIT
            return self.engine.execute_one(sql[0], params)
        rows: list[Row] = []
        with self.engine.transaction() as tx:
            for statement in sql:
                rows += tx.execute(statement, params)
        return rows


class _RoundThread:
    """The thread a writer's rounds run in, one after the other. Its own rather than the
    loop's default executor: handing a round over is a queue put and the answer a
    ``call_soon_threadsafe``, about half the interpreter time of ``asyncio.to_thread``
    (which builds a future, a work item and a context copy, and takes two locks), paid once
    a round. It ends after ``IDLE_THREAD_SECONDS`` without a round."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._alive = False

    def run(self, loop: asyncio.AbstractEventLoop, fn: Any) -> asyncio.Future[Any]:
        done: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            self._queue.put((loop, fn, done))
            if not self._alive:
                self._alive = True
                threading.Thread(target=self._serve, name="jobsaga-run-log", daemon=True).start()
        return done

    def _serve(self) -> None:
        while True:
            try:
                loop, fn, done = self._queue.get(timeout=IDLE_THREAD_SECONDS)
            except queue.Empty:
                with self._lock:  # a round handed over meanwhile is served, not stranded
                    if self._queue.empty():
                        self._alive = False
                        return
                continue
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the round, which settles its parts
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits for it
                loop.call_soon_threadsafe(_deliver, done, result, error)


def _deliver(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)


def _write_params(parts: Sequence[Part]) -> dict[str, Any]:
    return {
        "runs": dumps([part.run for part in parts]),
        "steps": dumps([row for part in parts for row in part.steps]),
        "events": dumps([event for part in parts for event in part.events]),
    }


def _settle_openings(opening: list[Opening], opened: list[Row] | BaseException) -> None:
    """Hand each attempt its run's id, and whether its job had that run already."""
    if isinstance(opened, BaseException):
        for request in opening:
            if not request.done.done():
                request.done.set_exception(opened)
        return
    answers: dict[int, tuple[int, bool]] = {
        int(row["idx"]): (int(row["id"]), bool(row["found"]))
        for row in opened
        if row["idx"] is not None
    }
    # Runs created by the open (no idx) were inserted in request order: their ids, sorted,
    # follow the requests that have no answer yet.
    created = iter(sorted(int(row["id"]) for row in opened if row["idx"] is None))
    for index, request in enumerate(opening):
        answer = answers.get(index)
        if answer is None:
            answer = (next(created), False)
        if not request.done.done():
            request.done.set_result(answer)


_WRITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, LogWriter]] = (
    weakref.WeakKeyDictionary()
)
"""The writer of each event loop and engine, made on first use and gone with its loop: a
node's loop has one per app, and so does each ``asyncio.run`` of the test entry point."""


def writer_for(engine: Engine) -> LogWriter:
    """The run log writer of the running event loop for ``engine``."""
    writers = _WRITERS.setdefault(asyncio.get_running_loop(), {})
    writer = writers.get(id(engine))
    if writer is None or writer.engine is not engine:
        writer = writers[id(engine)] = LogWriter(engine)
    return writer
