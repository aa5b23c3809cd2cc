"""The embedded default: one SQLite file in WAL mode behind a single connection.

SQLite allows one writer at a time, so the engine holds one connection and serializes all
work on it with a lock; every write transaction starts with ``BEGIN IMMEDIATE`` so that two
processes sharing the file queue up on the busy timeout instead of failing mid-transaction.
Reads that poll use :meth:`SqliteEngine.read` (``BEGIN DEFERRED``), which takes no write lock.

Driver errors never leave the engine raw: each arrives as a
:class:`~jobsaga.errors.DatabaseError` naming the file and the cause in one line
(:class:`~jobsaga.errors.DatabaseUnavailable` when retrying later may work: locked, read-only,
cannot be opened, disk full or failing; :class:`~jobsaga.errors.DataRejected` when the data
itself was refused). A file the engine creates is readable by its owner only (0600), and so
are the ``-wal`` and ``-shm`` files SQLite creates beside it with the same mode: job args may
be private.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError, DatabaseError, DatabaseUnavailable, DataRejected, MigrationError
from . import sql as sqlfiles
from .base import (
    CallerConnection,
    Clock,
    Engine,
    MigrationListener,
    Row,
    WakeCallback,
    iter_statements,
    reporting,
    utcnow,
)

log = logging.getLogger("jobsaga.engines.sqlite")

BUSY_TIMEOUT = 30.0
"""Seconds a transaction waits for another process's write lock before giving up."""

FILE_MODE = 0o600

# SQLite's primary result codes (https://sqlite.org/rescode.html), by what they mean to us.
_LOCKED = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY = 8
_IOERR = 10
_FULL = 13
_CANTOPEN = 14
_UNAVAILABLE = {*_LOCKED, 7, _READONLY, _IOERR, _FULL, _CANTOPEN, 15}  # + NOMEM, PROTOCOL
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_REJECTED = {18, 19, 20, 25}  # SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_RANGE


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection, engine: SqliteEngine) -> None:
        self.conn = conn
        self.engine = engine

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        try:
            cursor = self.conn.execute(sql, dict(params or {}))
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]
        except (sqlite3.Error, OverflowError) as exc:
            raise self.engine.error(exc) from exc


