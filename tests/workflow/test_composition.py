"""Composition on both engines, with Reactor's behaviour as the yardstick: map, switch,
group and around, collect, compose and recurse. Every completed step of every part is
undone exactly once, newest first, when a later step fails, and everything is in the log."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobsaga import App, Workflow, step
from jobsaga.errors import (
    SwitchNoMatch,
    WorkflowDefinitionError,
    WorkflowError,
)
from jobsaga.testing import run_workflow
from jobsaga.workflow import RunStatus, get_run
from jobsaga.workflow.parts import Case, Default, Group, Map, Switch, collect, compose, recurse
from tests.workflow.conftest import TRAIL


def run(app: App, workflow: type[Workflow], inputs: Any = None) -> Any:
    return run_workflow(workflow, inputs, app=app)


# --- map --------------------------------------------------------------------------------------

in_flight = {"now": 0, "most": 0}
lock = threading.Lock()


class Doubling(Workflow, inputs=["numbers", "fail_at", "factor"]):
    @step
    def load(self, numbers: list[int]) -> list[int]:
        return numbers

    class double_all(Map, over="load", element="n", batch_size=3, max_concurrency=2):
        @step
        async def double(self, n: int, factor: int) -> int:  # factor: an outer input
            with lock:
                in_flight["now"] += 1
                in_flight["most"] = max(in_flight["most"], in_flight["now"])
            await asyncio.sleep(0.01)
            with lock:
                in_flight["now"] -= 1
            TRAIL.append(f"double {n}")
            return n * factor

        @double.undo
        def halve(self, result: int) -> None:
            TRAIL.append(f"undo {result}")

        @step
        def check(self, double: int, n: int, fail_at: int) -> int:
            if n == fail_at:
                raise ValueError(f"element {n} refused")
            return double

    @step
    def total(self, double_all: list[int]) -> list[int]:
        return double_all


def test_map_doubles_a_list_in_order_within_its_limits(app: App) -> None:
    in_flight.update(now=0, most=0)
    result = run(app, Doubling, {"numbers": [5, 1, 4, 2, 3, 7, 6], "fail_at": -1, "factor": 2})
    assert result.ok, result.error
    assert result.value == [10, 2, 8, 4, 6, 14, 12]  # input order, whatever finished first
    assert in_flight["most"] <= 2  # max_concurrency=2 elements at a time
    record = get_run(app, result.run_id)
    assert record is not None
    statuses = record.statuses()
    assert statuses["double_all"] == "succeeded"
    assert [statuses[f"double_all[{i}].double"] for i in range(7)] == ["succeeded"] * 7
    expansions = record.events_of("step.expanded")
    assert [e.detail["to"] for e in expansions] == [6, 7]  # batches of 3 after the first


def test_a_failing_element_fails_the_map_and_undoes_the_others_completed_steps_once(
    app: App,
) -> None:
    result = run(app, Doubling, {"numbers": [1, 2, 3], "fail_at": 2, "factor": 10})
    assert result.status is RunStatus.ROLLED_BACK
    error = result.error
    assert error is not None and error.step == "double_all[1].check"
    undone = sorted(t for t in TRAIL if t.startswith("undo"))
    doubled = sorted(t.replace("double ", "") for t in TRAIL if t.startswith("double"))
    # every element that doubled is undone exactly once; nothing else is
    assert undone == sorted(f"undo {int(n) * 10}" for n in doubled)
    assert len(undone) == len(set(undone))
    record = get_run(app, result.run_id)
    assert record is not None
    assert record.statuses()["double_all"] == "failed"
    assert record.statuses()["double_all[1].check"] == "failed"
    assert record.statuses()["total"] == "pending"
    order = record.undo_order()
    assert all(name.endswith(".double") for name in order)


def test_a_map_over_nothing_is_an_empty_list(app: App) -> None:
    result = run(app, Doubling, {"numbers": [], "fail_at": -1, "factor": 2})
    assert result.ok and result.value == []


# --- switch -----------------------------------------------------------------------------------


class Payment(Workflow, inputs=["method", "amount"]):
    @step
    def order(self, amount: int) -> dict[str, int]:
        return {"amount": amount}

    class pay(Switch):
        class card(Case, when=lambda method: method == "card"):
            @step
            def charge_card(self, order: dict[str, int]) -> str:
                TRAIL.append("card")
                return f"card {order['amount']}"

            @charge_card.undo
            def refund_card(self, receipt: str) -> None:
                TRAIL.append(f"refund {receipt}")

        class invoice(Case, when=lambda method: method == "invoice"):
            @step
            def send_invoice(self, order: dict[str, int]) -> str:
                TRAIL.append("invoice")
                return f"invoice {order['amount']}"

    @step
    def confirm(self, pay: str, amount: int) -> str:
        if amount < 0:
            raise ValueError("negative amount")
        return f"paid by {pay}"


class PaymentWithDefault(Payment):
    class pay(Switch):  # the same switch, with a default
        class card(Case, when=lambda method: method == "card"):
            @step
            def charge_card(self, order: dict[str, int]) -> str:
                return "card"

        class otherwise(Default):
            @step
            def cash(self, order: dict[str, int]) -> str:
                TRAIL.append("cash")
                return "cash"


def test_switch_runs_only_the_first_matching_case(app: App) -> None:
    result = run(app, Payment, {"method": "invoice", "amount": 5})
    assert result.value == "paid by invoice 5"
    assert TRAIL == ["invoice"]
    record = get_run(app, result.run_id)
    assert record is not None
    assert "pay.invoice.send_invoice" in record.statuses()
    assert not any(name.startswith("pay.card") for name in record.statuses())
    assert record.events_of("step.started")[1].detail["case"] == "invoice"


def test_switch_without_a_match_or_default_fails_naming_the_switch(app: App) -> None:
    result = run(app, Payment, {"method": "cheque", "amount": 5})
    assert result.error is not None
    assert result.error.step == "pay"
    assert isinstance(result.error.error, SwitchNoMatch)
    assert "switch 'pay'" in str(result.error.error) and "card, invoice" in str(result.error.error)


def test_switch_default_runs_when_nothing_matched(app: App) -> None:
    result = run(app, PaymentWithDefault, {"method": "cheque", "amount": 5})
    assert result.value == "paid by cash" and TRAIL == ["cash"]


def test_only_the_chosen_branch_is_undone(app: App) -> None:
    result = run(app, Payment, {"method": "card", "amount": -1})
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == ["card", "refund card -1"]
    assert result.error is not None and result.error.undone == ("pay.card.charge_card",)


# --- group, around, collect -------------------------------------------------------------------


class Hooks(Workflow, inputs=["x"]):
    class prepare(Group):
        def before(self, x: int) -> None:
            TRAIL.append(f"before {x}")

        @step
        def a(self, x: int) -> int:
            TRAIL.append("a")
            return x + 1

        @step
        def b(self, a: int) -> int:
            TRAIL.append("b")
            return a * 10

        def after(self, result: int, x: int) -> dict[str, int]:
            TRAIL.append(f"after {result}")
            return {"x": x, "b": result}

    gathered = collect(lambda v: v["prepare"]["b"] + v["x"], prepare="prepare", x="x")
    summary = collect(b="prepare.b", x="x")


def test_group_hooks_run_around_its_steps_and_collect_gathers(app: App) -> None:
    result = run(app, Hooks, {"x": 1})
    assert result.ok, result.error
    assert TRAIL == ["before 1", "a", "b", "after 20"]
    assert result.value == {"b": 20, "x": 1}
    record = get_run(app, result.run_id)
    assert record is not None and record.step("gathered").result == 21
    assert record.statuses()["prepare.a"] == "succeeded"


DB: dict[str, Path] = {}


@contextlib.contextmanager
def transaction(ctx: Any) -> Iterator[sqlite3.Connection]:
    """A SQLite transaction around a group's steps (what the example does)."""
    connection = sqlite3.connect(DB["path"], isolation_level=None)
    TRANSACTIONS["thread"] = threading.get_ident()
    connection.execute("BEGIN")
    CURRENT["connection"] = connection
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    else:
        connection.execute("COMMIT")
    finally:
        connection.close()


