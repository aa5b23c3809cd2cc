"""Several nodes in separate processes sharing one database (PostgreSQL, and one SQLite file):
cron once per tick across a killed leader, fast takeover, and rescue of a kill -9'd node's
jobs (nothing lost, no live job rescued). Figures are printed (run with -s to see them)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobsaga import App, JobState
from tests.helpers import wait_until

from .node_proc import Long, Work
from .support import rows

ROOT = Path(__file__).resolve().parents[2]

LEASE = 1.0
RESCUE_AFTER = 1.0
"""Short timings (four heartbeats of 0.25 s per rescue window): a dead leader is replaced and
a dead node's jobs rescued about a second after the kill."""


class Procs:
    def __init__(self, url: str) -> None:
        self.url = url
        self.procs: dict[str, subprocess.Popen[str]] = {}

    def start(self, name: str, *args: str) -> subprocess.Popen[str]:
        self.spawn(name, *args)
        return self.wait_ready(name)

    def spawn(self, name: str, *args: str) -> None:
        """Start a node process without waiting for it: several start side by side."""
        self.procs[name] = subprocess.Popen(
            [sys.executable, "-m", "tests.plugins.node_proc", self.url, name, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )

    def wait_ready(self, name: str) -> subprocess.Popen[str]:
        proc = self.procs[name]
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        line = proc.stdout.readline() if ready else ""
        assert line.strip() == "ready", f"node {name} did not start: {line!r}"
        return proc

    def kill9(self, name: str) -> None:
        self.procs[name].send_signal(signal.SIGKILL)
        self.procs[name].wait(10)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def procs(db_url: str, make_app: Callable[..., App]) -> Iterator[Procs]:
    make_app()  # migrate once, before the nodes race to
    group = Procs(db_url)
    yield group
    group.stop_all()


def leader(app: App) -> str | None:
    found = rows(app, "SELECT node, expires_at FROM jobsaga_leader")
    if not found:
        return None
    expires = app.engine.time_value(found[0]["expires_at"])
    return str(found[0]["node"]) if expires and expires > app.clock() else None


def ticks_of(app: App) -> dict[str, list[datetime]]:
    """The cron ticks inserted so far, by entry name, in order."""
    found: dict[str, list[datetime]] = {name: [] for name, _ in CRON_STEPS}
    for row in rows(app, "SELECT meta FROM jobsaga_jobs"):
        meta = app.engine.stored_json(row["meta"])
        found[meta["cron_name"]].append(datetime.fromisoformat(meta["cron_tick"]))
    return {name: sorted(ticks) for name, ticks in found.items()}


CRON_STEPS = (("every-second", 1), ("every-2s", 2))
"""node_proc's crontab: entry name, seconds between ticks."""


def test_three_nodes_cron_each_tick_once_across_a_killed_leader(
    procs: Procs, make_app: Callable[..., App]
) -> None:
    """The lease is 1 s (the nodes renew every 1/3 s): the ticks run on across the kill, each
    once, none missed, from before it until after the new leader took over."""
    app = make_app()
    names = ("cron-a", "cron-b", "cron-c")
    for name in names:
        procs.spawn(name, "--cron", "--lease", str(LEASE))
    for name in names:
        procs.wait_ready(name)
    first = wait_until(lambda: leader(app), 10)

    def two_seconds_of_ticks(since: datetime | None = None) -> bool:
        found = ticks_of(app)
        return all(
            len([t for t in found[name] if since is None or t > since]) >= 2 // step
            for name, step in CRON_STEPS
        )

    wait_until(two_seconds_of_ticks, 10)
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    procs.kill9(first)
    new = wait_until(lambda: (who := leader(app)) and who != first and who, 15)
    takeover, took_over_wall = time.monotonic() - killed_at, datetime.now(UTC)
    wait_until(lambda: two_seconds_of_ticks(since=took_over_wall), 10)
    procs.stop_all()

    found = ticks_of(app)
    for name, step in CRON_STEPS:
        ticks = found[name]
        assert len(ticks) == len(set(ticks)), f"{name}: a tick was inserted twice"
        gaps = {b - a for a, b in zip(ticks, ticks[1:], strict=False)}
        assert gaps == {timedelta(seconds=step)}, f"{name}: missed ticks {gaps}"
        # so no tick was missed from before the kill until after the takeover
        assert len([t for t in ticks if t < killed_wall]) >= 2 // step, (name, ticks, killed_wall)
        assert len([t for t in ticks if t > took_over_wall]) >= 2 // step, (name, ticks)
    print(
        f"\n{app.engine.dialect} cron: {sum(map(len, found.values()))} jobs from 3 nodes, each "
        f"tick once; leader {first} killed, {new} took over in {takeover:.2f}s (lease {LEASE}s)"
    )
    assert takeover < 2 * LEASE


def test_killed_node_jobs_rescued_and_completed_no_live_job_rescued(
    procs: Procs, make_app: Callable[..., App]
) -> None:
    """The survivor's own job runs three rescue windows long: the lifeline, looking every
    quarter window, leaves it alone because its node beats, however old its claim."""
    app = make_app(Work, Long)
    work = app.insert_all([Work.new({"i": i}) for i in range(6)])
    timings = ("--rescue-after", str(RESCUE_AFTER), "--lease", str(LEASE))
    procs.start("victim-1", "--queue", "work=6", *timings)
    wait_until(lambda: all(app.get_job(j.id).attempted_by == "victim-1" for j in work), 10)  # type: ignore[union-attr]
    procs.start("survivor-1", "--queue", "work=6", "--queue", "long=1", *timings)
    long_job = app.insert(Long.new({"seconds": 3 * RESCUE_AFTER}))
    wait_until(lambda: app.get_job(long_job.id).state is JobState.EXECUTING, 10)  # type: ignore[union-attr]
    victim_led = leader(app) == "victim-1"  # it started first, so it normally leads

    killed_at = time.monotonic()
    procs.kill9("victim-1")
    wait_until(lambda: all(app.get_job(j.id).state is JobState.COMPLETED for j in work), 20)  # type: ignore[union-attr]
    rescued_in = time.monotonic() - killed_at
    wait_until(lambda: app.get_job(long_job.id).state is JobState.COMPLETED, 20)  # type: ignore[union-attr]

    for job in work:
        done = app.get_job(job.id)
        assert done is not None and done.attempt == 2 and done.attempted_by == "survivor-1"
        (orphaned,) = done.errors
        assert orphaned["kind"] == "orphaned" and "victim-1" in orphaned["error"]
    final = app.get_job(long_job.id)
    assert final is not None and final.attempt == 1 and final.errors == ()
    total = rows(app, "SELECT count(*) AS n FROM jobsaga_jobs WHERE state = 'completed'")
    assert int(total[0]["n"]) == 7
    print(
        f"\n{app.engine.dialect} lifeline: 6 jobs of a kill -9'd node (leader: {victim_led}) rescued "
        "and completed "
        f"{rescued_in:.2f}s after the kill (rescue_after {RESCUE_AFTER}s, lease {LEASE}s); "
        f"the survivor's {3 * RESCUE_AFTER}s job ran once"
    )
    assert rescued_in < 2 * (RESCUE_AFTER + LEASE)  # a takeover, then a rescue window


def test_node_restarted_under_its_fixed_name_rescues_its_jobs_at_start(
    procs: Procs, make_app: Callable[..., App]
) -> None:
    """A StatefulSet-style restart: same name, new process. It takes the name over from the
    dead process (which no longer beats) and rescues its jobs at once, before rescue_after."""
    app = make_app(Work)
    work = app.insert_all([Work.new({"i": i}) for i in range(3)])
    args = ("--queue", "work=3", "--rescue-after", "30")
    procs.start("victim-fixed", *args)
    wait_until(lambda: all(app.get_job(j.id).state is JobState.EXECUTING for j in work), 10)  # type: ignore[union-attr]
    procs.kill9("victim-fixed")
    restarted = time.monotonic()
    procs.start("victim-fixed", *args)
    wait_until(lambda: all(app.get_job(j.id).state is JobState.COMPLETED for j in work), 10)  # type: ignore[union-attr]
    took = time.monotonic() - restarted
    for job in work:
        done = app.get_job(job.id)
        assert done is not None and done.attempt == 2
        assert "same name started" in done.errors[0]["error"]
    print(
        f"\n{app.engine.dialect} restart under a fixed name: 3 jobs of the killed process rescued and "
        f"completed {took:.2f}s after the restart began (rescue_after 30s)"
    )
    assert took < 10
