"""What a person reads about composed sagas: mistakes named where they are when the class is
defined, and `jobsaga runs show` telling why a run halted (a child run, a timeout) and an
operator's rollback of a halted run as what it is, on both engines."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from jobsaga import App, Case, Halt, Map, Switch, Workflow, WorkflowWorker, compose, step
from jobsaga.cli.main import cli
from jobsaga.errors import WorkflowDefinitionError
from jobsaga.workflow import aroll_back_run, get_run
from jobsaga.workflow.running import execute
from tests.workflow.attempts import attempt_of


class Gate(Workflow, inputs=["room"]):
    @step
    def hold(self, room: str) -> str:
        return f"h-{room}"

    @step
    def gate(self, hold: str) -> Any:
        return Halt("waiting")


class Stay(Workflow, inputs=["room"]):
    kid = compose(Gate, inputs={"room": "room"})


class StayWorker(WorkflowWorker, workflow=Stay, name="messages.stay"):
    pass


class Slow(Workflow, inputs=["x"]):
    @step(timeout=0.05, on_timeout="halt")
    async def waits(self, x: int) -> int:
        await asyncio.sleep(5)
        return x


class SlowWorker(WorkflowWorker, workflow=Slow, name="messages.slow"):
    pass


def show(db_url: str, run_id: int | None) -> str:
    result = CliRunner().invoke(cli, ["runs", "show", str(run_id), "--url", db_url])
    assert result.exit_code == 0, result.output
    return result.output


def test_runs_show_says_why_a_run_halted(db_url: str, make_app: Callable[..., App]) -> None:
    app = make_app()
    app.register(StayWorker)
    app.register(SlowWorker)
    stay = app.insert(StayWorker.new({"room": "12"}))
    slow = app.insert(SlowWorker.new({"x": 1}))

    async def scenario() -> tuple[Any, Any]:
        return (
            await execute(app, Stay, {"room": "12"}, job=attempt_of(stay, 1)),
            await execute(app, Slow, {"x": 1}, job=attempt_of(slow, 1)),
        )

    by_child, by_timeout = asyncio.run(scenario())
    parent = get_run(app, by_child.run_id)
    assert parent is not None
    child = parent.children[0].id
    out = show(db_url, by_child.run_id)
    assert re.search(rf"^  kid +halted in child run {child}$", out, re.M)
    assert f"halted: its step 'kid' composed child run {child}, which halted" in out
    out = show(db_url, by_timeout.run_id)
    assert "halted: step 'waits' ran past its timeout" in out
    assert "ran past its timeout of 50 ms: the run halts" in out


def test_an_operators_rollback_of_a_halted_run_is_no_resume(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.register(StayWorker)
    job = app.insert(StayWorker.new({"room": "9"}))

    async def scenario() -> Any:
        halted = await execute(app, Stay, {"room": "9"}, job=attempt_of(job, 1))
        return await aroll_back_run(app, halted.run_id, force=True, reason="guest left")

    result = asyncio.run(scenario())
    record = get_run(app, result.run_id)
    assert record is not None
    resumed = record.events_of("run.resumed")
    assert resumed and not any((e.detail or {}).get("after_halt") for e in resumed)
    assert record.events_of("run.abandoned")[0].detail["reason"] == "guest left"


def test_mistakes_in_parts_are_named_where_they_are() -> None:
    with pytest.raises(
        WorkflowDefinitionError,
        match=r"switch .*pay, case 'card', when: 'methd' names 'methd'.*did you mean 'method'",
    ):

        class Pay(Workflow, inputs=["method"]):
            class pay(Switch):
                class card(Case, when=lambda methd: methd == "card"):
                    @step
                    def charge(self, method: str) -> str:
                        return method

    with pytest.raises(WorkflowDefinitionError, match=r"map .*each, over: .*'itms'.*'items'"):

        class Each(Workflow, inputs=["items"]):
            class each(Map, over="itms"):
                @step
                def touch(self, element: Any) -> Any:
                    return element

    with pytest.raises(
        WorkflowDefinitionError, match=r"unknown option 'batchsize': did you mean 'batch_size'"
    ):

        class Batched(Workflow, inputs=["items"]):
            class each(Map, over="items", batchsize=3):
                @step
                def touch(self, element: Any) -> Any:
                    return element

    with pytest.raises(WorkflowDefinitionError, match=r"input\(s\) \['room'\] are not given"):

        class Unwired(Workflow, inputs=["other"]):
            kid = compose(Gate, inputs={})


class Big(Workflow, inputs=["n"]):
    @step
    def load(self, n: int) -> list[int]:
        return list(range(n))

    class each(Map, over="load", element="i", max_concurrency=4):
        @step
        def pack(self, i: int) -> int:
            return i

        @pack.undo
        def unpack(self, pack: int) -> None:
            pass

        @step
        def label(self, pack: int) -> int:
            if pack == 37:
                raise RuntimeError("element 37 broke")
            return pack


def test_runs_show_lists_a_big_maps_elements_that_matter(
    db_url: str, make_app: Callable[..., App]
) -> None:
    from jobsaga.testing import run_workflow

    app = make_app()
    result = run_workflow(Big, {"n": 50}, app=app)
    out = show(db_url, result.run_id)
    lines = out.splitlines()
    names = [line.split()[0] for line in lines if line.startswith("  each[")]
    assert names[:6] == [f"each[{i}].{s}" for i in range(3) for s in ("pack", "label")]
    assert "each[37].label" in names and "each[20].pack" not in names
    assert "each[49].pack" not in names  # never started (at most 4 in flight): counted
    assert re.search(r"… elements 3-36, (\S+, )*\d+-49 of each not listed", out), out
    assert lines.index(next(line for line in lines if line.startswith("  each "))) < lines.index(
        next(line for line in lines if line.startswith("  each[0].pack"))
    )  # a part's steps right under it
    verbose = CliRunner().invoke(cli, ["runs", "show", str(result.run_id), "--url", db_url, "-v"])
    assert "each[20].pack" in verbose.output and "not listed" not in verbose.output


def test_more_definition_mistakes_are_named() -> None:
    from jobsaga import Default, Group

    with pytest.raises(WorkflowDefinitionError, match=r"one Default case at most \('a' and 'b'"):

        class TwoDefaults(Workflow, inputs=["x"]):
            class pick(Switch):
                class a(Default):
                    @step
                    def one(self, x: int) -> int:
                        return x

                class b(Default):
                    @step
                    def two(self, x: int) -> int:
                        return x

    with pytest.raises(WorkflowDefinitionError, match=r"case 'loose' belongs in a Switch"):

        class Loose(Workflow, inputs=["x"]):
            class loose(Case, when=lambda x: True):
                @step
                def one(self, x: int) -> int:
                    return x

    with pytest.raises(WorkflowDefinitionError, match=r"duplicate step 'm'"):

        class Twice(Workflow, inputs=["items"]):
            @step
            def m(self, items: list[int]) -> list[int]:
                return items

            class m(Map, over="items"):  # noqa: F811 - the mistake under test
                @step
                def touch(self, element: Any) -> Any:
                    return element

    with pytest.raises(WorkflowDefinitionError, match=r"waits for unknown step 'aduit'.*'audit'"):

        class Waits(Workflow, inputs=["x"]):
            @step
            def audit(self, x: int) -> None:
                return None

            class book(Group):
                @step(wait_for=["aduit"])
                def debit(self, x: int) -> int:
                    return x
