"""PostgreSQL through psycopg 3: a connection pool for work, one more connection to LISTEN.

Fetching uses ``FOR UPDATE SKIP LOCKED`` so any number of nodes can claim jobs from one
table without ever handing the same job to two of them. Inserts and staging send one
``NOTIFY`` per transaction, which wakes idle queues on every node within milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from ..errors import ConfigError, DatabaseUnavailable, MigrationError
from ..job import Job, JobSpec
from ..serialization import dumps
from . import sql as sqlfiles
from .base import Clock, Engine, Row, WakeCallback, inserted_job, utcnow

log = logging.getLogger("jobsaga.engines.postgres")

MIGRATION_LOCK = 0x6A6F6273  # "jobs": serializes concurrent migrators on one database


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any], *, callers: bool = False) -> None:
        self.conn = conn
        self.callers = callers
        """The caller's own connection (``insert(conn=...)``), whose search_path is theirs."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description is not None else []


class PostgresEngine(Engine):
    dialect = "postgres"

    def __init__(self, url: str, clock: Clock = utcnow, *, pool_size: int = 10) -> None:
        super().__init__(clock)
        self._insert_and_notify = self.queries["insert_jobs_and_notify"].replace(
            "/* insert_jobs */", self.queries["insert_jobs"]
        )
        self.url = url
        self.pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._channel: str | None = None

    def _get_pool(self) -> ConnectionPool:
        with self._pool_lock:
            if self._pool is None:
                self._probe()
                pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    kwargs={"autocommit": False},
                    open=False,
                    name="jobsaga",
                )
                try:
                    pool.open(wait=True, timeout=10)
                except BaseException:
                    pool.close()  # else its workers keep retrying in the background
                    raise
                self._pool = pool
            return self._pool

    def _probe(self) -> None:
        """One direct connection first, so an unreachable server or a missing database is
        reported at once with the server's reason, not as a pool timeout 10 s later."""
        try:
            psycopg.connect(self.url, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {reason}") from None

    @property
    def channel(self) -> str:
        """The NOTIFY channel, one per schema so apps in different schemas stay apart."""
        if self._channel is None:
            with self.transaction() as tx:
                return self._channel_in(tx)
        return self._channel

    def _channel_in(self, tx: Any) -> str:
        # Looked up on the transaction's own pooled connection: taking a second one while
        # holding one deadlocks a pool whose connections are all held by inserting threads.
        # A caller's connection may have another search_path: the engine's schema decides.
        if getattr(tx, "callers", False):
            return self.channel
        if self._channel is None:
            schema = tx.execute("SELECT current_schema() AS s")[0]["s"]
            digest = hashlib.sha1(str(schema).encode()).hexdigest()[:12]
            self._channel = f"jobsaga_{digest}"
        return self._channel

    @contextmanager
    def transaction(self, conn: Any = None) -> Iterator[_PgTx]:
        if conn is not None:
            # The caller's own transaction: it commits or rolls back, not us.
            yield _PgTx(check_callers_connection(conn), callers=True)
            return
        with self._get_pool().connection() as pooled, pooled.transaction():
            yield _PgTx(pooled)

    def execute_one(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # In autocommit the statement is its own transaction, which saves the BEGIN and
        # COMMIT round trips: about 1.7x more single-statement transactions per second.
        with self._get_pool().connection() as conn:
            conn.autocommit = True
            try:
                return _PgTx(conn).execute(sql, params)
            finally:
                with suppress(psycopg.Error):  # a broken connection is the pool's to drop
                    conn.autocommit = False

    def time_param(self, value: datetime) -> datetime:
        return value

    def time_json(self, value: datetime) -> str:
        return value.isoformat()

    def time_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def json_value(self, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    def applied_migrations(self) -> list[str]:
        with self.transaction() as tx:
            exists = tx.execute("SELECT to_regclass('jobsaga_migrations') AS t")[0]["t"]
            if exists is None:
                return []
            rows = tx.execute("SELECT version FROM jobsaga_migrations ORDER BY version")
        return [r["version"] for r in rows]

    def migrate(self) -> list[str]:
        applied: list[str] = []
        migrations = sqlfiles.load_migrations(f"{sqlfiles.__name__}.postgres", "migrations")
        with self.transaction() as tx:
            tx.execute("SELECT pg_advisory_xact_lock(%(key)s)", {"key": MIGRATION_LOCK})
            tx.execute(
                "CREATE TABLE IF NOT EXISTS jobsaga_migrations "
                "(version TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
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
                tx.execute(script)
                tx.execute(
                    "INSERT INTO jobsaga_migrations (version) VALUES (%(v)s)", {"v": version}
                )
                applied.append(version)
        return applied

    def insert(self, specs: Sequence[JobSpec], conn: Any = None) -> list[Job[Any]]:
        """Plain jobs outside a caller's transaction are one autocommitted statement (insert
        and NOTIFY together); unique jobs and ``conn=`` take the transactional path."""
        if not specs or conn is not None or any(spec.unique_key is not None for spec in specs):
            return super().insert(specs, conn)
        now = self.clock()
        rows = [self._spec_row(i, spec, now) for i, spec in enumerate(specs)]
        params = {"rows": dumps(rows), "channel": self.channel}
        ids = sorted(int(row["id"]) for row in self.execute_one(self._insert_and_notify, params))
        # ids follow the rows' order (ORDER BY idx); the rest of each job is its spec
        return [inserted_job(spec, job_id, now) for spec, job_id in zip(specs, ids, strict=True)]

    def notify(self, tx: Any, payload: Mapping[str, Any]) -> None:
        tx.execute(
            self.queries["notify"],
            {
                "channel": self._channel_in(tx),
                "payload": json.dumps(payload, separators=(",", ":")),
            },
        )

    def listen(self, callback: WakeCallback) -> Callable[[], None]:
        """Run a thread that LISTENs and forwards each payload; reconnects after errors."""
        stop = threading.Event()
        channel = self.channel

        def loop() -> None:
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        conn.execute(f'LISTEN "{channel}"')
                        callback({"reconnected": True})
                        while not stop.is_set():
                            for note in conn.notifies(timeout=0.5):
                                try:
                                    callback(json.loads(note.payload))
                                except Exception:  # a bad payload must not stop listening
                                    log.exception("bad notification payload")
                except psycopg.Error as exc:
                    log.warning("listener connection lost (%s); reconnecting", type(exc).__name__)
                    stop.wait(1.0)

        thread = threading.Thread(target=loop, name="jobsaga-listen", daemon=True)
        thread.start()

        def stop_listening() -> None:
            stop.set()
            thread.join(timeout=5)

        return stop_listening

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None


def check_callers_connection(conn: Any) -> psycopg.Connection[Any]:
    """The engine is synchronous: it can run its statements on a caller's sync connection only.
    An ``AsyncConnection`` would fail deep in psycopg with an unrelated TypeError."""
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigError(
            "conn= takes a sync psycopg.Connection; jobsaga's engine cannot drive a "
            "psycopg.AsyncConnection. Open a sync connection for the transactional insert, "
            "or insert once your async transaction has committed"
        )
    if not isinstance(conn, psycopg.Connection):
        raise ConfigError(f"conn= takes a psycopg.Connection, got {type(conn).__name__}")
    return conn