TRANSACTIONS: dict[str, int] = {}
CURRENT: dict[str, sqlite3.Connection] = {}


class Transfer(Workflow, inputs=["amount"]):
    class move(Group, around=transaction):
        @step
        def debit(self, amount: int) -> int:
            assert threading.get_ident() == TRANSACTIONS["thread"]
            CURRENT["connection"].execute(
                "UPDATE accounts SET balance = balance - ? WHERE name = 'a'", (amount,)
            )
            return amount

        @step
        def credit(self, debit: int) -> int:
            assert threading.get_ident() == TRANSACTIONS["thread"]
            CURRENT["connection"].execute(
                "UPDATE accounts SET balance = balance + ? WHERE name = 'b'", (debit,)
            )
            if debit > 100:
                raise ValueError("over the limit")
            return debit


def balances() -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(DB["path"])) as connection:
        return dict(connection.execute("SELECT name, balance FROM accounts").fetchall())


@pytest.fixture
def accounts(tmp_path: Path) -> None:
    DB["path"] = tmp_path / "bank.db"
    with contextlib.closing(sqlite3.connect(DB["path"])) as connection:
        connection.execute("CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER)")
        connection.executemany("INSERT INTO accounts VALUES (?, ?)", [("a", 500), ("b", 0)])
        connection.commit()


