"""Choose an engine from a URL; no connection is opened until the engine is first used."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConfigError
from .base import Ack, Clock, Engine, Tx, utcnow
from .rows import LATEST

ENV_URL = "JOBSAGA_DATABASE_URL"
DEFAULT_SQLITE = "sqlite:///jobsaga.db"
IN_MEMORY_URL = "sqlite:///:memory:"
"""A database that lives and dies with its engine: the testing toolkit's default."""
KINDS = ("sqlite", "postgres")
"""The engines jobsaga ships, by the names tests and the testing plugin use."""
LOCAL_TEST_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
"""The PostgreSQL server tests use unless told another (``$JOBSAGA_TEST_PG_URL``)."""


def embedded_url(path: str | os.PathLike[str]) -> str:
    """The URL of an embedded database file at ``path``."""
    return f"sqlite:///{os.fspath(path)}"


__all__ = [
    "IN_MEMORY_URL",
    "KINDS",
    "LATEST",
    "Ack",
    "Engine",
    "Tx",
    "create_engine",
    "embedded_url",
    "resolve_url",
    "scratch_database",
]


def resolve_url(url: str | None) -> str:
    """An explicit URL wins, then ``$JOBSAGA_DATABASE_URL``, then an embedded ``jobsaga.db``."""
    return url or os.environ.get(ENV_URL) or DEFAULT_SQLITE


@contextmanager
def scratch_database(kind: str, folder: Path, server_url: str | None = None) -> Iterator[str]:
    """The URL of an empty database of its own on engine ``kind``, removed afterwards: a file
    in ``folder`` for SQLite, a fresh schema on ``server_url`` for PostgreSQL. How the
    testing plugin gives every test its own database."""
    if kind == "sqlite":
        yield embedded_url(folder / "jobsaga.db")
    elif kind == "postgres":
        from .postgres import scratch_schema

        with scratch_schema(server_url or LOCAL_TEST_SERVER) as url:
            yield url
    else:
        raise ConfigError(f"unknown engine {kind!r} (expected {' or '.join(KINDS)})")


def create_engine(url: str | None = None, clock: Clock = utcnow, *, pool_size: int = 10) -> Engine:
    """The engine for ``url``. ``pool_size`` sizes PostgreSQL's connection pool; SQLite
    has one writer connection whatever it says."""
    resolved = resolve_url(url)
    if resolved.startswith("sqlite://"):
        from .sqlite import SqliteEngine

        path = resolved.removeprefix("sqlite://")
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel.db -> rel.db ; sqlite:////abs.db -> /abs.db
        if not path:
            raise ConfigError(f"SQLite URL needs a file path, e.g. sqlite:///jobs.db: {resolved!r}")
        return SqliteEngine(path, clock)
    if resolved.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresEngine

        return PostgresEngine(resolved, clock, pool_size=pool_size)
    scheme = resolved.split(":", 1)[0]
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://"
    )
