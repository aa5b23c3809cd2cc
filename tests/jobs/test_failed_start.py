"""A node that fails to start leaves nothing behind (issue 9, fault 5).

Its listeners stayed registered in the app, so the next ``app.insert`` raised ``Event loop
is closed`` after the row was committed (a caller that retries creates duplicates), and its
threads leaked. Now a failed start is undone, and announcing committed jobs never raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobsaga import App, Job, JobState, Worker
from jobsaga.engines.schema import missing_migrations
from jobsaga.errors import ConfigError, MigrationError
from tests.jobs.conftest import SEEN, count_jobs, wait_final

FAST: dict[str, Any] = {"poll_interval": 0.05, "heartbeat_interval": 0.1, "rescue_after": 1.0}


class Noted(Worker):
    async def perform(self, job: Job[Any]) -> None:
        SEEN.add(job.id)


def jobsaga_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("jobsaga") and t.is_alive()}


def settled_threads(before: set[threading.Thread]) -> set[threading.Thread]:
    """Threads named jobsaga-* started since ``before`` that are still alive (pool threads
    exit once their pool is shut down: give them a moment)."""
    for thread in jobsaga_threads() - before:
        thread.join(2.0)
    return jobsaga_threads() - before


@pytest.fixture
def name_holder(make_app: Callable[..., App]) -> Iterator[str]:
    """Another live process holding the node name "taken": it beats every 50 ms."""
    holder = make_app(Noted).node(name="taken", **FAST)
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(0.05):
            holder.plugins.heartbeat.beat()

    holder.plugins.heartbeat.beat()
    thread = threading.Thread(target=beat, name="test-name-holder", daemon=True)
    thread.start()
    yield "taken"
    stop.set()
    thread.join(5)


def test_a_node_failing_midway_in_start_leaves_inserts_working(
    make_app: Callable[..., App], name_holder: str
) -> None:
    """The start fails in its plugins (the node name is held by a live process), after the
    node registered its listeners, opened its pools and started its control loop."""
    app = make_app(Noted)
    before = jobsaga_threads()
    node = app.node(name=name_holder, **FAST)
    with pytest.raises(ConfigError, match="in use by a live process"):
        node.start_in_thread()
    stored = app.insert(Noted.new())  # raised "Event loop is closed", after the commit
    assert stored.state is JobState.AVAILABLE
    assert count_jobs(app) == 1
    assert not node.started
    assert app._listeners == [] and app._control_appliers == []
    assert settled_threads(before) == set()  # no pool, listener or heartbeat thread left


def test_a_node_that_failed_to_start_can_start_later(db_url: str) -> None:
    """The schema check fails (not migrated): nothing is left, and once migrated the same
    node starts and runs the job inserted meanwhile."""
    with App(db_url, workers=[Noted]) as app:
        assert missing_migrations(app.engine)  # (opens the engine: its pool is not the node's)
        before = jobsaga_threads()
        node = app.node(**FAST)
        with pytest.raises(MigrationError, match="jobsaga migrate"):
            node.start_in_thread()
        assert settled_threads(before) == set()
        app.migrate()
        stored = app.insert(Noted.new())
        with node.start_in_thread():
            assert wait_final(app, stored.id).state is JobState.COMPLETED
    assert SEEN.items() == [stored.id]


def test_announcing_committed_jobs_never_raises(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    """A listener that fails after the commit is logged; the caller gets its job, once."""
    app = make_app(Noted)

    def broken(payload: Any) -> None:
        raise RuntimeError("Event loop is closed")

    app.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="jobsaga.app"):
        stored = app.insert(Noted.new())
        app.insert_all([Noted.new(), Noted.new()])
    assert stored.id is not None and count_jobs(app) == 3
    assert [r.message for r in caplog.records if "listener" in r.message]
