"""Fixtures shared by the suite: every engine test runs on SQLite and on PostgreSQL.

Each test gets its own database: a fresh SQLite file, or a fresh PostgreSQL schema (selected
through ``search_path`` in the URL) that is dropped afterwards. PostgreSQL must be reachable:
the suite fails loudly rather than skipping those tests.

A PostgreSQL test that builds apps (``make_app``, ``app``) gets its schema migrated already,
from a few spares a thread of the test process migrates ahead (with ``App.migrate``, as
``make_app`` would); that thread also drops each schema after its test. Migrating a schema
(about 0.1 s) and dropping it (up to 0.07 s) are then no longer waited for by each of the
several hundred PostgreSQL tests. A test that asks for ``db_url`` alone gets an empty schema.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from jobsaga import App

PG_URL = os.environ.get("JOBSAGA_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgres"]


def pytest_configure(config: pytest.Config) -> None:
    keep_bytecode(config.rootpath / ".pytest_cache" / "pycache")


def keep_bytecode(prefix: Path) -> None:
    """Where the environment says not to write bytecode (``PYTHONDONTWRITEBYTECODE``), keep it
    all the same, out of the source tree, under ``prefix`` (or ``PYTHONPYCACHEPREFIX``):
    otherwise every process of the suite (the xdist workers, a hundred-odd CLI, node and
    example processes) compiles each module it imports, and pytest rewrites every test module
    again in each worker (3.4 s of collection instead of 1.4 s). Measured here, with
    ``PYTHONDONTWRITEBYTECODE=1`` set: the README's command took 120 s instead of 138 s. For
    this process and those started after it (the workers, the tests' own)."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    del os.environ["PYTHONDONTWRITEBYTECODE"]
    folder = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(prefix))
    sys.dont_write_bytecode = False
    sys.pycache_prefix = folder


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, which may be off (-p no:xdist)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto`` (the README's command): two workers per CPU, at most 8 unless there are
    more CPUs than that. Most of a test's time is spent waiting (a node's poll, a lease, a
    grace period, a process starting), not computing: on 2 cores the suite's processes and
    PostgreSQL used about 180 CPU-seconds for 380 s of tests, so one worker per CPU left the
    CPUs half idle. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own rule reads it
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus = cpus or 1
    return max(cpus, min(2 * cpus, 8))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep ``xdist_group`` under ``--dist loadgroup``. pytest-xdist tells its scheduler a
    test's group by suffixing the test's id (``...::test@group``) through a field pytest 9.2's
    structured ids no longer read, so the groups were silently dropped and the chaos
    scenarios ran side by side (pytest-xdist issue 1386). Until xdist writes the id itself,
    this does, as xdist would; where xdist managed it, the suffix is there and this does
    nothing."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        names = {
            str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
            for mark in item.iter_markers("xdist_group")
        }
        if not names or item.nodeid.rfind("@") > item.nodeid.rfind("]"):
            continue
        from _pytest.nodeid import NodeId  # only pytest 9.2's structured ids come this far

        item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(sorted(names))}")  # type: ignore[attr-defined]


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


class Schemas:
    """The PostgreSQL schemas of this test process: spares migrated ahead, and schemas of
    finished tests dropped, by one thread, off the tests' path."""

    SPARES = 2

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._spares: list[str] = []
        self._doomed: list[str] = []
        self._closing = False
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="test-schemas", daemon=True)
        self._thread.start()

    @staticmethod
    def create(admin: psycopg.Connection[Any]) -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        admin.execute(f'CREATE SCHEMA "{schema}"')
        return schema

    @classmethod
    def create_migrated(cls, admin: psycopg.Connection[Any]) -> str:
        schema = cls.create(admin)
        with App(pg_schema_url(schema)) as app:
            app.migrate()
        return schema

    def migrated(self, admin: psycopg.Connection[Any]) -> str:
        """A migrated schema: a spare, or one made now when none is ready (or migrating
        failed on the thread: then it fails here, in the test)."""
        with self._changed:
            if self._spares:
                self._changed.notify()
                return self._spares.pop()
        return self.create_migrated(admin)

    def drop_later(self, schema: str) -> None:
        with self._changed:
            self._doomed.append(schema)
            self._changed.notify()

    def _run(self) -> None:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=5) as admin:
            while True:
                with self._changed:
                    while not self._closing and not self._doomed and not self._wants_spare():
                        self._changed.wait()
                    if self._closing:
                        return
                    make = self._wants_spare()
                    doomed = None if make else self._doomed.pop()
                if doomed is not None:
                    with contextlib.suppress(psycopg.Error):  # left behind, as a crash leaves it
                        admin.execute(f'DROP SCHEMA "{doomed}" CASCADE')
                    continue
                try:
                    spare = self.create_migrated(admin)
                except Exception:  # the tests that take a schema migrate it and fail instead
                    self._failed = True
                    continue
                with self._changed:
                    self._spares.append(spare)

    def _wants_spare(self) -> bool:
        return not self._failed and len(self._spares) < self.SPARES

    def close(self, admin: psycopg.Connection[Any]) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify()
        self._thread.join(30)
        with self._changed:
            left, self._spares, self._doomed = self._spares + self._doomed, [], []
        for schema in left:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture(scope="session")
def pg_schemas(pg_admin: psycopg.Connection[Any]) -> Iterator[Schemas]:
    schemas = Schemas()
    yield schemas
    schemas.close(pg_admin)


@pytest.fixture(params=ENGINES)
def engine_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(engine_name: str, tmp_path: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A URL to an isolated database on the engine under test: empty, or already migrated
    when the test builds apps with ``make_app`` (which migrates)."""
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    admin = request.getfixturevalue("pg_admin")
    schemas: Schemas = request.getfixturevalue("pg_schemas")
    if "make_app" in request.fixturenames:
        schema = schemas.migrated(admin)
    else:
        schema = schemas.create(admin)
    try:
        yield pg_schema_url(schema)
    finally:
        schemas.drop_later(schema)


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
