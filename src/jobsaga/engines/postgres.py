"""PostgreSQL through psycopg 3: a connection pool for work, one more connection to LISTEN.

Fetching uses ``FOR UPDATE SKIP LOCKED`` so any number of nodes can claim jobs from one
table without ever handing the same job to two of them. Inserts and staging send one
``NOTIFY`` per transaction, which wakes idle queues on every node within milliseconds.

Inserts: one plain job is one autocommitted statement (insert and NOTIFY); a few hundred are
one statement over a JSON array; more are written with COPY (``engines/postgres_copy.py``).
``ainsert`` runs the same steps on async connections of the caller's loop, or on the caller's
own ``AsyncConnection`` (``engines/postgres_async.py``).

Outages: psycopg errors never leave this module raw; :func:`database_error` sorts them into
jobsaga's tree (``DatabaseUnavailable``, ``DataRejected``, ``DatabaseError``), the driver's
error chained. The pool is never left to find its own way back through psycopg_pool's
reconnect backoff (1, 2, 4, 8... s: one insert blocked 29 s after a 15 s outage). A pooled
connection is looked at before use (an idle one the server dropped is readable). Once a
connection is found dead its pool is closed (no reconnect attempts behind, and callers waiting
for one of its connections are released) and the next caller probes the server with one
direct connection: if it refuses, that caller gets ``DatabaseUnavailable`` with the server's
reason at once; if it answers, a fresh pool is opened at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolClosed

from ..errors import (
    ConfigError,
    DatabaseError,
    DatabaseUnavailable,
    DataRejected,
    MigrationError,
)
from ..job import Job, JobSpec, JobState
from ..redaction import redact_text, url_secrets
from ..serialization import dumps
from . import sql as sqlfiles
from .base import (
    Ack,
    AsyncCallerConnection,
    CallerConnection,
    Clock,
    Engine,
    MigrationListener,
    Row,
    Steps,
    Wake,
    WakeCallback,
    birth,
    in_fetch_order,
    reporting,
    utcnow,
    writable,
)
from .postgres_async import AsyncConnections, fetch_rows, run_steps
from .postgres_copy import COPY_MIN, CopyIn, encode_json, new_job, plain_rows, staged_rows

log = logging.getLogger("jobsaga.engines.postgres")

MIGRATION_LOCK = 0x6A6F6273  # "jobs": serializes concurrent migrators on one database
CONNECT_TIMEOUT = 5
"""Seconds a new connection may take (libpq counts at least 2), unless the URL sets its own
``connect_timeout``. A server that is down refuses at once; this bounds a host that does not
answer at all."""
POOL_TIMEOUT = 30.0
"""Seconds a caller waits for a free pooled connection while the server is up (every
connection busy); an outage is reported before that, by the probe."""
LISTEN_RETRY = (0.05, 0.5)
"""The LISTEN connection's reconnect delay: first, then doubling up to the cap, so a node
hears of new jobs within about half a second of the server's return."""
LISTEN_CHECK = 0.05
"""How often the listener thread looks up from its wait to see whether it was told to stop.
A node's stop waits for it (so no wake-up reaches a stopped node); an idle wait costs one
select() call, so 20 a second is free, where 0.5 s added that much to every node's stop."""


class _PgTx:
    def __init__(self, conn: psycopg.Connection[Any], *, callers: bool = False) -> None:
        self.conn = conn
        self.callers = callers
        """The caller's own connection (``insert(conn=...)``), whose search_path is theirs."""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)  # type: ignore[arg-type]
            return list(cur.fetchall()) if cur.description is not None else []

    def copy(self, step: CopyIn) -> None:
        """``COPY ... FROM STDIN``, sending each chunk as it is produced."""
        with self.conn.cursor() as cur, cur.copy(step.sql) as copy:
            for chunk in step.data(self.conn.info.encoding):
                copy.write(chunk)


