"""Fixtures shared by the suite: every engine test runs on SQLite and on PostgreSQL.

Each test gets its own database: a fresh SQLite file, or a fresh PostgreSQL schema (selected
through ``search_path`` in the URL) that is dropped afterwards. PostgreSQL must be reachable:
the suite fails loudly rather than skipping those tests.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from jobsaga import App

PG_URL = os.environ.get("JOBSAGA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgres"]


def pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection[Any]]:
    try:
        conn = psycopg.connect(PG_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # never skip: CI must test PostgreSQL
        pytest.exit(f"PostgreSQL is not reachable at {PG_URL}: {exc}", returncode=3)
    yield conn
    conn.close()


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(engine_name: str, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL to an empty, isolated database on the engine under test."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield pg_schema_url(schema)
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def make_app(db_url: str) -> Iterator[Callable[..., App]]:
    """Build apps on the test database (several apps = several nodes sharing it); migrated."""
    apps: list[App] = []

    def build(*workers: Any, **options: Any) -> App:
        app = App(db_url, workers=workers, **options)
        app.migrate()
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()
