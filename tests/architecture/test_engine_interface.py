"""Every engine answers to the same named queries, so code shared by the engines (and the
layers above, through them) never finds a query missing on one dialect."""

from __future__ import annotations

from pathlib import Path

from jobsaga.engines import KINDS
from jobsaga.engines.postgres import PostgresEngine
from jobsaga.engines.sql import dialect_queries
from jobsaga.engines.sqlite import SqliteEngine

ENGINES = {engine.dialect: engine for engine in (SqliteEngine, PostgresEngine)}


def test_every_kind_has_an_engine() -> None:
    assert set(ENGINES) == set(KINDS)


def test_every_dialect_defines_the_same_shared_queries() -> None:
    shared = {
        dialect: set(dialect_queries(dialect)) - engine.own_queries
        for dialect, engine in ENGINES.items()
    }
    first, *others = shared.values()
    for dialect, names in shared.items():
        assert names == first, f"{dialect}: {sorted(names ^ first)}"
    assert others  # more than one dialect compared


def test_own_queries_exist_in_their_dialect() -> None:
    for dialect, engine in ENGINES.items():
        assert engine.own_queries <= set(dialect_queries(dialect)), dialect


def test_fragments_are_spliced_and_not_queries() -> None:
    for dialect in ENGINES:
        queries = dialect_queries(dialect)
        assert "job_filter" not in queries
        assert "/*job_filter*/" not in queries["list_jobs_newest"]
        assert "state" in queries["list_jobs_newest"]


def test_every_named_query_is_used() -> None:
    """A query no code names is dead SQL that still has to be kept true to the schema."""
    import jobsaga

    package = Path(jobsaga.__file__).parent
    code = "\n".join(path.read_text("utf-8") for path in package.rglob("*.py"))
    for dialect in ENGINES:
        unused = [name for name in dialect_queries(dialect) if f'"{name}"' not in code]
        assert unused == [], dialect