def test_around_wraps_two_steps_in_one_transaction(app: App, accounts: None) -> None:
    result = run(app, Transfer, {"amount": 50})
    assert result.ok, result.error
    assert balances() == {"a": 450, "b": 50}
    failed = run(app, Transfer, {"amount": 150})
    assert failed.error is not None and failed.error.step == "move.credit"
    assert balances() == {"a": 450, "b": 50}  # the debit was rolled back with the credit
    record = get_run(app, failed.run_id)
    assert record is not None
    assert record.statuses()["move"] == "failed"


# --- compose ----------------------------------------------------------------------------------


class Ship(Workflow, inputs=["order"]):
    @step
    def label(self, order: str) -> str:
        TRAIL.append(f"label {order}")
        return f"label-{order}"

    @label.undo
    def void_label(self, label: str) -> None:
        TRAIL.append(f"void {label}")

    @step
    def pickup(self, label: str, order: str) -> str:
        TRAIL.append(f"pickup {order}")
        if order == "broken":
            raise RuntimeError("carrier refused")
        return f"pickup-{label}"

    @pickup.undo
    def cancel_pickup(self, pickup: str) -> None:
        TRAIL.append(f"cancel {pickup}")


class Checkout(Workflow, inputs=["order", "fail_after"]):
    @step
    def reserve(self, order: str) -> str:
        TRAIL.append("reserve")
        return f"r-{order}"

    @reserve.undo
    def release(self, reserve: str) -> None:
        TRAIL.append("release")

    shipment = compose(Ship, inputs={"order": "order"})

    @step
    def notify(self, shipment: str, fail_after: bool) -> str:
        if fail_after:
            raise RuntimeError("mailer down")
        return f"sent {shipment}"


def test_compose_runs_a_child_run_linked_both_ways(app: App) -> None:
    result = run(app, Checkout, {"order": "o1", "fail_after": False})
    assert result.ok, result.error
    assert result.value == "sent pickup-label-o1"
    if result.run_id is None:
        return
    parent = get_run(app, result.run_id)
    assert parent is not None and len(parent.children) == 1
    child_id = parent.children[0].id
    child = get_run(app, child_id)
    assert child is not None and child.parent_run_id == parent.id
    assert child.parent_step == "shipment" and child.status == "succeeded"
    assert child.workflow == Ship.name


