"""The embedded default: one SQLite file in WAL mode behind a single connection.

SQLite allows one writer at a time, so the engine holds one connection and serializes all
work on it with a lock; every write transaction starts with ``BEGIN IMMEDIATE`` so that two
processes sharing the file queue up on the busy timeout instead of failing mid-transaction.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from ..errors import ConfigError, MigrationError
from . import sql as sqlfiles
from .base import Clock, Engine, Row, WakeCallback, iter_statements, utcnow

BUSY_TIMEOUT_MS = 30_000


class _SqliteTx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        cursor = self.conn.execute(sql, dict(params or {}))
        if cursor.description is None:
            return []
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, values, strict=True)) for values in cursor.fetchall()]


class SqliteEngine(Engine):
    dialect = "sqlite"

    def __init__(self, path: str, clock: Clock = utcnow) -> None:
        super().__init__(clock)
        if path != ":memory:":
            folder = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(folder):
                raise ConfigError(f"SQLite database folder does not exist: {folder}")
        self.path = path
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=BUSY_TIMEOUT_MS / 1000,
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._conn = conn
        return self._conn

    @contextmanager
    def transaction(self, conn: Any = None) -> Iterator[_SqliteTx]:
        if conn is not None:
            raise ConfigError("inserting in the caller's transaction needs PostgreSQL")
        with self._lock:
            db = self._connection()
            if db.in_transaction:  # re-entered from inside a transaction of ours
                yield _SqliteTx(db)
                return
            db.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTx(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[_SqliteTx]:
        with self._lock:
            db = self._connection()
            if db.in_transaction:
                yield _SqliteTx(db)
                return
            db.execute("BEGIN DEFERRED")  # a snapshot for several reads, no write lock
            try:
                yield _SqliteTx(db)
            finally:
                db.execute("COMMIT")

    def time_param(self, value: datetime) -> float:
        return value.timestamp()

    def time_json(self, value: datetime) -> float:
        return value.timestamp()

    def time_value(self, value: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(float(value), UTC)

    def json_value(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def applied_migrations(self) -> list[str]:
        with self.read() as tx:
            exists = tx.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'jobsaga_migrations'"
            )
            if not exists:
                return []
            rows = tx.execute("SELECT version FROM jobsaga_migrations ORDER BY version")
        return [r["version"] for r in rows]

    def migrate(self) -> list[str]:
        applied: list[str] = []
        migrations = sqlfiles.load_migrations(f"{sqlfiles.__name__}.sqlite", "migrations")
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
            cursor = self._connection().execute(self.queries["has_available"], {"queue": queue})
            return cursor.fetchone() is not None

    def fetch(self, queue: str, limit: int, node: str) -> list[Any]:
        # A read first: an idle poll then costs no write lock, which other processes need.
        if not self.has_available(queue):
            return []
        return super().fetch(queue, limit, node)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
