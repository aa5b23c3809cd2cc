"""One node leads at a time; another takes over at once when it stops, or when its lease ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from jobsaga import App
from tests.helpers import wait_until

from .support import rows


def events_of(app: App) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    app.telemetry.attach("t", "leader.*", lambda e, m, md: seen.append((e, md["node"])))
    return seen


def test_single_node_leads(app: App) -> None:
    seen = events_of(app)
    node = app.node(name="solo", poll_interval=0.05)
    with node.start_in_thread():
        wait_until(lambda: node.plugins.is_leader, 5)
        (lease,) = rows(app, "SELECT node FROM jobsaga_leader")
        assert lease["node"] == "solo"
    assert rows(app, "SELECT node FROM jobsaga_leader") == []  # resigned on stop
    assert seen == [("leader.elected", "solo"), ("leader.resigned", "solo")]


def test_one_leader_among_three_and_takeover_on_stop(make_app: Callable[..., App]) -> None:
    apps = [make_app() for _ in range(3)]
    seen = [events_of(a) for a in apps]
    options: dict[str, Any] = {"poll_interval": 0.05, "leader_lease": 1.5}
    nodes = [a.node(name=f"n{i}", **options) for i, a in enumerate(apps)]
    threads = [n.start_in_thread() for n in nodes]
    try:
        wait_until(lambda: sum(n.plugins.is_leader for n in nodes) == 1, 5)
        time.sleep(1.0)  # several renewals: still exactly one
        leaders = [n for n in nodes if n.plugins.is_leader]
        assert len(leaders) == 1
        index = nodes.index(leaders[0])
        stopped = time.monotonic()
        threads[index].stop()
        others = [n for i, n in enumerate(nodes) if i != index]
        wait_until(lambda: any(n.plugins.is_leader for n in others), 5)
        takeover = time.monotonic() - stopped
        assert sum(n.plugins.is_leader for n in others) == 1
        assert takeover < 2.5  # at most one renewal interval (lease / 3) on SQLite; NOTIFY on PG
        assert ("leader.resigned", f"n{index}") in seen[index]
    finally:
        for t in threads:
            if t.alive:
                t.stop()


def test_node_that_may_not_lead_never_does(make_app: Callable[..., App]) -> None:
    app = make_app()
    node = app.node(name="follower", poll_interval=0.05, leadership=False, leader_lease=0.3)
    with node.start_in_thread():
        time.sleep(0.5)
        assert not node.plugins.is_leader
        assert rows(app, "SELECT node FROM jobsaga_leader") == []


def test_expired_lease_is_taken_over(make_app: Callable[..., App]) -> None:
    """A leader that vanished without resigning (its row stays) is replaced once its lease ends."""
    app = make_app()
    from jobsaga.plugins.leader import Leader

    ghost = app.node(name="ghost", leader_lease=0.6)
    assert Leader(ghost, 0.6).try_lead()
    node = app.node(name="heir", poll_interval=0.05, leader_lease=0.6)
    with node.start_in_thread():
        started = time.monotonic()
        wait_until(lambda: node.plugins.is_leader, 5)
        assert time.monotonic() - started < 1.5
        assert rows(app, "SELECT node FROM jobsaga_leader")[0]["node"] == "heir"


def test_unmigrated_database_is_a_clear_error(db_url: str) -> None:
    import pytest

    from jobsaga.errors import MigrationError

    app = App(db_url)
    try:
        with pytest.raises(MigrationError, match="jobsaga migrate"):
            app.node(poll_interval=0.05).start_in_thread()
    finally:
        app.close()


def test_plugin_options_are_checked(app: App) -> None:
    import pytest

    from jobsaga.errors import ConfigError

    with pytest.raises(ConfigError, match="at least twice heartbeat_interval"):
        app.node(heartbeat_interval=5, rescue_after=6)
    with pytest.raises(ConfigError, match="prune_after must be a positive number"):
        app.node(prune_after=0)
    with pytest.raises(ConfigError, match="leader_lease must be a positive number"):
        app.node(leader_lease="soon")
    with pytest.raises(ConfigError, match="prune_limit must be an integer"):
        app.node(prune_after=10, prune_limit=0)
    from datetime import timedelta

    node = app.node(prune_after=timedelta(days=7), crontab=None)
    assert node.plugins.pruner is not None and node.plugins.pruner.max_age == 7 * 86400
    assert node.plugins.cron is None


def test_failing_plugin_run_emits_exception_and_the_loop_goes_on(app: App) -> None:
    import asyncio

    from jobsaga.plugins.base import Counts, Looper

    class Flaky(Looper):
        name = "flaky"

        async def run_once(self) -> Counts:
            if self.calls == 0:
                self.calls += 1
                raise RuntimeError("database away")
            return {"done": 1}

        calls = 0

    seen: list[tuple[str, Any]] = []
    app.telemetry.attach("t", "plugin.flaky.*", lambda e, m, md: seen.append((e, md.get("kind"))))
    node = app.node(name="n")

    async def main() -> None:
        flaky = Flaky(node, 0.01)
        await flaky.start()
        for _ in range(200):
            if flaky.runs:
                break
            await asyncio.sleep(0.01)
        await flaky.stop()

    asyncio.run(main())
    assert seen[0] == ("plugin.flaky.exception", "RuntimeError")
    assert ("plugin.flaky.stop", None) in seen


def test_dead_leader_is_replaced_within_its_lease(make_app: Callable[..., App]) -> None:
    """A leader that dies right after renewing (the worst case) is replaced within the lease,
    counted from that renewal; never before it.

    The ghost renews shortly after one of the heir's tries, so the heir's regular tries (every
    lease / 3) would all land just before the expiry: polling alone takes over about 4/3 of a
    lease after the death. The heir must wake at the expiry it read from the row instead."""
    import threading

    from jobsaga.plugins.leader import Leader

    lease = 1.5
    app = make_app()
    ghost = Leader(app.node(name="ghost", leader_lease=lease), lease)
    assert ghost.try_lead()
    heir = app.node(name="heir", poll_interval=0.05, leader_lease=lease)
    leader = heir.plugins.leader
    assert leader is not None
    tries: list[tuple[float, bool]] = []
    tried = threading.Event()
    try_lead = leader.try_lead

    def recorded() -> bool:  # the real try, timed
        won = try_lead()
        tries.append((time.monotonic(), won))
        tried.set()
        return won

    leader.try_lead = recorded  # type: ignore[method-assign]
    with heir.start_in_thread():
        assert tried.wait(5) and tries == [(tries[0][0], False)]
        time.sleep(0.05)  # past the drift of the heir's loop: its 4th try falls before expiry
        died = time.monotonic()  # the ghost's last renewal, just after the heir's try
        assert ghost.try_lead()
        wait_until(lambda: heir.plugins.is_leader, 5)
        won_at = next(at for at, won in tries if won)
    takeover = won_at - died
    assert lease - 0.01 <= takeover <= lease + 0.25, f"took over {takeover:.3f}s after the death"
    assert sum(1 for _, won in tries if not won) <= 6  # woke at the expiry, did not spin
