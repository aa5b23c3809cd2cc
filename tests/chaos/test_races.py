"""Processes racing on one database: 4 processes x 50 threads inserting the same unique jobs
(both engines) create exactly one row per key; two real nodes on one SQLite file run every
job exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from jobsaga import App

from .chaos_app import Record, UniqueJob, read_log
from .chaos_app import app as chaos_app
from .nodes import ROOT, Nodes
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-nodes")]

PROCESSES = 4
THREADS = 50
KEYS = 10


def test_four_processes_of_fifty_threads_insert_one_row_per_unique_key(
    db_url: str, make_app: Callable[..., App], engine_name: str
) -> None:
    make_app(*chaos_app.workers.values())  # migrated before the race
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, "-m", "tests.chaos.racer", db_url, str(KEYS), str(THREADS)]
    racers = [
        subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    for racer in racers:  # each connected, its threads waiting at the start line
        assert racer.stdout is not None
        line = racer.stdout.readline()
        assert line.strip() == "ready", (line, racer.stderr.read() if racer.stderr else "")
    started = time.monotonic()
    for racer in racers:  # the start line, to all of them at once
        assert racer.stdin is not None
        racer.stdin.write("go\n")
        racer.stdin.flush()
    outputs = [racer.communicate(timeout=120) for racer in racers]
    took = time.monotonic() - started
    for racer, (_out, err) in zip(racers, outputs, strict=True):
        assert racer.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    created: Counter[str] = Counter()
    for result in results:
        created.update(result["created"])
    errors = [e for result in results for e in result["errors"]]

    probe = Probe(db_url)
    rows = Counter(str(j["args"]["key"]) for j in probe.jobs(UniqueJob.name))
    report(
        "unique_insert_race",
        engine=engine_name,
        processes=PROCESSES,
        threads_each=THREADS,
        keys=KEYS,
        inserts=PROCESSES * THREADS * KEYS,
        rows=sum(rows.values()),
        duplicate_rows=sum(n - 1 for n in rows.values() if n > 1),
        errors=len(errors),
        seconds=round(took, 2),
    )
    assert errors == []
    assert rows == {str(k): 1 for k in range(KEYS)}
    assert created == {str(k): 1 for k in range(KEYS)}  # one insert per key was told "created"


def test_two_nodes_on_one_sqlite_file_run_every_job_exactly_once(
    tmp_path: Path, make_nodes: Callable[..., Nodes]
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    app = App(url, workers=list(chaos_app.workers.values()))
    app.migrate()
    probe = Probe(url)
    nodes = make_nodes(url)
    probe.context = nodes.logs
    nodes.start_together(["a", "b"], {"work": 10})
    jobs = 2000
    started = time.monotonic()
    app.insert_all([Record.new({"seconds": 0.002}) for _ in range(jobs)])
    app.close()
    probe.wait_for(lambda: probe.states() == {"completed": jobs}, 120, "all completed")
    took = time.monotonic() - started
    runs = Counter(int(line[1]) for line in read_log(nodes.chaos_log) if line[0] == "run")
    by_node = Counter(j["attempted_by"] for j in probe.jobs())
    report(
        "two_nodes_one_sqlite_file",
        jobs=jobs,
        ran_once=sum(1 for n in runs.values() if n == 1),
        ran_twice=sum(1 for n in runs.values() if n > 1),
        never_ran=jobs - len(runs),
        by_node=dict(by_node),
        seconds=round(took, 2),
    )
    assert len(runs) == jobs and set(runs.values()) == {1}
    assert set(by_node) == {"a", "b"}  # both nodes took a share
    for name in ("a", "b"):
        assert nodes.stop(name) == 0, nodes.log(name)
