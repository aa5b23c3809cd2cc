"""PostgreSQL restarted (``-m fast`` and ``-m immediate``) under two real nodes, while they are
busy and while they are idle: nothing is lost, nothing is left executing, and the nodes recover
by themselves, LISTEN included (their safety poll is set to 30 s, so a job that starts within
a second of its insert was woken by a notification)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from jobsaga import App

from .chaos_app import Record, read_log
from .chaos_app import app as chaos_app
from .nodes import Nodes
from .pgcluster import PgCluster, StopMode
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-cluster")]

SLOW_POLL = 30.0
BUSY_JOBS = 1000
"""About 2.5 s of work for 20 slots: the restart, a quarter of the way in, hits a busy system."""


def insert(url: str, count: int, **args: float) -> list[int]:
    """Insert through a fresh app (the test's own pool must not carry a dead connection over
    a restart: what inserts do during an outage is test_pg_outage's subject)."""
    app = App(url, workers=list(chaos_app.workers.values()))
    try:
        app.migrate()
        return [j.id for j in app.insert_all([Record.new(dict(args)) for _ in range(count)])]
    finally:
        app.close()


def latency_of_one_job(url: str, probe: Probe, timeout: float) -> float:
    """Seconds from one job's insert to its completion."""
    started = time.monotonic()
    (job_id,) = insert(url, 1)
    probe.wait_for(
        lambda: (
            probe.query("SELECT state FROM jobsaga_jobs WHERE id = %s", [job_id])
            == [("completed",)]
        ),
        timeout,
        f"job {job_id} inserted after the restart completed",
        interval=0.01,
    )
    return time.monotonic() - started


@pytest.mark.parametrize("mode", ["fast", "immediate"])
@pytest.mark.parametrize("load", ["busy", "idle"])
def test_postgres_restart_loses_nothing_and_nodes_recover(
    pg_cluster: PgCluster,
    chaos_pg_url: str,
    make_nodes: Callable[..., Nodes],
    mode: StopMode,
    load: str,
) -> None:
    url = chaos_pg_url
    probe = Probe(url)
    count = BUSY_JOBS if load == "busy" else 50
    insert(url, count, seconds=0.05)  # 20 slots: about 400 jobs/s, so the restart hits work
    nodes = make_nodes(url)
    probe.context = nodes.logs
    nodes.start_together(["a", "b"], {"work": 10}, poll=SLOW_POLL)
    if load == "busy":
        probe.wait_for(lambda: probe.states()["completed"] >= count // 4, 60, "a quarter done")
        assert probe.states()["available"] > 0, "the restart must hit a busy system"
    else:
        probe.wait_for(lambda: probe.states() == {"completed": count}, 60, "all done")

    before = probe.states()["completed"]
    pg_cluster.restart(mode)
    back_at = time.monotonic()
    if load == "busy":
        resumed_in = probe.wait_for(
            lambda: probe.states()["completed"] > before, 30, "work resumed after the restart"
        )
    else:
        resumed_in = latency_of_one_job(url, probe, 30)
        count += 1
    probe.wait_for(lambda: probe.states()["completed"] == count, 60, "every job completed")
    drained_in = time.monotonic() - back_at
    listen_latency = latency_of_one_job(url, probe, 10)
    count += 1

    assert sorted(nodes.alive()) == ["a", "b"], nodes.log("a") + nodes.log("b")
    states = probe.states()
    runs = Counter(int(line[1]) for line in read_log(nodes.chaos_log) if line[0] == "run")
    ids = [j["id"] for j in probe.jobs()]
    lost = len(ids) - states["completed"]
    assert states == {"completed": count}
    assert all(runs[i] >= 1 for i in ids)
    assert listen_latency < 2.0, f"a new job waited {listen_latency:.2f}s: LISTEN not back"
    report(
        "postgres_restart",
        mode=mode,
        load=load,
        jobs=count,
        lost=lost,
        stranded_executing=states["executing"],
        ran_twice=sum(1 for n in runs.values() if n > 1),
        resumed_seconds=round(resumed_in, 2),
        drained_seconds=round(drained_in, 2),
        new_job_latency_seconds=round(listen_latency, 3),
        poll_interval=SLOW_POLL,
    )
    for name in ("a", "b"):
        assert nodes.stop(name) == 0, nodes.log(name)
