"""Bad data fails alone, under a real node (issue 9, faults 3 and 4).

- An undecodable row in a fetch batch (``tags`` a JSON object, ``args`` a JSON string, as a
  hand edit or another tool could leave it): it fails alone with a recorded error, and its
  batch-mates run.
- An outcome the database refuses or cannot hold (an error text with a NUL character, which
  PostgreSQL's jsonb refuses; a follow-up scheduled in the year 9999): the node keeps
  acknowledging other jobs and shuts down cleanly on SIGTERM.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest

from jobsaga import App

from .chaos_app import FailsWithNul, FarFollowUp, Record, read_log
from .chaos_app import app as chaos_app
from .nodes import Nodes
from .probe import Probe, report

pytestmark = [pytest.mark.chaos, pytest.mark.xdist_group("chaos-nodes")]

FINAL_OR_WAITING = {"completed", "discarded", "cancelled", "retryable", "scheduled", "available"}


def test_an_undecodable_row_fails_alone_and_its_batch_mates_run(
    db_url: str, make_app: Callable[..., App], make_nodes: Callable[..., Nodes], engine_name: str
) -> None:
    app = make_app(*chaos_app.workers.values())
    probe = Probe(db_url)
    jobs = app.insert_all([Record.new({"i": i}) for i in range(10)])
    bad_tags, bad_args = jobs[3].id, jobs[7].id
    cast = "::jsonb" if engine_name == "postgres" else ""
    probe.execute(
        f"""UPDATE jobsaga_jobs SET tags = '{{"a": 1}}'{cast} WHERE id = %s""", [bad_tags]
    )
    probe.execute(
        f"""UPDATE jobsaga_jobs SET args = '"a string"'{cast} WHERE id = %s""", [bad_args]
    )
    good = {j.id for j in jobs} - {bad_tags, bad_args}

    nodes = make_nodes(db_url)
    probe.context = nodes.logs
    started = time.monotonic()
    nodes.start("n", {"work": 20})  # one fetch takes the whole batch, bad rows included
    probe.wait_for(
        lambda: all(j["state"] == "completed" for j in probe.jobs() if j["id"] in good),
        15,
        "the bad rows' batch-mates completed",
    )
    mates_in = time.monotonic() - started
    probe.wait_for(
        lambda: all(
            j["state"] != "executing" and j["errors"]
            for j in probe.jobs()
            if j["id"] in (bad_tags, bad_args)
        ),
        15,
        "each bad row failed alone with a recorded error",
    )
    later = app.insert_all([Record.new({"later": i}) for i in range(5)])
    probe.wait_for(
        lambda: all(
            j["state"] == "completed" for j in probe.jobs() if j["id"] in {x.id for x in later}
        ),
        15,
        "jobs inserted afterwards completed",
    )
    by_id = {j["id"]: j for j in probe.jobs()}
    runs = Counter(int(line[1]) for line in read_log(nodes.chaos_log) if line[0] == "run")
    report(
        "undecodable_row_in_batch",
        engine=engine_name,
        batch=len(jobs),
        mates_completed=sum(by_id[i]["state"] == "completed" for i in good),
        bad_rows={str(i): by_id[i]["state"] for i in (bad_tags, bad_args)},
        mates_seconds=round(mates_in, 2),
    )
    assert runs[bad_tags] == 0 and runs[bad_args] == 0  # never performed with garbage
    for bad in (bad_tags, bad_args):
        assert by_id[bad]["state"] in FINAL_OR_WAITING - {"completed"}
        assert by_id[bad]["errors"][-1]["error"]
    assert nodes.alive() == ["n"]
    assert nodes.stop("n") == 0, nodes.log("n")


def test_an_unwritable_outcome_does_not_stop_the_node(
    db_url: str, make_app: Callable[..., App], make_nodes: Callable[..., Nodes], engine_name: str
) -> None:
    app = make_app(*chaos_app.workers.values())
    probe = Probe(db_url)
    nodes = make_nodes(db_url)
    probe.context = nodes.logs
    nodes.start("n", {"work": 5}, grace=2.0)
    nul = app.insert(FailsWithNul.new({}))
    far = app.insert(FarFollowUp.new({}))
    first = app.insert_all([Record.new({"i": i}) for i in range(20)])
    probe.wait_for(
        lambda: all(
            j["state"] == "completed"
            for j in probe.jobs(Record.name)
            if j["id"] in {x.id for x in first}
        ),
        20,
        "jobs acknowledged alongside the bad outcomes",
    )
    probe.wait_for(
        lambda: all(j["state"] != "executing" for j in probe.jobs() if j["id"] in (nul.id, far.id)),
        20,
        "the bad outcomes written (cleaned) or recorded as failed",
    )
    later = app.insert_all([Record.new({"later": i}) for i in range(20)])
    probe.wait_for(
        lambda: all(
            j["state"] == "completed"
            for j in probe.jobs(Record.name)
            if j["id"] in {x.id for x in later}
        ),
        20,
        "jobs inserted afterwards acknowledged",
    )
    stopping = time.monotonic()
    code = nodes.stop("n", timeout=20)
    stopped_in = time.monotonic() - stopping
    by_id = {j["id"]: j for j in probe.jobs()}
    report(
        "unwritable_outcome",
        engine=engine_name,
        nul_error_job=by_id[nul.id]["state"],
        far_follow_up_job=by_id[far.id]["state"],
        others_acknowledged=len(first) + len(later),
        shutdown_seconds=round(stopped_in, 2),
        exit_code=code,
    )
    assert code == 0, nodes.log("n")
    assert by_id[nul.id]["state"] == "discarded"  # two attempts, each failure recorded
    assert len(by_id[nul.id]["errors"]) == 2
    assert all("bad byte" in e["error"] for e in by_id[nul.id]["errors"])
    assert by_id[far.id]["state"] in FINAL_OR_WAITING
    assert stopped_in < 10
