"""What the benchmark scripts share: the PostgreSQL server, fresh databases, and timing.

Imported by the scripts beside it (run as ``python bench/<script>.py``, which puts this folder
on ``sys.path``).
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

PG_URL = os.environ.get("JOBSAGA_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
CONCURRENCY = 10


@contextmanager
def fresh_database(engine: str) -> Iterator[str]:
    """A new SQLite file, or a new schema on ``PG_URL`` (dropped afterwards); yields its URL."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="jobsaga-bench-") as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        try:
            sep = "&" if "?" in PG_URL else "?"
            yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
        finally:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_pg_database(label: str, template: str | None = None) -> Iterator[str]:
    """A new database on the server of ``PG_URL`` (dropped afterwards, also on an error or
    Ctrl-C); yields its URL. Empty, or a copy of the database ``template`` names (which must
    have no open connection while it is copied).

    For libraries that install into the ``public`` schema or keep their own notion of one.
    """
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        create += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(create)
        try:
            yield pg_url(name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def pg_url(database: str) -> str:
    """The URL of ``database`` on the server of ``PG_URL``."""
    return urlsplit(PG_URL)._replace(path=f"/{database}").geturl()


def database_name(url: str) -> str:
    """The database a PostgreSQL URL names (the inverse of :func:`pg_url`)."""
    return urlsplit(url).path.lstrip("/")


def timed(fn: Callable[[], Any]) -> float:
    """Seconds taken by ``fn()``."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


async def atimed(fn: Callable[[], Awaitable[Any]]) -> float:
    """Seconds taken by ``await fn()``."""
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """Median, lowest and highest of repeated measurements."""
    return statistics.median(values), min(values), max(values)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``values`` (nearest rank: a value that was measured)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]
