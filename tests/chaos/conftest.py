"""Chaos fixtures: a throwaway PostgreSQL cluster (session-wide), a fresh database on it per
test, and real worker processes (stopped after each test, whatever happened).

The cluster is shared by the chaos tests of one pytest process; a test may stop, restart or
kill it: the fixtures start it again before and after each test that uses it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .nodes import Nodes
from .pgcluster import PgCluster


@pytest.fixture(scope="session")
def pg_cluster_session() -> Iterator[PgCluster]:
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_cluster(pg_cluster_session: PgCluster) -> Iterator[PgCluster]:
    """The throwaway cluster, running at the test's start; started again after the test if
    it left it down."""
    pg_cluster_session.ensure_running()
    yield pg_cluster_session
    pg_cluster_session.ensure_running()


@pytest.fixture
def chaos_pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """An empty database of its own on the throwaway cluster; dropped afterwards."""
    url = pg_cluster.new_database()
    yield url
    pg_cluster.ensure_running()
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(pg_cluster.url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def make_nodes(tmp_path: Path) -> Iterator[Callable[..., Nodes]]:
    """Build :class:`Nodes` groups: ``make_nodes(url)`` (keywords as ``Nodes``). Every node
    still running at the end of the test gets SIGTERM, then SIGKILL."""
    groups: list[Nodes] = []

    def build(url: str, **options: Any) -> Nodes:
        group = Nodes(url, tmp_path / f"nodes-{len(groups)}", **options)
        groups.append(group)
        return group

    yield build
    for group in groups:
        group.stop_all()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test under tests/chaos carries the ``chaos`` marker (``-m 'not chaos'`` skips
    the suite); those that run worker processes or take a server down also declare an xdist
    group themselves, so ``--dist loadgroup`` runs the heavy scenarios of a group one at a
    time: ``chaos-cluster`` for those on the throwaway cluster (one per test process, so the
    group needs only one), ``chaos-nodes`` for the worker processes on the shared server or a
    SQLite file. The two groups share nothing, and run side by side."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.chaos)