class SqliteEngine(Engine):
    dialect = "sqlite"
    own_queries = frozenset({"has_available"})
    json_as_text = True
    hears_other_processes = False

    def __init__(self, path: str, clock: Clock = utcnow) -> None:
        super().__init__(clock)
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConfigError(f"SQLite database folder does not exist: {folder}")
        self.path = path
        self.busy_timeout = BUSY_TIMEOUT
        """Read when the connection opens; a test may shorten it before the first use."""
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._depth = 0
        """Transactions of ours open on the connection, counted explicitly: only the thread
        holding ``_lock`` (an RLock) touches it. A transaction left open by a failed COMMIT
        must be rolled back, never joined as if we had re-entered our own."""

    @property
    def shown_path(self) -> str:
        return self.path if self.path == ":memory:" else os.path.abspath(self.path)

    def error(self, exc: BaseException) -> DatabaseError:
        """The jobsaga error for a driver error: one line naming the file and the cause."""
        where = f"SQLite database {self.shown_path}"
        reason = " ".join(str(exc).split()) or type(exc).__name__
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        if isinstance(exc, OverflowError):
            return DataRejected(f"{where} refused a value: {reason}")
        if primary in _LOCKED:
            return DatabaseUnavailable(
                f"{where} is locked ({reason}): another connection held it for longer than "
                f"the busy timeout of {self.busy_timeout:g}s"
            )
        if primary == _READONLY:
            return DatabaseUnavailable(
                f"{where} is read-only ({reason}): jobsaga writes the file, its -wal and -shm "
                "files and its folder; check their owner and permissions"
            )
        if primary == _CANTOPEN:
            return DatabaseUnavailable(
                f"{where} cannot be opened ({reason}): check that its folder exists and that "
                "the file and folder are readable and writable"
            )
        if primary == _FULL:
            return DatabaseUnavailable(f"{where}: the disk is full ({reason})")
        if primary == _IOERR:
            return DatabaseUnavailable(f"{where}: the disk failed a read or write ({reason})")
        if primary in _UNAVAILABLE:
            return DatabaseUnavailable(f"{where} is unavailable ({reason})")
        if primary in _CORRUPT:
            return DatabaseError(
                f"{where} is not a usable database ({reason}): the file is corrupt, truncated "
                "or not SQLite; restore it from a backup, or point the URL at another file"
            )
        if primary in _REJECTED or isinstance(exc, (sqlite3.IntegrityError, sqlite3.DataError)):
            return DataRejected(f"{where} refused the data: {reason}")
        if "malformed JSON" in reason:
            return DataRejected(f"{where} refused the data: {reason}")
        return DatabaseError(f"{where}: {reason}")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._create_private_file()
            conn: sqlite3.Connection | None = None
            try:
                conn = sqlite3.connect(
                    self.path,
                    isolation_level=None,
                    check_same_thread=False,
                    timeout=self.busy_timeout,
                )
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA foreign_keys = ON")
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                raise self.error(exc) from exc
            self._conn = conn
        return self._conn

    def _create_private_file(self) -> None:
        """Create a missing database file with mode 0600 (SQLite would use 0644): its
        ``-wal`` and ``-shm`` files take the database file's mode."""
        if self.path == ":memory:" or self.path.startswith("file:"):
            return
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except FileExistsError:
            return
        except OSError as exc:
            raise DatabaseUnavailable(
                f"SQLite database {self.shown_path} cannot be created ({exc.strerror}): "
                "check that its folder is writable"
            ) from exc
        os.close(fd)

    def _start(self, db: sqlite3.Connection, begin: str) -> None:
        if db.in_transaction:  # left open by a COMMIT or ROLLBACK that failed: never join it
            log.warning("%s: rolling back a transaction left open", self.shown_path)
            self._rollback(db)
            db = self._connection()
        try:
            db.execute(begin)
        except sqlite3.Error as exc:
            raise self.error(exc) from exc

    def _commit(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            # A failed COMMIT (a deferred constraint, a busy or full disk) can leave the
            # transaction open: roll it back so the next caller starts afresh.
            self._rollback(db)
            raise self.error(exc) from exc

    def _rollback(self, db: sqlite3.Connection) -> None:
        """Roll back if a transaction is open (SQLite rolls back by itself on some errors);
        a connection that cannot even roll back is closed, and the next use reopens it."""
        if not db.in_transaction:
            return
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            log.warning("%s: rollback failed; reopening the connection", self.shown_path)
            self._drop_connection()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def transaction(self, conn: CallerConnection | None = None) -> Iterator[_SqliteTx]:
        if conn is not None:
            raise ConfigError("inserting in the caller's transaction needs PostgreSQL")
        yield from self._scope("BEGIN IMMEDIATE")

    @contextmanager
    def read(self) -> Iterator[_SqliteTx]:
        yield from self._scope("BEGIN DEFERRED")  # a snapshot for several reads, no write lock

    def _scope(self, begin: str) -> Iterator[_SqliteTx]:
        """One transaction of ours started by ``begin``, or, re-entered from inside one, that
        one joined (the depth counter, not ``in_transaction``, tells: a transaction left open
        by a failed COMMIT is not ours to join)."""
        with self._lock:
            db = self._connection()
            if self._depth:
                yield from self._nested(db)
                return
            self._start(db, begin)
            db = self._connection()
            self._depth = 1
            try:
                yield _SqliteTx(db, self)
            except BaseException:
                self._depth = 0
                self._rollback(db)
                raise
            self._depth = 0
            self._commit(db)

    def _nested(self, db: sqlite3.Connection) -> Iterator[_SqliteTx]:
        self._depth += 1
        try:
            yield _SqliteTx(db, self)
        finally:
            self._depth -= 1

    def json_path(self, keys: Sequence[str]) -> str:
        """``json_extract``'s path: each key quoted (``$."customer"."country"``)."""
        return "$" + "".join('."' + key.replace('"', '\\"') + '"' for key in keys)

    def time_param(self, value: datetime) -> float:
        return value.timestamp()

    def list_param(self, values: Sequence[Any]) -> str:
        return json.dumps(list(values))

    def time_json(self, value: datetime) -> float:
        return value.timestamp()

    def time_value(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    def applied_migrations(self) -> list[str]:
        with self.read() as tx:
            exists = tx.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobsaga_migrations'"
            )
            if not exists:
                return []
            rows = tx.execute("SELECT version FROM jobsaga_migrations ORDER BY version")
        return [r["version"] for r in rows]

    def migrate(self, on_migration: MigrationListener | None = None) -> list[str]:
        applied: list[str] = []
        migrations = sqlfiles.load_migrations(self.dialect)
        with self.transaction() as tx:
            tx.execute(
                "CREATE TABLE IF NOT EXISTS jobsaga_migrations "
                "(version TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {r["version"] for r in tx.execute("SELECT version FROM jobsaga_migrations")}
            known = {version for version, _ in migrations}
            if done - known:
                raise MigrationError(
                    f"database has migrations this jobsaga does not know: {sorted(done - known)}"
                )
            for version, script in migrations:
                if version in done:
                    continue
                with reporting(version, on_migration):
                    for statement in iter_statements(script):
                        tx.execute(statement)
                tx.execute(
                    "INSERT INTO jobsaga_migrations (version, applied_at) VALUES (:v, :at)",
                    {"v": version, "at": self.clock().timestamp()},
                )
                applied.append(version)
        return applied

    def notify(self, tx: Any, payload: Mapping[str, Any]) -> None:
        """Other processes on the file find new work by polling; in-process wake-ups go
        through the app, so there is nothing to send here."""

    def listen(self, callback: WakeCallback) -> Callable[[], None]:
        return lambda: None

    def has_available(self, queue: str) -> bool:
        with self._lock:
            db = self._connection()
            if not self._depth and db.in_transaction:  # never read inside a stale one
                self._rollback(db)
                db = self._connection()
            rows = _SqliteTx(db, self).execute(self.queries["has_available"], {"queue": queue})
            return bool(rows)

    def fetch(self, queue: str, limit: int, node: str) -> list[Any]:
        # A read first: an idle poll then costs no write lock, which other processes need.
        if not self.has_available(queue):
            return []
        return super().fetch(queue, limit, node)

    def close(self) -> None:
        with self._lock:
            self._drop_connection()
