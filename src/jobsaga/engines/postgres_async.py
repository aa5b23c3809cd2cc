"""The PostgreSQL engine's async side: connections per event loop, and running an insert's
steps on an async connection (the engine's own, or the caller's).

``await app.ainsert(...)`` runs on the caller's loop, with no thread: each event loop that
inserts gets its own few connections, opened on first use there (an async connection
belongs to the loop that opened it). They are kept for the next insert, up to the engine's
pool size per loop, and closed by ``App.close()``; a loop that has closed leaves idle
connections behind, which are closed when any loop next takes one, or at ``close()``.

psycopg_pool's ``AsyncConnectionPool`` is not used: its workers are tasks of the loop that
opened it, which ``asyncio.run`` cancels when it returns, leaving a pool that no other loop
can use; and its reconnect backoff is what the sync pool had to be kept from (see
``engines/postgres.py``). Here a connection is opened when one is needed, so an unreachable
server is ``DatabaseUnavailable`` at once, with its reason.
"""

from __future__ import annotations

import asyncio
import select
import threading
from collections.abc import AsyncIterator, Callable, Generator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from ..errors import DatabaseUnavailable
from .base import Row, Wake
from .postgres_copy import CopyIn


class _LoopConnections:
    """One loop's idle connections, and how many may be open at once."""

    def __init__(self, size: int) -> None:
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.slots = asyncio.Semaphore(size)
        self.closed = False
        """Set by ``close()``: a connection in use is closed when given back."""


class AsyncConnections:
    """Async connections to one database, kept per event loop (see the module's docstring)."""

    def __init__(
        self,
        url: str,
        size: int,
        options: Mapping[str, Any],
        configure: Callable[[psycopg.AsyncConnection[Any]], None],
        connect_error: Callable[[psycopg.Error], DatabaseUnavailable],
        cause: Callable[[psycopg.Error], BaseException | None],
    ) -> None:
        self.url = url
        self.size = size
        self.options = dict(options)
        self.configure = configure
        self.connect_error = connect_error
        self.cause = cause
        """The engine's: the driver's error to chain, none when it quotes the password."""
        self._loops: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
        self._lock = threading.Lock()

    def _for(self, loop: asyncio.AbstractEventLoop) -> _LoopConnections:
        with self._lock:
            found = self._loops.get(loop)
            if found is not None:
                return found
            gone = [other for other in self._loops if other.is_closed()]
            stale = [conn for other in gone for conn in self._loops.pop(other).idle]
            found = self._loops[loop] = _LoopConnections(self.size)
        for conn in stale:
            finish(conn)
        return found

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """An autocommit connection of the running loop, given back afterwards unless it is
        broken, inside a transaction (a cancelled statement) or the engine was closed."""
        mine = self._for(asyncio.get_running_loop())
        async with mine.slots:
            conn = self._idle(mine) or await self._connect()
            try:
                yield conn
            finally:
                self._give_back(mine, conn)

    def _idle(self, mine: _LoopConnections) -> psycopg.AsyncConnection[Any] | None:
        while True:
            with self._lock:
                if not mine.idle:
                    return None
                conn = mine.idle.pop()
            if quiet(conn):
                return conn
            finish(conn)  # the server said goodbye on it (restart, idle timeout): next

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True, **self.options)
        except psycopg.Error as exc:
            raise self._unreachable(exc) from self.cause(exc)
        self.configure(conn)
        return conn

    def _unreachable(self, exc: psycopg.Error) -> DatabaseUnavailable:
        """The engine's error for a connection that could not be made (the server's reason,
        the URL's password masked)."""
        return self.connect_error(exc)

    def _give_back(self, mine: _LoopConnections, conn: psycopg.AsyncConnection[Any]) -> None:
        reusable = not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE
        with self._lock:
            if reusable and not mine.closed:
                mine.idle.append(conn)
                return
        finish(conn)

    def close(self) -> None:
        """Close every idle connection, on every loop; those in use close when given back.
        The engine may be used again afterwards (it opens new ones)."""
        with self._lock:
            idle = [conn for mine in self._loops.values() for conn in mine.idle]
            for mine in self._loops.values():
                mine.closed = True
            self._loops.clear()
        for conn in idle:
            finish(conn)

    @property
    def open_count(self) -> int:
        """Idle connections kept, over all loops (for tests: nothing leaks)."""
        with self._lock:
            return sum(len(mine.idle) for mine in self._loops.values())


def finish(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close an async connection from anywhere, without awaiting: what its ``close()`` does
    for a connection that is not in a pool."""
    conn.pgconn.finish()


def quiet(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Whether an idle connection has nothing waiting to be read. An idle connection the
    server dropped has its goodbye waiting (an error, then end of file); no round trip."""
    if conn.closed:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            return not poller.poll(0)
        return not select.select([conn.fileno()], [], [], 0)[0]  # pragma: no cover
    except (OSError, ValueError, psycopg.Error):
        return False


async def run_steps(
    steps: Generator[Any, Any, Any],
    conn: psycopg.AsyncConnection[Any],
    notify: Callable[[Mapping[str, Any]], tuple[str, Mapping[str, Any]]],
) -> Any:
    """Run an insert's steps (``Engine.insert_steps``) on ``conn``: statements answered with
    their rows as dicts, COPY steps written chunk by chunk, the wake-up as ``notify`` makes
    it. Returns what the steps return."""
    reply: Any = None
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as done:
            return done.value
        reply = None
        if isinstance(step, Wake):
            await conn.execute(*notify(step.payload))
        elif isinstance(step, CopyIn):
            async with conn.cursor() as cur, cur.copy(step.sql) as copy:
                for chunk in step.data(conn.info.encoding):
                    await copy.write(chunk)
        else:
            reply = await fetch_rows(conn, *step)


async def fetch_rows(
    conn: psycopg.AsyncConnection[Any], sql: str, params: Mapping[str, Any] | None = None
) -> list[Row]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)  # type: ignore[arg-type]
        return list(await cur.fetchall()) if cur.description is not None else []
