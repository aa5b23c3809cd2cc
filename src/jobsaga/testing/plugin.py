"""The pytest plugin (entry point ``jobsaga``): app fixtures on SQLite and PostgreSQL, and modes.

- ``jobsaga_app``: a migrated App on a temp SQLite file, or on the engine chosen by
  ``jobsaga_engine`` (parametrize it, or use ``@pytest.mark.jobsaga_engines("sqlite", "postgres")``
  to run a test on both). The ini option ``jobsaga_engines`` sets the engines of every test
  that has no marker (default: ``sqlite``).
- PostgreSQL: each test gets its own schema on ``--jobsaga-pg-url`` / ``JOBSAGA_TEST_PG_URL``,
  created before and dropped after.
- ``@pytest.mark.jobsaga_mode("inline" | "manual")``, or the ``jobsaga_mode`` fixture:
  inserts run at once, or wait for ``drain_queue`` (the default).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..app import App
from ..engines import KINDS, LOCAL_TEST_SERVER, scratch_database
from .modes import MODES, testing_mode


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--jobsaga-pg-url",
        default=None,
        help="PostgreSQL URL for jobsaga_app on postgres (default: $JOBSAGA_TEST_PG_URL)",
    )
    parser.addini(
        "jobsaga_engines",
        type="args",
        default=[KINDS[0]],
        help="engines every jobsaga_app test runs on when it has no jobsaga_engines marker "
        "(sqlite, postgres)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "jobsaga_mode(mode): run the test's inserts 'inline' or 'manual'"
    )
    config.addinivalue_line(
        "markers", "jobsaga_engines(*names): run the test on each engine (sqlite, postgres)"
    )
    _check_engines(config.getini("jobsaga_engines"), "ini jobsaga_engines")


def _check_engines(names: list[str], where: str) -> list[str]:
    for name in names:
        if name not in KINDS:
            raise pytest.UsageError(
                f"{where}: unknown engine {name!r} (expected {' or '.join(KINDS)})"
            )
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "jobsaga_engine" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("jobsaga_engines")
    if marker is not None:
        names = _check_engines(list(marker.args) or list(KINDS), "jobsaga_engines marker")
    else:
        names = list(metafunc.config.getini("jobsaga_engines"))
        if len(names) == 1:
            return  # one engine: one unparametrized run, test ids unchanged
    if "jobsaga_engine" in _parametrized_names(metafunc):
        return  # the test parametrizes jobsaga_engine itself
    metafunc.parametrize("jobsaga_engine", names, indirect=True)


def _parametrized_names(metafunc: pytest.Metafunc) -> set[str]:
    """The argument names the test's own ``@pytest.mark.parametrize`` marks set."""
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        given = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        parts = given.split(",") if isinstance(given, str) else given
        names.update(str(part).strip() for part in parts)
    return names


@pytest.fixture
def jobsaga_engine(request: pytest.FixtureRequest) -> str:
    """The engine ``jobsaga_app`` uses: the first of ``jobsaga_engines`` unless parametrized."""
    return str(getattr(request, "param", request.config.getini("jobsaga_engines")[0]))


def _server_url(config: pytest.Config) -> str:
    return str(
        config.getoption("--jobsaga-pg-url")
        or os.environ.get("JOBSAGA_TEST_PG_URL")
        or LOCAL_TEST_SERVER
    )


@pytest.fixture
def jobsaga_db_url(
    jobsaga_engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[str]:
    """A URL to an empty database of its own on ``jobsaga_engine``."""
    with scratch_database(jobsaga_engine, tmp_path, _server_url(request.config)) as url:
        yield url


@pytest.fixture
def jobsaga_app(jobsaga_db_url: str) -> Iterator[App]:
    """A migrated App on this test's database; register workers with ``jobsaga_app.register``."""
    app = App(jobsaga_db_url)
    app.migrate()
    try:
        yield app
    finally:
        app.close()


@pytest.fixture(autouse=True)
def jobsaga_mode(request: pytest.FixtureRequest) -> Iterator[str]:
    """The testing mode of this test, from ``@pytest.mark.jobsaga_mode`` (default ``manual``)."""
    marker = request.node.get_closest_marker("jobsaga_mode")
    mode = str(marker.args[0]) if marker and marker.args else getattr(request, "param", "manual")
    if mode not in MODES:
        raise pytest.UsageError(f"jobsaga_mode: expected one of {', '.join(MODES)}, got {mode!r}")
    with testing_mode(mode):
        yield mode
