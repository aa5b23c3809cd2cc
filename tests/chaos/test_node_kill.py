"""kill -9 of a node with jobs in flight: nothing lost, the dead node's jobs run again on a
survivor (at-least-once), and the survivor's own live jobs are not rescued (run once)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from jobsaga import App

from .chaos_app import Record, read_log
from .chaos_app import app as chaos_app
from .nodes import FAST, Nodes
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-nodes")]

IN_FLIGHT = 20


def test_kill9_node_with_jobs_in_flight_loses_nothing_and_rescues_no_live_job(
    db_url: str,
    make_app: Callable[..., App],
    make_nodes: Callable[..., Nodes],
    engine_name: str,
    tmp_path: Path,
) -> None:
    app = make_app(*chaos_app.workers.values())
    probe = Probe(db_url)
    nodes = make_nodes(db_url)
    probe.context = nodes.logs
    # Jobs stay in flight until the test releases them (a file appears), not for a guessed time.
    release_victims, release_survivors = tmp_path / "victims", tmp_path / "survivors"
    victim_jobs = app.insert_all(
        [Record.new({"until": str(release_victims)}) for _ in range(IN_FLIGHT)]
    )
    nodes.start("victim", {"work": IN_FLIGHT})
    probe.wait_for(lambda: probe.states()["executing"] == IN_FLIGHT, 15, "victim busy")
    nodes.start("survivor", {"work": 2 * IN_FLIGHT})
    survivor_jobs = app.insert_all(
        [Record.new({"until": str(release_survivors)}) for _ in range(IN_FLIGHT)]
    )
    probe.wait_for(lambda: probe.states()["executing"] == 2 * IN_FLIGHT, 15, "both busy")

    killed = time.monotonic()
    nodes.kill9("victim")
    release_victims.touch()  # their second attempt, on the survivor, ends at once
    victim_ids = {j.id for j in victim_jobs}
    probe.wait_for(
        lambda: all(
            j["state"] == "completed" and j["attempted_by"] == "survivor"
            for j in probe.jobs()
            if j["id"] in victim_ids
        ),
        20,
        "victim's jobs rescued and completed by the survivor",
    )
    rescued_in = time.monotonic() - killed
    # The survivor's own jobs were executing all along, through the rescue: none was touched.
    assert probe.states(Record.name)["executing"] == IN_FLIGHT
    release_survivors.touch()
    probe.wait_for(lambda: probe.states() == {"completed": 2 * IN_FLIGHT}, 20, "all completed")
    assert nodes.alive() == ["survivor"]

    runs = Counter(int(line[1]) for line in read_log(nodes.chaos_log) if line[0] == "run")
    by_id = {j["id"]: j for j in probe.jobs()}
    lost = sum(1 for j in by_id.values() if j["state"] != "completed")
    survivors_rescued = [j.id for j in survivor_jobs if by_id[j.id]["attempt"] != 1]
    report(
        "kill9_node_in_flight",
        engine=engine_name,
        jobs=2 * IN_FLIGHT,
        in_flight_on_killed_node=IN_FLIGHT,
        lost=lost,
        live_jobs_rescued=len(survivors_rescued),
        ran_twice=sum(1 for n in runs.values() if n > 1),
        rescued_and_completed_seconds=round(rescued_in, 2),
        rescue_after=FAST["rescue_after"],
        heartbeat=FAST["heartbeat"],
    )
    assert lost == 0
    assert survivors_rescued == [], "a live node's job was rescued"
    assert all(runs[j.id] == 1 and by_id[j.id]["errors"] == [] for j in survivor_jobs)
    for job in victim_jobs:  # killed mid-run: ran twice, the first attempt recorded orphaned
        assert runs[job.id] == 2 and by_id[job.id]["attempt"] == 2
        (orphaned,) = by_id[job.id]["errors"]
        assert orphaned["kind"] == "orphaned"
