"""What the benchmark scripts share: the PostgreSQL server, fresh databases, and timing.

Imported by the scripts beside it (run as ``python bench/<script>.py``, which puts this folder
on ``sys.path``).
"""

from __future__ import annotations

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
def fresh_pg_database(label: str) -> Iterator[str]:
    """A new, empty database on the server of ``PG_URL`` (dropped afterwards); yields its URL.

    For libraries that install into the ``public`` schema or keep their own notion of one.
    """
    name = f"bench_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlsplit(PG_URL)._replace(path=f"/{name}").geturl()
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


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
