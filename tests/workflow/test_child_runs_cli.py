"""``jobsaga runs list`` / ``runs show`` for child runs and halted runs, both engines.

The runs are written through the run log itself (as the executor writes them), so the CLI is
tested on exactly what it will read: a halted parent with a composed child and a recurse
iteration that failed.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any

from click.testing import CliRunner

from jobsaga import App
from jobsaga.cli.main import cli
from jobsaga.workflow.runlog import ParentLink, _step_row
from tests.workflow.test_child_runs_log import (
    CHILD,
    PARENT,
    Holder,
    new_job,
    opened,
    set_status,
    succeed,
)


async def halted_family(app: App, job_id: int) -> dict[str, int]:
    """A parent halted by its step ``a`` (value {"amount": 5}), with a succeeded child for
    its step ``ship`` and a failed iteration 2 for its step ``loop``, resumed after a halt."""
    now = app.clock
    parent, _ = await opened(app, PARENT, job_id=job_id, steps=("a", "ship", "loop"))
    assert parent.run_id is not None
    for position, name in enumerate(("ship", "loop"), start=1):
        parent.step(_step_row(name, position, "running"), "step.started", now())
    shipped, _ = await opened(app, CHILD, job_id=job_id, parent=ParentLink(parent.run_id, "ship"))
    succeed(app, shipped, "a", "box")
    set_status(app, shipped, "succeeded", finished=True)
    looped, _ = await opened(app, CHILD, job_id=job_id, parent=ParentLink(parent.run_id, "loop", 2))
    looped.event(
        "run.resumed", now(), detail={"attempt": 2, "after_halt": True, "inputs": {"ok": True}}
    )
    looped.set_run(
        "rolled_back",
        now(),
        error={"step": "a", "type": "builtins.ValueError", "message": "no stock"},
        finished=True,
    )
    succeed(app, parent, "a", {"amount": 5})
    parent.event("step.halted", now(), step="a", detail={"value": {"amount": 5}})
    parent.event("run.halted", now())
    set_status(app, parent, "halted")
    for log in (shipped, looped, parent):
        await log.flush()
    return {"parent": parent.run_id, "ship": shipped.run_id, "loop": looped.run_id}  # type: ignore[dict-item]


def test_runs_show_links_parents_and_children(db_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(Holder)
    ids = asyncio.run(halted_family(app, new_job(app)))
    pid = ids["parent"]
    runner = CliRunner()

    def show(run_id: int, *more: str) -> str:
        result = runner.invoke(cli, ["runs", "show", str(run_id), "--url", db_url, *more])
        assert result.exit_code == 0, result.output
        return result.output

    out = show(pid)
    assert f"run {pid}  {PARENT}  halted" in out and "child of" not in out
    assert "halted by step 'a': {\"amount\": 5}" in out
    assert f"resume: jobsaga runs resume {pid} --input key=value --url " in out
    table = out[out.index("child runs:") :].splitlines()
    assert table[1].split() == ["RUN", "STATUS", "STEP", "ITERATION", "WORKFLOW", "ERROR"]
    assert table[2].split() == [str(ids["ship"]), "succeeded", "ship", "0", CHILD]
    assert table[3].split()[:5] == [str(ids["loop"]), "rolled_back", "loop", "2", CHILD]
    assert "at 'a': ValueError: no stock" in table[3]
    assert "other runs of job" not in out  # its children are listed as children
    assert "  loop  interrupted, outcome unknown" in out  # its child did not halt
    trail = out[out.index("trail (times UTC):") :]
    assert 'halted: {"amount": 5}' in trail
    assert "run halted: waits for a resume (jobsaga runs resume)" in trail

    out = show(ids["loop"])
    assert f"child of run {pid} (step 'loop', iteration 2)" in out
    assert "child runs:" not in out
    assert 'run resumed by attempt 2 after the halt, inputs {"ok": true}' in out
    assert f"child of run {pid} (step 'ship')\n" in show(ids["ship"])

    data = json.loads(show(pid, "--json"))
    assert (data["parent_run_id"], data["parent_step"], data["iteration"]) == (None, None, 0)
    assert [(c["id"], c["parent_step"], c["iteration"], c["status"]) for c in data["children"]] == [
        (ids["ship"], "ship", 0, "succeeded"),
        (ids["loop"], "loop", 2, "rolled_back"),
    ]
    assert [r["id"] for r in data["job_runs"]] == [pid]
    child = json.loads(show(ids["loop"], "--json"))
    assert (child["parent_run_id"], child["parent_step"], child["iteration"]) == (pid, "loop", 2)
    assert child["children"] == []


def test_a_step_whose_child_run_halted_is_shown_halted(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(Holder)
    job_id = new_job(app)

    async def main() -> tuple[int, int]:
        parent, _ = await opened(app, PARENT, job_id=job_id, steps=("ship",))
        parent.step(_step_row("ship", 0, "running"), "step.started", app.clock())
        child, _ = await opened(app, CHILD, job_id=job_id, parent=ParentLink(parent.run_id, "ship"))
        succeed(app, child, "a", {"wait": "approval"})
        child.event("step.halted", app.clock(), step="a", detail={"value": "approval"})
        for log in (child, parent):
            set_status(app, log, "halted")
            await log.flush()
        return parent.run_id, child.run_id  # type: ignore[return-value]

    parent_id, child_id = asyncio.run(main())
    shown = CliRunner().invoke(cli, ["runs", "show", str(parent_id), "--url", db_url])
    assert shown.exit_code == 0, shown.output
    assert f"  ship  halted in child run {child_id}" in shown.output
    shown = CliRunner().invoke(cli, ["runs", "show", str(child_id), "--url", db_url])
    assert shown.exit_code == 0, shown.output
    assert "halted by step 'a': \"approval\"" in shown.output
    assert f"resumed with its parent run {parent_id}: jobsaga runs show {parent_id} --url" in (
        shown.output
    )
    assert "runs resume" not in shown.output


def test_runs_list_says_whose_child_a_run_is(db_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(Holder)
    ids = asyncio.run(halted_family(app, new_job(app)))
    pid = ids["parent"]
    runner = CliRunner()

    def listed(*more: str) -> str:
        result = runner.invoke(cli, ["runs", "list", "--url", db_url, *more])
        assert result.exit_code == 0, result.output
        return result.output

    lines = listed().splitlines()
    assert "PARENT" in lines[0].split()
    rows = {int(line.split()[0]): line for line in lines[1:]}
    assert f" {pid}:ship " in rows[ids["ship"]] and f" {pid}:loop#2 " in rows[ids["loop"]]
    # its own PARENT cell is blank: no "N:step" in its row (a clock's "11:29" is no step)
    assert "halted" in rows[pid] and not re.search(r"\b\d+:[a-z_]", rows[pid])

    lines = listed("--parent", str(pid)).splitlines()
    assert sorted(int(line.split()[0]) for line in lines[1:]) == [ids["ship"], ids["loop"]]

    halted = listed("--status", "halted")
    assert "PARENT" not in halted  # no child listed: the table is as it was
    assert [int(line.split()[0]) for line in halted.splitlines()[1:]] == [pid]

    documents: list[dict[str, Any]] = [json.loads(line) for line in listed("--json").splitlines()]
    by_id = {d["id"]: d for d in documents}
    assert (by_id[ids["loop"]]["parent_run_id"], by_id[ids["loop"]]["parent_step"]) == (pid, "loop")
    assert by_id[ids["loop"]]["iteration"] == 2
    assert (by_id[pid]["parent_run_id"], by_id[pid]["parent_step"]) == (None, None)