def test_a_parent_failing_after_compose_undoes_the_child_newest_first(app: App) -> None:
    result = run(app, Checkout, {"order": "o1", "fail_after": True})
    assert result.status is RunStatus.ROLLED_BACK
    assert TRAIL == [
        "reserve",
        "label o1",
        "pickup o1",  # the child ran ...
        "cancel pickup-label-o1",  # ... then was undone, newest first,
        "void label-o1",
        "release",  # before the parent's older steps
    ]
    assert result.error is not None and result.error.undone == ("shipment", "reserve")
    parent = get_run(app, result.run_id)
    assert parent is not None
    child = get_run(app, parent.children[0].id)
    assert child is not None and child.status == "rolled_back"
    assert child.undo_order() == ["pickup", "label"]


def test_a_failing_child_reports_its_undo_trail_in_the_parents_error(app: App) -> None:
    result = run(app, Checkout, {"order": "broken", "fail_after": False})
    assert result.status is RunStatus.ROLLED_BACK
    error = result.error
    assert error is not None and error.step == "shipment"
    child_error = error.error
    assert isinstance(child_error, WorkflowError)
    assert child_error.step == "pickup" and child_error.undone == ("label",)
    assert error.has(RuntimeError)
    assert TRAIL == ["reserve", "label broken", "pickup broken", "void label-broken", "release"]


# --- recurse ----------------------------------------------------------------------------------


class FactorialStep(Workflow, inputs=["n", "acc"]):
    @step
    def multiply(self, n: int, acc: int) -> dict[str, int]:
        TRAIL.append(f"{n}")
        return {"n": n - 1, "acc": acc * n}


class Factorial(Workflow, inputs=["n"]):
    @step
    def one(self) -> int:
        return 1

    factorial = recurse(FactorialStep, inputs={"n": "n", "acc": "one"}, until=lambda r: r["n"] <= 1)

    @step
    def answer(self, factorial: dict[str, int]) -> int:
        return factorial["acc"]


class FactorialCapped(Factorial):
    factorial = recurse(FactorialStep, inputs={"n": "n", "acc": "one"}, max_iterations=3)


def test_recurse_computes_factorial_5(app: App) -> None:
    result = run(app, Factorial, {"n": 5})
    assert result.ok, result.error
    assert result.value == 120
    assert TRAIL == ["5", "4", "3", "2"]
    if result.run_id is not None:
        parent = get_run(app, result.run_id)
        assert parent is not None
        assert [c.iteration for c in parent.children] == [0, 1, 2, 3]


def test_recurse_stops_at_its_maximum(app: App) -> None:
    result = run(app, FactorialCapped, {"n": 5})
    assert result.ok and result.value == 60  # 5 * 4 * 3
    assert TRAIL == ["5", "4", "3"]


def test_recurse_needs_an_exit_condition_or_a_maximum() -> None:
    with pytest.raises(WorkflowDefinitionError, match="until= .* or max_iterations="):

        class Endless(Workflow, inputs=["n"]):
            again = recurse(FactorialStep, inputs={"n": "n", "acc": "n"})


def test_a_typo_inside_a_part_is_named_where_it_is() -> None:
    with pytest.raises(WorkflowDefinitionError, match="'reserv'"):

        class Broken(Workflow, inputs=["items"]):
            class each(Map, over="items"):
                @step
                def reserve(self, element: int) -> int:
                    return element

                @step
                def ship(self, reserv: int) -> int:
                    return reserv


# --- limits, nesting, mistakes -----------------------------------------------------------------

running = {"now": 0, "most": 0}


