"""Every completed step of every part is undone exactly once, whatever attempt ran it, on
both engines: a compose step an earlier attempt completed, a recurse that fails at a later
iteration, a halted child whose parent is abandoned, an around group whose rollback was cut
short, a map whose collection changed with a resume's inputs; and a resume is never lost to
a crash right after the run was taken up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from jobsaga import (
    App,
    Group,
    Halt,
    Map,
    StepContext,
    Workflow,
    WorkflowWorker,
    compose,
    recurse,
    step,
)
from jobsaga.errors import WorkflowDefinitionError
from jobsaga.testing import run_workflow
from jobsaga.workflow import RunStatus, aroll_back_run, get_run
from jobsaga.workflow.running import execute
from tests.workflow.attempts import attempt_of, cut_short
from tests.workflow.conftest import TRAIL

ATTEMPT = {"now": 1}


@pytest.fixture(autouse=True)
def first_attempt() -> Iterator[None]:
    ATTEMPT["now"] = 1
    yield


class Parcel(Workflow, inputs=["order"]):
    @step
    def label(self, order: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"label@{ctx.attempt}")
        return f"label-{order}"

    @label.undo
    def void(self, label: str, ctx: StepContext[Any]) -> None:
        TRAIL.append(f"void {label}@{ctx.attempt}")


class Invoiced(Workflow, inputs=["order"]):
    shipment = compose(Parcel, inputs={"order": "order"})

    @step
    async def invoice(self, shipment: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"invoice@{ctx.attempt}")
        if ctx.attempt == 1:
            await asyncio.Event().wait()  # the attempt is cut short here
        raise RuntimeError("invoicing down")


class InvoicedWorker(WorkflowWorker, workflow=Invoiced, name="rollback.invoiced"):
    pass


def test_a_compose_step_an_earlier_attempt_completed_undoes_its_child(app: App) -> None:
    app.register(InvoicedWorker)
    job = app.insert(InvoicedWorker.new({"order": "o7"}))

    async def scenario() -> Any:
        await cut_short(app, Invoiced, job, {"order": "o7"}, "invoice@1")
        return await execute(app, Invoiced, {"order": "o7"}, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == ["label@1", "invoice@1", "invoice@2", "void label-o7@2"]
    parent = get_run(app, result.run_id)
    assert parent is not None and parent.children[0].status == "rolled_back"


class Halve(Workflow, inputs=["n"]):
    @step
    def cut(self, n: int) -> dict[str, int]:
        TRAIL.append(f"cut {n}")
        if n == 4:
            raise RuntimeError("boom at 4")
        return {"n": n // 2}

    @cut.undo
    def uncut(self, cut: dict[str, int]) -> None:
        TRAIL.append(f"uncut {cut['n']}")


class Halving(Workflow, inputs=["n"]):
    halving = recurse(Halve, inputs={"n": "n"}, max_iterations=5)


def test_a_recurse_failing_at_a_later_iteration_undoes_the_earlier_ones(app: App) -> None:
    result = run_workflow(Halving, {"n": 8}, app=app)
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == ["cut 8", "cut 4", "uncut 4"]  # iteration 0 undone once
    if result.run_id is not None:
        parent = get_run(app, result.run_id)
        assert parent is not None
        assert [(c.iteration, c.status) for c in parent.children] == [
            (0, "rolled_back"),
            (1, "failed"),  # its only step failed: nothing of it to undo
        ]


class Stay(Workflow, inputs=["room"]):
    @step
    def hold(self, room: str) -> str:
        TRAIL.append(f"hold {room}")
        return f"h-{room}"

    @hold.undo
    def free(self, hold: str) -> None:
        TRAIL.append(f"free {hold}")

    @step
    def confirm(self, hold: str) -> Any:
        return Halt("await the guest")


class Trip(Workflow, inputs=["room"]):
    booking = compose(Stay, inputs={"room": "room"})


class TripWorker(WorkflowWorker, workflow=Trip, name="rollback.trip"):
    pass


def test_abandoning_a_parent_whose_child_halted_rolls_the_child_back(app: App) -> None:
    app.register(TripWorker)
    job = app.insert(TripWorker.new({"room": "12"}))

    async def scenario() -> tuple[Any, Any]:
        halted = await execute(app, Trip, {"room": "12"}, job=attempt_of(job, 1))
        return halted, await aroll_back_run(app, halted.run_id, force=True)

    halted, result = asyncio.run(scenario())
    assert halted.halted
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == ["hold 12", "free h-12"]
    parent = get_run(app, result.run_id)
    assert parent is not None and parent.children[0].status == "rolled_back"


@contextlib.contextmanager
def nothing_to_hold() -> Iterator[None]:
    yield


class Booked(Workflow, inputs=["v"]):
    class book(Group, around=nothing_to_hold):
        @step
        def debit(self, v: int) -> int:
            TRAIL.append("debit")
            return v

        @debit.undo
        async def refund(self, debit: int) -> None:
            TRAIL.append(f"refund@{ATTEMPT['now']}")
            if ATTEMPT["now"] == 1:
                await asyncio.Event().wait()  # the rollback is cut short here

        @step
        def credit(self, debit: int) -> int:
            raise RuntimeError("account frozen")


class BookedWorker(WorkflowWorker, workflow=Booked, name="rollback.booked"):
    pass


def test_a_resumed_rollback_undoes_the_completed_steps_of_a_failed_around_group(
    app: App,
) -> None:
    app.register(BookedWorker)
    job = app.insert(BookedWorker.new({"v": 1}))

    async def scenario() -> Any:
        await cut_short(app, Booked, job, {"v": 1}, "refund@1")
        ATTEMPT["now"] = 2
        return await execute(app, Booked, {"v": 1}, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.status is RunStatus.ROLLED_BACK
    assert result.error is not None and result.error.undone == ("book.debit",)
    assert TRAIL == ["debit", "refund@1", "refund@2"]


class Reserve(Workflow, inputs=["items", "go"]):
    class each(Map, over="items", element="item"):
        @step
        def reserve(self, item: str) -> str:
            TRAIL.append(f"reserve {item}")
            return f"r-{item}"

        @reserve.undo
        def release(self, reserve: str) -> None:
            TRAIL.append(f"release {reserve}")

    @step
    def approve(self, each: list[str], go: bool) -> Any:
        return "ok" if go else Halt("wait")

    @step
    def pay(self, approve: str) -> str:
        raise RuntimeError("card declined")


class ReserveWorker(WorkflowWorker, workflow=Reserve, name="rollback.reserve"):
    pass


def test_a_map_is_rebuilt_from_the_collection_it_started_with(app: App) -> None:
    app.register(ReserveWorker)
    job = app.insert(ReserveWorker.new({"items": ["a", "b", "c"], "go": False}))

    async def scenario() -> Any:
        first = {"items": ["a", "b", "c"], "go": False}
        await execute(app, Reserve, first, job=attempt_of(job, 1))
        resumed = {"items": ["a"], "go": True}  # the resume changed the collection
        return await execute(app, Reserve, resumed, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.status is RunStatus.ROLLED_BACK
    assert sorted(t for t in TRAIL if t.startswith("release")) == [
        "release r-a",
        "release r-b",
        "release r-c",
    ]


class Approve(Workflow, inputs=["ok"]):
    @step
    def ask(self, ok: bool) -> Any:
        TRAIL.append("ask")
        return Halt("need approval")

    @step
    def ship(self, ask: str) -> str:
        TRAIL.append(f"ship after {ask}")
        return "shipped"


class ApproveWorker(WorkflowWorker, workflow=Approve, name="rollback.approve"):
    pass


def test_a_resume_is_not_lost_when_the_node_dies_right_after_the_takeover(app: App) -> None:
    app.register(ApproveWorker)
    job = app.insert(ApproveWorker.new({"ok": True}))

    async def scenario() -> Any:
        halted = await execute(app, Approve, {"ok": True}, job=attempt_of(job, 1))
        # attempt 2 takes the run up (its commit) and its node dies at once
        with app.engine.transaction() as tx:
            now = app.engine.time_param(app.clock())
            tx.execute(
                app.engine.queries["resume_run"], {"id": halted.run_id, "attempt": 2, "now": now}
            )
        return await execute(app, Approve, {"ok": True}, job=attempt_of(job, 3))

    result = asyncio.run(scenario())
    assert result.ok and result.value == "shipped"
    assert TRAIL == ["ask", "ship after need approval"]


class Inner(Workflow, inputs=["v"]):
    @step
    def x(self, v: int) -> int:
        return v


def test_a_part_or_compose_inside_an_around_group_is_refused_at_definition() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"\['sub'\] cannot sit in an around group"):

        class WithCompose(Workflow, inputs=["v"]):
            class g(Group, around=nothing_to_hold):
                sub = compose(Inner, inputs={"v": "v"})


class Nest(Workflow, inputs=["v"]):
    class outer(Group):
        class inner(Group):
            @step
            def x(self, v: int) -> int:
                TRAIL.append(f"x@{ATTEMPT['now']}")
                return v + 1

            async def after(self, result: int) -> int:
                TRAIL.append(f"inner.after@{ATTEMPT['now']}")
                if ATTEMPT["now"] == 1:
                    await asyncio.Event().wait()  # the attempt is cut short here
                return result

        @step
        async def y(self, inner: int) -> int:
            await asyncio.sleep(0.1)
            TRAIL.append(f"y done@{ATTEMPT['now']}")
            return inner * 10

    @step
    def z(self, outer: int) -> int:
        TRAIL.append(f"z outer={outer}")
        return outer


class NestWorker(WorkflowWorker, workflow=Nest, name="rollback.nest"):
    pass


def test_a_resumed_part_inside_a_part_closes_once(app: App) -> None:
    app.register(NestWorker)
    job = app.insert(NestWorker.new({"v": 1}))

    async def scenario() -> Any:
        await cut_short(app, Nest, job, {"v": 1}, "inner.after@1")
        ATTEMPT["now"] = 2
        return await execute(app, Nest, {"v": 1}, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.ok and result.value == 20
    # x was recorded: not run again; the cut-short hook runs again, once; z after y
    assert TRAIL == ["x@1", "inner.after@1", "inner.after@2", "y done@2", "z outer=20"]
    record = get_run(app, result.run_id)
    assert record is not None
    closes = [e for e in record.events if e.kind == "step.succeeded" and e.step == "outer.inner"]
    assert len(closes) == 1


def test_a_forced_rollback_of_a_halted_run_cancels_its_parked_job(app: App) -> None:
    """Nothing can resume a run that was rolled back: its parked job is cancelled with the
    rollback's reason, not left waiting 100 years for a resume that would be refused."""
    from jobsaga import JobState
    from jobsaga.testing import perform_job
    from jobsaga.workflow import list_runs, roll_back_run

    app.register(ApproveWorker)
    perform_job(ApproveWorker, {"ok": True}, app=app)  # halts: the job parks
    [job] = app.list_jobs(limit=None)
    assert job.state is JobState.SCHEDULED and "halted_run" in job.meta
    [run] = list_runs(app, job_id=job.id, top_level=True)
    assert run.id is not None and run.status == "halted"
    roll_back_run(app, run.id, force=True, reason="order withdrawn")
    after = app.get_job(job.id)
    assert after is not None and after.state is JobState.CANCELLED
