"""The run log writer: one group commit for every run on an event loop.

Each run's log (:class:`~.runlog.SqlRunLog`) records transitions without waiting and hands
what it has not written yet to the writer of its event loop and engine. The writer writes in
rounds, one at a time: a round takes what every run has pending (its changed step rows, new
events and run row) and the runs whose attempts just started, and writes them in one
transaction: one statement each on PostgreSQL (``open_runs``, ``write_logs``), one
``BEGIN IMMEDIATE`` on SQLite. A step waits for the outcomes it depends on to be durable, so
a chain of steps pays one round per step; the sagas a node runs side by side share those
rounds, so ten sagas cost about one commit per round, not ten, and one hop to a database
thread.

A round that fails is split, each run's part written alone, so a run whose data the database
refuses fails alone (its log gives up and its run stops) while the others go on; each log
retries its own failing writes (:mod:`.runlog`). A run's log has at most one write under way,
so its writes land in the order it recorded them.
"""

from __future__ import annotations

import asyncio
import contextvars
import re
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

_STATEMENT_END = re.compile(r";[ \t]*$", re.MULTILINE)


def statements(sql: str) -> tuple[str, ...]:
    """A named query as the statements it holds, run in order in one transaction: one on
    PostgreSQL, several on SQLite (which writes one table a statement), each ending with
    ``;`` at the end of a line."""
    return tuple(part.strip() for part in _STATEMENT_END.split(sql) if part.strip())


@dataclass(slots=True)
class Opening:
    """A run to create in the next round; its attempt awaits ``done``."""

    row: dict[str, Any]
    done: asyncio.Future[int | None]
    """The new run's id, or None when the job has a run to take up (succeeded: final;
    unfinished: resumed), which the attempt then opens alone."""


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
        self._task: asyncio.Task[None] | None = None

    def submit(self, log: SqlRunLog) -> None:
        """``log`` has something to write: the next round takes it."""
        self._logs[id(log)] = log
        self._start()

    def open(self, row: dict[str, Any]) -> asyncio.Future[int | None]:
        """Create a run (``row``: the ``open_runs`` request) in the next round."""
        done: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._opening.append(Opening(row, done))
        self._start()
        return done

    def _start(self) -> None:
        if self._task is None or self._task.done():
            # A context of its own: the rounds serve every run, whichever asked first.
            self._task = asyncio.get_running_loop().create_task(
                self._rounds(), name="jobsaga-run-log-writer", context=contextvars.Context()
            )

    async def _rounds(self) -> None:
        while self._logs or self._opening:
            for _ in range(GATHER_TURNS):
                await asyncio.sleep(0)
            opening, self._opening = self._opening, []
            logs, self._logs = list(self._logs.values()), {}
            writes = [(log, part) for log in logs if (part := log.take()) is not None]
            if not opening and not writes:
                continue
            try:
                opened, failures = await asyncio.to_thread(
                    self._round, [o.row for o in opening], [part for _, part in writes]
                )
            except BaseException as exc:  # the loop is closing (cancelled): nobody will wait
                opened, failures = exc, dict.fromkeys(range(len(writes)), exc)
                for index, (log, part) in enumerate(writes):
                    log.settle(part, failures[index])
                _settle_openings(opening, opened)
                raise
            for index, (log, part) in enumerate(writes):
                log.settle(part, failures.get(index))
            _settle_openings(opening, opened)

    def _round(
        self, opening: list[dict[str, Any]], parts: list[Part]
    ) -> tuple[list[Row] | BaseException, dict[int, BaseException]]:
        """One round, in a database thread: the runs to create and the parts to write, in
        one transaction. Returns the ``open_runs`` rows (or the error that failed them: each
        attempt then opens its run alone) and the error of each part that failed, by index.
        A failed round is split: each part is written alone, so only the parts that fail on
        their own fail."""
        try:
            return self._execute(opening, parts), {}
        except Exception as exc:
            if len(opening) + len(parts) <= 1:
                return (exc if opening else []), ({0: exc} if parts else {})
            error: Exception = exc
        failures: dict[int, BaseException] = {}
        for index, part in enumerate(parts):
            try:
                self._execute([], [part])
            except Exception as exc:
                failures[index] = exc
        return (error if opening else []), failures

    def _execute(self, opening: list[dict[str, Any]], parts: Sequence[Part]) -> list[Row]:
        work: list[tuple[str, dict[str, Any], bool]] = []
        if opening:
            params = {"runs": dumps([{**row, "idx": i} for i, row in enumerate(opening)])}
            work += [(sql, params, True) for sql in self._open_sql]
        if parts:
            params = {
                "runs": dumps([part.run for part in parts]),
                "steps": dumps([row for part in parts for row in part.steps]),
                "events": dumps([event for part in parts for event in part.events]),
            }
            work += [(sql, params, False) for sql in self._write_sql]
        if len(work) == 1:  # one statement: its own transaction, without BEGIN and COMMIT
            return self.engine.execute_one(work[0][0], work[0][1])
        rows: list[Row] = []
        with self.engine.transaction() as tx:
            for sql, params, opens in work:
                found = tx.execute(sql, params)
                if opens:
                    rows += found
        return rows


def _settle_openings(opening: list[Opening], opened: list[Row] | BaseException) -> None:
    """Hand each attempt its new run's id (None: its job has a run to take up)."""
    if isinstance(opened, BaseException):
        for request in opening:
            if not request.done.done():
                request.done.set_exception(opened)
        return
    found = {int(row["idx"]) for row in opened if row["idx"] is not None}
    created = iter(sorted(int(row["id"]) for row in opened if row["idx"] is None))
    # Runs are inserted in request order, so their ids (sorted) follow the requests.
    for index, request in enumerate(opening):
        run_id = None if index in found else next(created, None)
        if not request.done.done():
            request.done.set_result(run_id)


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
