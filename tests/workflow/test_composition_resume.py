"""Composition across attempts, on both engines: an attempt cut short mid-map, mid-compose
or mid-halt is resumed by the next one without re-running a recorded step; a halted run
resumes with its halt value as the step's result; timeouts halt or fail as configured."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from jobsaga import App, StepContext, Workflow, WorkflowWorker, step
from jobsaga.errors import RunTimeout, StepTimeout
from jobsaga.workflow import RunStatus, get_run
from jobsaga.workflow.parts import Map, compose
from jobsaga.workflow.results import Halt
from jobsaga.workflow.running import execute
from tests.workflow.attempts import attempt_of, cut_short
from tests.workflow.conftest import TRAIL

hold: dict[str, asyncio.Event] = {}


class Pack(Workflow, inputs=["items"]):
    class each(Map, over="items", element="item", batch_size=2):
        @step
        async def pack(self, item: str, ctx: StepContext[Any]) -> str:
            TRAIL.append(f"pack {item}@{ctx.attempt}")
            if item == "c" and ctx.attempt == 1:
                hold["c"] = asyncio.Event()
                await hold["c"].wait()  # the attempt is cut short here
            return f"box {item}"

        @pack.undo
        def unpack(self, box: str, ctx: StepContext[Any]) -> None:
            TRAIL.append(f"unpack {box}@{ctx.attempt}")

    @step
    def ship(self, each: list[str], ctx: StepContext[Any]) -> list[str]:
        TRAIL.append(f"ship@{ctx.attempt}")
        return each


class PackWorker(WorkflowWorker, workflow=Pack, name="pack.worker"):
    pass


def test_an_interrupted_map_resumes_without_repacking_recorded_elements(app: App) -> None:
    app.register(PackWorker)
    inputs = {"items": ["a", "b", "c", "d"]}
    job = app.insert(PackWorker.new(inputs))

    async def scenario() -> Any:
        await cut_short(app, Pack, job, inputs, "pack c@1")
        return await execute(app, Pack, inputs, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    assert result.ok, result.error
    assert result.value == ["box a", "box b", "box c", "box d"]
    # a, b (the first batch) and d were recorded: never packed again; c was cut short
    assert TRAIL == ["pack a@1", "pack b@1", "pack c@1", "pack d@1", "pack c@2", "ship@2"]
    record = get_run(app, result.run_id)
    assert record is not None and record.status == "succeeded" and record.attempt == 2
    assert record.step("each[2].pack").tries == 2


class Parcel(Workflow, inputs=["order"]):
    @step
    def label(self, order: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"label@{ctx.attempt}")
        return f"label-{order}"

    @label.undo
    def void(self, label: str, ctx: StepContext[Any]) -> None:
        TRAIL.append(f"void {label}@{ctx.attempt}")

    @step
    async def pickup(self, label: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"pickup@{ctx.attempt}")
        if ctx.attempt == 1:
            hold["pickup"] = asyncio.Event()
            await hold["pickup"].wait()
        return f"pickup-{label}"


class Order(Workflow, inputs=["order", "fail"]):
    shipment = compose(Parcel, inputs={"order": "order"})

    @step
    def invoice(self, shipment: str, fail: bool, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"invoice@{ctx.attempt}")
        if fail:
            raise RuntimeError("invoicing down")
        return f"invoice for {shipment}"


class OrderWorker(WorkflowWorker, workflow=Order, name="order.compose.worker"):
    pass


def test_an_interrupted_compose_resumes_its_child_run(app: App) -> None:
    app.register(OrderWorker)
    inputs = {"order": "o7", "fail": True}
    job = app.insert(OrderWorker.new(inputs))

    async def scenario() -> Any:
        await cut_short(app, Order, job, inputs, "pickup@1")
        return await execute(app, Order, inputs, job=attempt_of(job, 2))

    result = asyncio.run(scenario())
    # the child's label was recorded by attempt 1: not run again; its undo runs once
    assert TRAIL == ["label@1", "pickup@1", "pickup@2", "invoice@2", "void label-o7@2"]
    assert result.status is RunStatus.ROLLED_BACK
    parent = get_run(app, result.run_id)
    assert parent is not None and len(parent.children) == 1  # the same child, taken up
    child = get_run(app, parent.children[0].id)
    assert child is not None and child.status == "rolled_back" and child.attempt == 2


class Approval(Workflow, inputs=["amount", "approved"], halt_timeout=5):
    @step
    def quote(self, amount: int, ctx: StepContext[Any]) -> int:
        TRAIL.append(f"quote@{ctx.attempt}")
        return amount * 2

    @step
    def approve(self, quote: int, approved: bool, ctx: StepContext[Any]) -> Any:
        TRAIL.append(f"approve@{ctx.attempt}")
        if not approved:
            return Halt({"ticket": f"t-{quote}"}, reason="waiting for a manager")
        return {"ticket": "none"}

    @step
    async def audit(self, quote: int, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"audit@{ctx.attempt}")
        await asyncio.sleep(0.05)  # a sibling still running when the run halts
        TRAIL.append(f"audited@{ctx.attempt}")
        return "ok"

    @step
    def book(self, approve: dict[str, str], audit: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"book@{ctx.attempt}")
        return f"booked {approve['ticket']}"


class ApprovalWorker(WorkflowWorker, workflow=Approval, name="approval.worker"):
    pass


def test_a_halted_run_resumes_with_the_halt_value_as_the_steps_result(app: App) -> None:
    app.register(ApprovalWorker)
    job = app.insert(ApprovalWorker.new({"amount": 21, "approved": False}))

    async def scenario() -> tuple[Any, Any]:
        first = await execute(
            app, Approval, {"amount": 21, "approved": False}, job=attempt_of(job, 1)
        )
        halted = get_run(app, first.run_id)
        assert halted is not None and halted.status == "halted"
        later = attempt_of(job, 2)
        second = await execute(app, Approval, {"amount": 21, "approved": True}, job=later)
        return first, second

    first, second = asyncio.run(scenario())
    assert first.status is RunStatus.HALTED and first.halted_step == "approve"
    assert first.value == {"ticket": "t-42"}
    assert "audited@1" in TRAIL  # the sibling under way was awaited before halting
    assert second.ok, second.error
    assert second.value == "booked t-42"  # the halt value, not a second approval
    assert second.run_id == first.run_id
    assert TRAIL.count("approve@1") == 1 and "approve@2" not in TRAIL
    assert "quote@2" not in TRAIL and "audit@2" not in TRAIL
    record = get_run(app, second.run_id)
    assert record is not None and record.status == "succeeded"
    assert record.step("approve").result == {"ticket": "t-42"}
    kinds = [e.kind for e in record.events]
    assert "step.halted" in kinds and "run.halted" in kinds
    resumed = record.events_of("run.resumed")
    assert resumed and resumed[-1].detail["after_halt"] is True


class Slow(Workflow, inputs=["mode"]):
    @step(timeout=0.05, on_timeout="fail")
    async def slow(self, mode: str) -> str:
        if mode == "slow":
            await asyncio.sleep(5)
        return "fast"

    @step(timeout=0.05, on_timeout="halt")
    async def waits(self, slow: str, mode: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"waits@{ctx.attempt}")
        if mode == "wait" and ctx.attempt == 1:
            await asyncio.sleep(5)
        return "done"


class SlowWorker(WorkflowWorker, workflow=Slow, name="slow.worker"):
    pass


def test_a_step_timeout_fails_or_halts_as_declared(app: App) -> None:
    app.register(SlowWorker)
    job = app.insert(SlowWorker.new({"mode": "slow"}))

    async def scenario() -> tuple[Any, Any, Any]:
        failed = await execute(app, Slow, {"mode": "slow"}, job=attempt_of(job, 1))
        other = app.insert(SlowWorker.new({"mode": "wait"}))
        halted = await execute(app, Slow, {"mode": "wait"}, job=attempt_of(other, 1))
        resumed = await execute(app, Slow, {"mode": "wait"}, job=attempt_of(other, 2))
        return failed, halted, resumed

    started = time.monotonic()
    failed, halted, resumed = asyncio.run(scenario())
    assert time.monotonic() - started < 3
    assert failed.error is not None and isinstance(failed.error.error, StepTimeout)
    assert "'slow' ran longer than its timeout of 0.05s" in str(failed.error.error)
    assert halted.status is RunStatus.HALTED and halted.halted_step is None
    assert resumed.ok and resumed.value == "done"
    assert TRAIL == ["waits@1", "waits@2"]  # not completed when it halted: it ran again


class Overrun(Workflow, inputs=["then"], timeout=0.1):
    @step
    def first(self) -> str:
        TRAIL.append("first")
        return "1"

    @first.undo
    def undo_first(self, first: str) -> None:
        TRAIL.append("undo first")

    @step
    async def long(self, first: str) -> str:
        await asyncio.sleep(5)
        return "2"


class OverrunHalting(Overrun, timeout=0.1, on_timeout="halt", halt_timeout=0.05):
    pass


class OverrunWorker(WorkflowWorker, workflow=Overrun, name="overrun.worker"):
    pass


def test_a_run_timeout_fails_and_rolls_back_or_halts(app: App) -> None:
    app.register(OverrunWorker)
    job = app.insert(OverrunWorker.new({"then": "x"}))

    async def scenario() -> tuple[Any, Any]:
        failed = await execute(app, Overrun, {"then": "x"}, job=attempt_of(job, 1))
        other = app.insert(OverrunWorker.new({"then": "y"}))
        halted = await execute(app, OverrunHalting, {"then": "y"}, job=attempt_of(other, 1))
        return failed, halted

    failed, halted = asyncio.run(scenario())
    assert failed.status is RunStatus.ROLLED_BACK
    assert failed.error is not None and failed.error.step == "(timeout)"
    assert isinstance(failed.error.error, RunTimeout)
    assert TRAIL == ["first", "undo first", "first"]
    assert halted.status is RunStatus.HALTED
    record = get_run(app, halted.run_id)
    assert record is not None and record.statuses()["long"] == "pending"
    assert record.events_of("run.timed_out")[0].detail == {"timeout": 0.1, "then": "halt"}


class SlowChild(Workflow, inputs=["order"]):
    @step
    def hold_stock(self, order: str) -> str:
        TRAIL.append("hold")
        return f"hold-{order}"

    @hold_stock.undo
    def free_stock(self, hold_stock: str) -> None:
        TRAIL.append(f"free {hold_stock}")

    @step
    async def wait_carrier(self, hold_stock: str) -> str:
        await asyncio.sleep(5)
        return "never"


class TimedParent(Workflow, inputs=["order"], timeout=0.2):
    @step
    def open_order(self, order: str) -> str:
        TRAIL.append("open")
        return order

    @open_order.undo
    def close_order(self, open_order: str) -> None:
        TRAIL.append("close")

    shipping = compose(SlowChild, inputs={"order": "open_order"})


class TimedWorker(WorkflowWorker, workflow=TimedParent, name="timed.parent.worker"):
    pass


def test_a_run_stopped_mid_compose_rolls_the_child_back_first(app: App) -> None:
    app.register(TimedWorker)
    job = app.insert(TimedWorker.new({"order": "o9"}))
    result = asyncio.run(execute(app, TimedParent, {"order": "o9"}, job=attempt_of(job, 1)))
    assert result.status is RunStatus.ROLLED_BACK
    assert isinstance(result.error.error, RunTimeout) if result.error else False
    # the child's completed step is undone (by the child, stopped) before the parent's
    assert TRAIL == ["open", "hold", "free hold-o9", "close"]
    parent = get_run(app, result.run_id)
    assert parent is not None
    child = get_run(app, parent.children[0].id)
    assert child is not None and child.status == "rolled_back"


class HoldRoom(Workflow, inputs=["room"]):
    @step
    def book(self, room: str) -> str:
        TRAIL.append("book")
        return f"booking-{room}"

    @book.undo
    def cancel_booking(self, book: str) -> None:
        TRAIL.append(f"cancel {book}")

    @step
    def confirm(self, book: str) -> Any:
        return Halt({"waiting": book})


def test_an_abandoned_halted_run_is_rolled_back_by_an_operator(app: App) -> None:
    from jobsaga.workflow import roll_back_run

    class HoldWorker(WorkflowWorker, workflow=HoldRoom, name="hold.worker"):
        pass

    app.register(HoldWorker)
    job = app.insert(HoldWorker.new({"room": "r1"}))
    halted = asyncio.run(execute(app, HoldRoom, {"room": "r1"}, job=attempt_of(job, 1)))
    assert halted.halted
    app.cancel_job(job.id, reason="guest left")
    result = roll_back_run(app, halted.run_id, reason="guest left")
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == ["book", "cancel booking-r1"]
    record = get_run(app, halted.run_id)
    assert record is not None and record.status == "rolled_back"


def test_a_child_run_is_rolled_back_through_its_parent(app: App) -> None:
    import pytest

    from jobsaga.errors import RunStateError
    from jobsaga.workflow import roll_back_run

    app.register(OrderWorker)
    job = app.insert(OrderWorker.new({"order": "o8", "fail": False}))
    done = asyncio.run(execute(app, Order, {"order": "o8", "fail": False}, job=attempt_of(job, 2)))
    parent = get_run(app, done.run_id)
    assert parent is not None and parent.children
    with pytest.raises(RunStateError, match=f"child run of run {parent.id}"):
        roll_back_run(app, parent.children[0].id, force=True)