class Leaf(Workflow, inputs=["item"]):
    @step
    async def work(self, item: int) -> int:
        running["now"] += 1
        running["most"] = max(running["most"], running["now"])
        await asyncio.sleep(0.005)
        running["now"] -= 1
        return item + 1


class Fleet(Workflow, inputs=["items"], max_concurrency=2):
    class each(Map, over="items", element="item"):
        class route(Switch):
            class even(Case, when=lambda item: item % 2 == 0):
                ship = compose(Leaf, inputs={"item": "item"})

            class odd(Default):
                @step
                async def keep(self, item: int) -> int:
                    running["now"] += 1
                    running["most"] = max(running["most"], running["now"])
                    await asyncio.sleep(0.005)
                    running["now"] -= 1
                    return -item


class Single(Fleet, max_concurrency=1):
    pass


def test_parts_nest_and_children_share_the_runs_concurrency_limit(app: App) -> None:
    running.update(now=0, most=0)
    result = run(app, Fleet, {"items": [1, 2, 3, 4, 5, 6]})
    assert result.ok, result.error
    assert result.value == [-1, 3, -3, 5, -5, 7]
    assert running["most"] <= 2  # parent steps and child-run steps together
    running.update(now=0, most=0)
    single = run(app, Single, {"items": [2, 4]})  # a limit of 1 cannot deadlock a compose
    assert single.value == [3, 5] and running["most"] == 1
    if result.run_id is not None:
        record = get_run(app, result.run_id)
        assert record is not None
        assert {c.parent_step for c in record.children} == {
            "each[1].route.even.ship",
            "each[3].route.even.ship",
            "each[5].route.even.ship",
        }


class NotAList(Workflow, inputs=["items"]):
    class each(Map, over="items"):
        @step
        def touch(self, element: Any) -> Any:
            return element


def test_a_map_over_something_not_a_list_fails_naming_the_map(app: App) -> None:
    result = run(app, NotAList, {"items": "abc"})
    assert result.error is not None and result.error.step == "each"
    assert "map 'each' maps over items, which is a str, not a list" in str(result.error.error)


def test_part_options_are_checked_when_the_class_is_defined() -> None:
    with pytest.raises(WorkflowDefinitionError, match="unknown option 'batchsize'.*batch_size"):

        class Misspelt(Workflow, inputs=["items"]):
            class each(Map, over="items", batchsize=3):
                @step
                def touch(self, element: Any) -> Any:
                    return element

    with pytest.raises(WorkflowDefinitionError, match="Default case must come last"):

        class Late(Workflow, inputs=["x"]):
            class pick(Switch):
                class other(Default):
                    @step
                    def a(self, x: int) -> int:
                        return x

                class one(Case, when=lambda x: x == 1):
                    @step
                    def b(self, x: int) -> int:
                        return x


class OrderFirst(Workflow, inputs=["x"]):
    @step
    def audit(self, x: int) -> None:
        TRAIL.append("audit")

    class book(Group):
        @step(wait_for=["audit"])  # an outer step, for order only
        def debit(self, x: int) -> int:
            TRAIL.append("debit")
            return x


def test_wait_for_inside_a_part_may_name_an_outer_step(app: App) -> None:
    result = run(app, OrderFirst, {"x": 3})
    assert result.ok and result.value == 3 and TRAIL == ["audit", "debit"]


@contextlib.contextmanager
def nothing_to_hold() -> Iterator[None]:
    yield


class Wrapped(Workflow, inputs=["x"]):
    class g(Group, around=nothing_to_hold):
        @step
        def a(self, x: int) -> int:
            return x + 1

        def after(self, result: int) -> int:  # a sync hook: runs where the group ran
            TRAIL.append(f"after {result}")
            return result * 10


def test_an_around_group_may_have_an_after_hook(app: App) -> None:
    result = run(app, Wrapped, {"x": 1})
    assert result.ok, result.error
    assert result.value == 20 and TRAIL == ["after 2"]
