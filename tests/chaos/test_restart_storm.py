"""A storm of immediate PostgreSQL restarts while two real nodes work through thousands of
jobs: nothing lost, and no job left ``executing`` under a live node once the rescue window has
passed (issue 9, fault 2: a claim committed whose reply was lost must be found and given back
by its own live node, not only when it dies)."""

from __future__ import annotations

import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable

import pytest

from .chaos_app import read_log
from .nodes import Nodes
from .pgcluster import PgCluster
from .probe import Probe, report
from .test_pg_restart import insert

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-cluster")]

JOBS = 20000
RESTARTS = 15
RESCUE_AFTER = 8.0
"""Longer than any outage of the storm: no live node ever looks dead, so the lifeline's
rescue of dead nodes' jobs cannot hide a claim its own node lost track of."""


@pytest.mark.timeout(300)  # about 30 s alone; 80 s seen on a machine loaded by other work
def test_storm_of_immediate_restarts_loses_nothing_strands_nothing(
    pg_cluster: PgCluster,
    chaos_pg_url: str,
    make_nodes: Callable[..., Nodes],
    request: pytest.FixtureRequest,
) -> None:
    url = chaos_pg_url
    probe = Probe(url)
    # Durable commits, as in production: a commit then waits on its WAL flush, and an
    # immediate shutdown landing there leaves a transaction that recovery finds committed
    # although its client never heard back (with fsync off that window is nearly closed).
    pg_cluster.configure(fsync="on")
    request.addfinalizer(lambda: pg_cluster.configure(fsync="off"))
    insert(url, JOBS)  # no-op jobs: many fetches a second, each a window for a lost reply
    nodes = make_nodes(url)
    probe.context = nodes.logs
    nodes.start_together(["a", "b"], {"work": 10}, rescue_after=RESCUE_AFTER)
    probe.wait_for(lambda: probe.states()["completed"] >= 500, 30, "work under way")

    rng = random.Random(9)
    storm_started = time.monotonic()
    for _ in range(RESTARTS):
        pg_cluster.restart("immediate")
        time.sleep(rng.uniform(0.2, 0.6))
    storm_seconds = time.monotonic() - storm_started
    assert probe.states()["available"] > 0, "the storm must end while work remains"

    probe.wait_for(
        lambda: not ({"available", "scheduled", "retryable"} & set(+probe.states())),
        90,
        "every job fetched after the storm",
    )
    drained = time.monotonic()
    # Past the rescue window (plus the lifeline's own interval), under live nodes, nothing
    # may stay executing: wait for that, but only so long.
    stranded_for = RESCUE_AFTER + 5.0
    with contextlib.suppress(AssertionError):
        probe.wait_for(lambda: probe.states()["executing"] == 0, stranded_for, "none executing")
    states = probe.states()
    alive = sorted(nodes.alive())
    runs = Counter(int(line[1]) for line in read_log(nodes.chaos_log) if line[0] == "run")
    ids = [j["id"] for j in probe.jobs()]
    lost = sum(1 for i in ids if runs[i] == 0) - states["executing"]  # neither ran nor held
    report(
        "restart_storm",
        jobs=JOBS,
        restarts=RESTARTS,
        storm_seconds=round(storm_seconds, 1),
        stranded_executing=states["executing"],
        stranded_after_seconds=round(time.monotonic() - drained, 1),
        never_ran=sum(1 for i in ids if runs[i] == 0),
        ran_twice=sum(1 for n in runs.values() if n > 1),
        lost=lost,
        nodes_alive=len(alive),
        rescue_after=RESCUE_AFTER,
    )
    assert alive == ["a", "b"], nodes.logs()
    assert states["executing"] == 0, (
        f"{states['executing']} jobs stranded executing under live nodes "
        f"{stranded_for}s after the work drained (fault 2)"
    )
    assert states == {"completed": JOBS}
    assert all(runs[i] >= 1 for i in ids)
    for name in ("a", "b"):
        assert nodes.stop(name) == 0, nodes.log(name)