class PostgresEngine(Engine):
    dialect = "postgres"
    own_queries = frozenset(
        {
            "insert_job_and_notify",
            "insert_jobs_and_notify",
            "reserve_job_ids",
            "copy_jobs",
            "create_job_staging",
            "copy_job_staging",
            "insert_from_staging",
            "drop_job_staging",
            "notify",
        }
    )

    def __init__(self, url: str, clock: Clock = utcnow, *, pool_size: int = 10) -> None:
        super().__init__(clock)
        self._insert_and_notify = self.queries["insert_jobs_and_notify"].replace(
            "/* insert_jobs */", self.queries["insert_jobs"]
        )
        self.url = url
        self.pool_size = pool_size
        self._pool: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._down: tuple[float, str, BaseException | None] | None = None
        """The last failed probe (when it ended, its message, its cause) while down."""
        self._channel: str | None = None
        given = url_connect_timeout(url)
        self._connect: dict[str, Any] = (
            {} if given is not None else {"connect_timeout": CONNECT_TIMEOUT}
        )
        """Options for every new connection: the URL's own connect_timeout wins."""
        self._open_timeout = 2.0 * (CONNECT_TIMEOUT if given is None else given) or 30.0
        self._async = AsyncConnections(
            url, pool_size, self._connect, _configure_async, self._connect_error, self._cause
        )
        """The async connections ``ainsert`` uses, per event loop."""

    def _get_pool(self) -> ConnectionPool:
        """The pool, opened on first use and again after a connection was found dead (which
        retires the pool: see :meth:`_retire`).

        Either time the server is probed first with one direct connection, so that an
        unreachable server is ``DatabaseUnavailable`` at once with its reason rather than a
        pool timeout later. Callers that queued behind a probe which failed after they
        arrived share its answer instead of probing one after another."""
        arrived = time.monotonic()
        with self._pool_lock:
            if self._pool is not None:
                return self._pool
            if self._down is not None and self._down[0] >= arrived:
                raise DatabaseUnavailable(self._down[1]) from self._down[2]
            try:
                self._probe()
                fresh = self._open_pool()
            except DatabaseUnavailable as exc:
                if self._down is None:
                    log.warning("%s", exc)
                self._down = (time.monotonic(), str(exc), exc.__cause__)
                raise
            if self._down is not None:
                log.warning("PostgreSQL is reachable again; connections renewed")
            self._pool, self._down = fresh, None
        return fresh

    def _open_pool(self) -> ConnectionPool:
        pool = ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.pool_size,
            # Autocommit: a transaction is an explicit BEGIN/COMMIT (transaction()), and a
            # single statement needs no mode switch to be its own (execute_one).
            kwargs={"autocommit": True, **self._connect},
            configure=_configure,
            timeout=POOL_TIMEOUT,
            open=False,
            name="jobsaga",
        )
        try:
            pool.open(wait=True, timeout=self._open_timeout)
        except psycopg.Error as exc:
            pool.close()  # else its workers keep retrying in the background
            raise self._connect_error(exc) from self._cause(exc)
        except BaseException:
            pool.close()
            raise
        return pool

    def _probe(self) -> None:
        """One direct connection, so an unreachable server or a missing database is
        reported at once with the server's reason, not as a pool timeout later."""
        try:
            psycopg.connect(self.url, **self._connect).close()
        except psycopg.Error as exc:
            raise self._connect_error(exc) from self._cause(exc)

    def _connect_error(self, exc: psycopg.Error) -> DatabaseUnavailable:
        """The server's reason, with the URL's password masked: libpq quotes a malformed URL
        back, password included, in its error."""
        text = redact_text(reason(exc), url_secrets(self.url))
        return DatabaseUnavailable(f"cannot connect to PostgreSQL: {text}")

    def _cause(self, exc: psycopg.Error) -> psycopg.Error | None:
        """The driver's error to chain, unless it quotes the password (then none is chained,
        so no traceback shows it)."""
        secrets = url_secrets(self.url)
        return None if secrets and redact_text(str(exc), secrets) != str(exc) else exc

    def _retire(self, pool: ConnectionPool) -> None:
        """A connection of ``pool`` died, so the others may have too: the next caller probes
        and opens a fresh pool. The old one is closed at once, which stops its reconnect
        attempts and sends its waiting callers back to probe too (they would otherwise wait
        for a connection it may never make); its connections in use close when returned."""
        with self._pool_lock:
            if self._pool is not pool:
                return  # already retired
            self._pool = None
        _close_soon(pool)

    def _checkout(self) -> tuple[ConnectionPool, psycopg.Connection[Any]]:
        """A live pooled connection, or ``DatabaseUnavailable`` without waiting out a pool
        timeout when the server is down."""
        for _ in range(3):
            pool = self._get_pool()
            try:
                conn = pool.getconn()
            except PoolClosed:
                continue  # renewed or closed by another caller meanwhile: ask again
            except psycopg.Error as exc:  # PoolTimeout: every connection busy for so long
                raise DatabaseUnavailable(
                    f"no PostgreSQL connection came free within {POOL_TIMEOUT:g} s "
                    f"(pool_size={self.pool_size}): {reason(exc)}"
                ) from exc
            if _usable(conn):
                return pool, conn
            self._retire(pool)
            conn.close()
            pool.putconn(conn)  # closed: the pool drops it
        raise DatabaseUnavailable("PostgreSQL keeps dropping new connections")

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool, conn = self._checkout()
        try:
            yield conn
        finally:
            if conn.broken or conn.closed:
                self._retire(pool)
            pool.putconn(conn)

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
            return self._set_channel(tx.execute("SELECT current_schema() AS s")[0]["s"])
        return self._channel

    def _set_channel(self, schema: Any) -> str:
        digest = hashlib.sha1(str(schema).encode()).hexdigest()[:12]
        self._channel = f"jobsaga_{digest}"
        return self._channel

    @contextmanager
    def transaction(self, conn: CallerConnection | None = None) -> Iterator[_PgTx]:
        if conn is not None:
            # The caller's own transaction: it commits or rolls back, not us. A connection
            # in autocommit has none: ours is then one transaction of its own (an insert of
            # many jobs is all or nothing, and a staging table lives until its end).
            callers = check_callers_connection(conn)
            with translated(callers):
                if _between_transactions(callers):
                    with callers.transaction():
                        yield _PgTx(callers, callers=True)
                else:
                    yield _PgTx(callers, callers=True)
            return
        # translated() outside transaction(): a failed COMMIT is translated too
        with self._connection() as pooled, translated(pooled), pooled.transaction():
            yield _PgTx(pooled)

    def execute_one(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        # In autocommit (every pooled connection's mode) the statement is its own
        # transaction, which saves the BEGIN and COMMIT round trips: about 1.7x more
        # single-statement transactions per second.
        with self._connection() as conn, translated(conn):
            return _PgTx(conn).execute(sql, params)

    def time_param(self, value: datetime) -> datetime:
        return value

    def list_param(self, values: Sequence[Any]) -> list[Any]:
        return list(values)

    def time_json(self, value: datetime) -> str:
        return value.isoformat()

    def time_value(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.astimezone(UTC)  # type: ignore[no-any-return]

    def applied_migrations(self) -> list[str]:
        with self.transaction() as tx:
            exists = tx.execute("SELECT to_regclass('jobsaga_migrations') AS t")[0]["t"]
            if exists is None:
                return []
            rows = tx.execute("SELECT version FROM jobsaga_migrations ORDER BY version")
        return [r["version"] for r in rows]

    def migrate(self, on_migration: MigrationListener | None = None) -> list[str]:
        applied: list[str] = []
        migrations = sqlfiles.load_migrations(self.dialect)
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
                with reporting(version, on_migration):
                    tx.execute(script)
                tx.execute(
                    "INSERT INTO jobsaga_migrations (version) VALUES (%(v)s)", {"v": version}
                )
                applied.append(version)
        return applied

    # --- insert ---------------------------------------------------------------------------

    def insert(
        self, specs: Sequence[JobSpec], conn: CallerConnection | None = None
    ) -> list[Job[Any]]:
        """Plain jobs outside a caller's transaction, fewer than COPY pays for, are one
        autocommitted statement (insert and NOTIFY together); the rest take a transaction
        (the caller's with ``conn``) through :meth:`insert_in`."""
        if not specs:
            return []
        if conn is None and self._at_once(specs):
            now = self.clock()
            rows = self.execute_one(*self._at_once_statement(specs, now, self.channel))
            return _at_once_jobs(specs, rows, now)
        with self.transaction(conn) as tx:
            return self.insert_in(tx, specs)

    def insert_in(self, tx: Any, specs: Sequence[JobSpec]) -> list[Job[Any]]:
        """The shared steps (``Engine.insert_steps``), with COPY for bulk rows."""
        channel = self._channel_in(tx)
        steps = self.insert_steps(specs, self.clock())
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]
            reply = None
            if isinstance(step, Wake):
                tx.execute(*self._notify_statement(channel, step.payload))
            elif isinstance(step, CopyIn):
                tx.copy(step)
            else:
                reply = tx.execute(*step)

    hot_path_on_loop = True

    async def afetch(self, queue: str, limit: int, node: str) -> list[Job[Any]]:
        if limit <= 0:
            return []
        params = self.fetch_params(queue, limit, node)
        async with self._async.connection() as conn:
            with translated(conn):
                rows = await fetch_rows(conn, self.queries["fetch_jobs"], params)
        jobs, bad = self.decode_rows(rows)  # the claim has committed: none may be stranded
        if bad:  # rare: a row written by hand or by a broken client; off the loop
            await asyncio.to_thread(self.discard_undecodable, bad, node)
        return in_fetch_order(jobs)

    async def aack(self, acks: Sequence[Ack]) -> set[int]:
        if any(a.inserts for a in acks):  # follow-up jobs: the insert's own transaction
            return await asyncio.to_thread(self.ack, acks)
        if not acks:
            return set()
        params = self.ack_params(writable(acks))
        async with self._async.connection() as conn:
            with translated(conn):
                rows = await fetch_rows(conn, self.queries["ack_jobs"], params)
        return {int(r["id"]) for r in rows}

    async def ainsert(
        self,
        specs: Sequence[JobSpec],
        conn: AsyncCallerConnection | CallerConnection | None = None,
    ) -> list[Job[Any]]:
        """:meth:`insert` on the running loop, without a thread: on an async connection of
        this loop, or in the caller's transaction on their ``AsyncConnection``, where the
        NOTIFY is sent too (delivered when they commit). A sync ``conn`` is driven by the sync
        engine in a thread, as it must not block the loop."""
        if conn is not None and not isinstance(conn, psycopg.AsyncConnection):
            check_callers_connection(conn)
            return await asyncio.to_thread(self.insert, specs, conn)
        if not specs:
            return []
        if conn is not None:  # the caller's transaction (see transaction())
            channel = await self._achannel()
            with translated(conn):
                if _between_transactions(conn):
                    async with conn.transaction():
                        return await self._arun(conn, specs, channel)  # type: ignore[no-any-return]
                return await self._arun(conn, specs, channel)  # type: ignore[no-any-return]
        async with self._async.connection() as aconn:
            with translated(aconn):
                channel = self._channel or await self._achannel(aconn)
                now = self.clock()
                if self._at_once(specs):
                    sql, params = self._at_once_statement(specs, now, channel)
                    cur = await aconn.execute(sql, params)
                    rows = [{"id": row[0]} for row in await cur.fetchall()]
                    return _at_once_jobs(specs, rows, now)
                async with aconn.transaction():
                    return await self._arun(aconn, specs, channel)  # type: ignore[no-any-return]

    async def _arun(
        self, conn: psycopg.AsyncConnection[Any], specs: Sequence[JobSpec], channel: str
    ) -> Any:
        return await run_steps(
            self.insert_steps(specs, self.clock()),
            conn,
            lambda payload: self._notify_statement(channel, payload),
        )

    async def _achannel(self, conn: psycopg.AsyncConnection[Any] | None = None) -> str:
        """:attr:`channel`, looked up on an async connection of the engine's own: a caller's
        connection may have another search_path, and the engine's schema decides."""
        if self._channel is not None:
            return self._channel
        if conn is None:
            async with self._async.connection() as own:
                with translated(own):
                    return await self._achannel(own)
        [row] = await fetch_rows(conn, "SELECT current_schema() AS s")
        return self._set_channel(row["s"])

    @staticmethod
    def _at_once(specs: Sequence[JobSpec]) -> bool:
        """Whether an insert outside a caller's transaction is one autocommitted statement:
        plain jobs only (uniqueness needs its lookups), too few for COPY."""
        return len(specs) < COPY_MIN and all(spec.unique_key is None for spec in specs)

    def _at_once_statement(
        self, specs: Sequence[JobSpec], now: datetime, channel: str
    ) -> tuple[str, dict[str, Any]]:
        """The statement that inserts plain ``specs`` and sends the wake-up: typed parameters
        for one job (the hot path of inserting one by one), a JSON array for more."""
        if len(specs) == 1:
            spec = specs[0]
            at, state = birth(spec, now)
            available = state is JobState.AVAILABLE
            return self.queries["insert_job_and_notify"], {
                "state": state.value,
                "queue": spec.queue,
                "worker": spec.worker,
                "args": encode_json(spec.args),
                "meta": encode_json(spec.meta) if spec.meta else "{}",
                "tags": encode_json(list(spec.tags)) if spec.tags else "[]",
                "max_attempts": spec.max_attempts,
                "priority": spec.priority,
                "inserted_at": now,
                "scheduled_at": at,
                "channel": channel,
                "payload": _wake_text((spec.queue,) if available else (), not available),
            }
        stamp = self.time_json(now)
        rows = [self._spec_row(i, spec, now, stamp) for i, spec in enumerate(specs)]
        queues = tuple(sorted({row["queue"] for row in rows if row["state"] == "available"}))
        scheduled = any(row["state"] == "scheduled" for row in rows)
        return self._insert_and_notify, {
            "rows": dumps(rows),
            "channel": channel,
            "payload": _wake_text(queues, scheduled),
        }

    def _notify_statement(
        self, channel: str, payload: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        return self.queries["notify"], {
            "channel": channel,
            "payload": json.dumps(payload, separators=(",", ":")),
        }

    def stored_job(self, stored: Row, spec: JobSpec, now: datetime) -> Job[Any]:
        """Built from the spec: ``insert_jobs`` returns only the id and the key."""
        return _inserted(spec, int(stored["id"]), now, stored["unique_key"])

    def _insert_plain(self, specs: Sequence[JobSpec], now: datetime) -> Steps[list[Job[Any]]]:
        """From ``COPY_MIN`` jobs on, COPY with reserved ids; fewer, one statement."""
        if len(specs) < COPY_MIN:
            return (yield from super()._insert_plain(specs, now))
        [reserved] = yield (self.queries["reserve_job_ids"], {"n": len(specs)})
        jobs: list[Job[Any]] = []
        yield CopyIn(
            self.queries["copy_jobs"], plain_rows(specs, sorted(reserved["ids"]), now, jobs)
        )
        return jobs

    def _insert_keyed(self, ordered: list[dict[str, Any]]) -> Steps[list[Row]]:
        """From ``COPY_MIN`` unique jobs on, COPY into a staging table, then one insert from
        it that skips held keys; fewer, one statement."""
        if len(ordered) < COPY_MIN:
            return (yield from super()._insert_keyed(ordered))
        yield (self.queries["create_job_staging"], None)
        yield CopyIn(self.queries["copy_job_staging"], staged_rows(ordered))
        stored = yield (self.queries["insert_from_staging"], None)
        yield (self.queries["drop_job_staging"], None)
        return stored  # type: ignore[no-any-return]

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
            delay = LISTEN_RETRY[0]
            lost_at: float | None = None
            while not stop.is_set():
                try:
                    with psycopg.connect(self.url, autocommit=True, **self._connect) as conn:
                        conn.execute(f'LISTEN "{channel}"')
                        if lost_at is not None:
                            log.warning(
                                "listener reconnected after %.1f s", time.monotonic() - lost_at
                            )
                        lost_at, delay = None, LISTEN_RETRY[0]
                        callback({"reconnected": True})  # the node fetches what it missed
                        while not stop.is_set():
                            for note in conn.notifies(timeout=LISTEN_CHECK):
                                try:
                                    callback(json.loads(note.payload))
                                except Exception:  # a bad payload must not stop listening
                                    log.exception("bad notification payload")
                except psycopg.Error as exc:
                    if lost_at is None:  # once per outage, not once per attempt
                        lost_at = time.monotonic()
                        log.warning("listener connection lost (%s); reconnecting", reason(exc))
                    stop.wait(delay)
                    delay = min(delay * 2, LISTEN_RETRY[1])

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
            self._down = None
        self._async.close()


def url_connect_timeout(url: str) -> int | None:
    """The URL's own ``connect_timeout`` (0: wait for ever), or None when it sets none."""
    try:
        given = conninfo_to_dict(url).get("connect_timeout")
        return None if given is None else int(str(given))
    except (psycopg.Error, ValueError):  # malformed: the first connection reports it
        return None


class Unparsable(str):
    """The text of a stored JSON value too deeply nested for Python to parse: handed on as
    text (a row holding one fails alone as undecodable) rather than raising from inside
    the driver's fetch, after an autocommitted claim had committed."""


def _loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        return Unparsable(data if isinstance(data, str) else data.decode())


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each pooled connection parses json/jsonb with :func:`_loads`, and runs without JIT.

    The operations filter on args/meta walks the wanted document with a recursive CTE per
    row; PostgreSQL estimates it far above ``jit_above_cost`` even over 200 rows, and then
    spends 0.2-0.4 s compiling it: ``jobs list --args``, ``assert_enqueued(args=...)`` took
    that long per call, against 3 ms without JIT. No query of jobsaga's gains from JIT (they
    are short, index-driven statements), so the pool turns it off for its own sessions; a
    caller's own connection is left as it is."""
    set_json_loads(_loads, conn)
    with contextlib.suppress(psycopg.errors.UndefinedObject):  # a server built without JIT
        conn.execute("SET jit = off")


def _between_transactions(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
    """Whether a caller's connection is in autocommit outside any transaction block."""
    return conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE


def _configure_async(conn: psycopg.AsyncConnection[Any]) -> None:
    set_json_loads(_loads, conn)


@functools.lru_cache(maxsize=256)
def _wake_text(queues: tuple[str, ...], scheduled: bool) -> str:
    """``wake_payload``'s JSON for jobs not built yet (few distinct ones: kept)."""
    return encode_json({"queues": list(queues), "scheduled": scheduled})


def _inserted(spec: JobSpec, job_id: int, now: datetime, unique_key: str | None = None) -> Job[Any]:
    """``inserted_job``, through the bulk path's cheaper builder."""
    at, state = birth(spec, now)
    return new_job(job_id, state, spec, now, at, unique_key)


def _at_once_jobs(specs: Sequence[JobSpec], rows: Sequence[Row], now: datetime) -> list[Job[Any]]:
    # ids follow the rows' order (ORDER BY idx); the rest of each job is its spec
    ids = [int(rows[0]["id"])] if len(specs) == 1 else sorted(int(row["id"]) for row in rows)
    return [_inserted(spec, job_id, now) for spec, job_id in zip(specs, ids, strict=True)]


def reason(exc: BaseException) -> str:
    """The driver's message on one line (the server's own reason when it gave one)."""
    return " ".join(str(exc).split()) or type(exc).__name__


CONNECTION_LOST = (
    psycopg.errors.AdminShutdown,  # 57P01 terminating connection due to administrator command
    psycopg.errors.CrashShutdown,  # 57P02
    psycopg.errors.CannotConnectNow,  # 57P03 the database system is starting up / shutting down
    psycopg.errors.IdleSessionTimeout,
)


def database_error(exc: psycopg.Error, *, broken: bool = False) -> DatabaseError:
    """jobsaga's exception for a psycopg error (the caller chains it with ``from exc``).

    ``DatabaseUnavailable``: the connection is gone or the server cannot serve now, and the
    transient failures PostgreSQL classes as operational (deadlock, serialization failure,
    lock timeout), and a server that became read-only (a failover under way), all of which
    may succeed later. ``DataRejected``: the server (or psycopg, e.g. for a NUL character)
    refused the values themselves, or they exceed one of its limits (class 54: a value too
    large, too many elements), which the same write would meet again. Anything else (a
    missing table, a syntax error, a statement cancelled by ``statement_timeout``, which may
    well recur) is ``DatabaseError``, which a retry loop must bound."""
    message = reason(exc)
    lost = isinstance(exc, CONNECTION_LOST) or (
        exc.sqlstate is None and isinstance(exc, psycopg.OperationalError)  # no reply at all
    )
    if broken or lost or isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return DatabaseUnavailable(f"PostgreSQL is unavailable: {message}")
    if isinstance(exc, (psycopg.DataError, psycopg.IntegrityError)) or (
        exc.sqlstate or ""
    ).startswith("54"):
        return DataRejected(f"PostgreSQL refused the data: {message}")
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return DatabaseError(f"PostgreSQL cancelled the statement: {message}")
    if isinstance(exc, psycopg.OperationalError):
        return DatabaseUnavailable(f"PostgreSQL could not run the statement now: {message}")
    return DatabaseError(f"PostgreSQL failed the statement: {message}")


@contextmanager
def translated(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> Iterator[None]:
    """Re-raise a psycopg error from the block as jobsaga's own, the original chained."""
    try:
        yield
    except psycopg.Error as exc:
        raise database_error(exc, broken=conn.broken) from exc


def _usable(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle pooled connection still works, without a round trip in the common case.

    The server says goodbye on an idle connection (an error, then end of file) when it shuts
    down or ends the session, so an idle connection with anything to read is suspect, and a
    round trip tells; one with nothing to read is taken as alive (a statement on it that fails
    is reported, and the pool renewed)."""
    if conn.closed or conn.broken:
        return False
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            readable = bool(poller.poll(0))
        else:  # pragma: no cover  (Windows)
            readable = bool(select.select([conn.fileno()], [], [], 0)[0])
    except (OSError, ValueError, psycopg.Error):
        return False
    if not readable:
        return True
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return False
    return True


def _close_soon(pool: ConnectionPool | None) -> None:
    """Close a pool without making the caller wait for its workers (one may be in the middle
    of a connection attempt)."""
    if pool is not None:
        threading.Thread(target=pool.close, name="jobsaga-pool-close", daemon=True).start()


def check_callers_connection(conn: Any) -> psycopg.Connection[Any]:
    """A sync call runs its statements on a caller's sync connection only: an
    ``AsyncConnection`` needs the async API (``ainsert``), and would otherwise fail deep in
    psycopg with an unrelated TypeError."""
    if isinstance(conn, psycopg.AsyncConnection):
        raise ConfigError(
            "conn= got a psycopg.AsyncConnection in a sync call: use "
            "`await app.ainsert(..., conn=conn)` / `ainsert_all`, which insert in your async "
            "transaction, or pass a sync psycopg.Connection"
        )
    if not isinstance(conn, psycopg.Connection):
        raise ConfigError(
            f"conn= takes a psycopg.Connection (or, with ainsert, a psycopg.AsyncConnection), "
            f"got {type(conn).__name__}"
        )
    return conn


@contextmanager
def scratch_schema(server_url: str) -> Iterator[str]:
    """A URL whose connections use a new, empty schema on ``server_url``; the schema is
    dropped afterwards. Cheaper than a database per test, and as isolated for jobsaga,
    whose every statement names unqualified tables."""
    from urllib.parse import quote

    schema = f"jobsaga_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    sep = "&" if "?" in server_url else "?"
    try:
        yield f"{server_url}{sep}options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
