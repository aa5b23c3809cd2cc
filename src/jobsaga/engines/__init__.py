"""Choose an engine from a URL; no connection is opened until the engine is first used."""

from __future__ import annotations

import os

from ..errors import ConfigError
from .base import Ack, Clock, Engine, Tx, utcnow
from .rows import LATEST, UndecodableRow

ENV_URL = "JOBSAGA_DATABASE_URL"
DEFAULT_SQLITE = "sqlite:///jobsaga.db"

__all__ = ["LATEST", "Ack", "Engine", "Tx", "UndecodableRow", "create_engine", "resolve_url"]


def resolve_url(url: str | None) -> str:
    """An explicit URL wins, then ``$JOBSAGA_DATABASE_URL``, then an embedded ``jobsaga.db``."""
    return url or os.environ.get(ENV_URL) or DEFAULT_SQLITE


def create_engine(url: str | None = None, clock: Clock = utcnow, **options: int) -> Engine:
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

        return PostgresEngine(resolved, clock, **options)
    scheme = resolved.split(":", 1)[0]
    raise ConfigError(
        f"unsupported database URL scheme {scheme!r}: use sqlite:/// or postgresql://"
    )
