"""Composing a saga: map, switch, a group in one database transaction, compose, and halt.

Run it from the repository root: ``python examples/saga_composition.py``

One checkout saga, run by a ``WorkflowWorker`` on a node, for three orders:

* ``reserve_lines`` is a ``Map`` over the order's lines: one ``reserve`` step per line, each
  with an undo that gives the stock back.
* ``pay`` is a ``Switch`` on the payment method: a card is charged, and every other method
  falls to the ``Default`` case, an invoice.
* ``approve`` returns ``Halt`` for an amount over the limit: the run stops, durably, and its
  job waits parked until ``resume_run`` brings the approval (a new input).
* ``book`` is a ``Group`` whose ``around`` opens ONE SQLite transaction, on a database of the
  shop's own (``ledger.db``, beside the job database): the ``debit`` and ``credit`` steps
  write through it, so when ``credit`` fails, ``debit``'s write is rolled back with it.
* ``shipment`` is ``compose(ShipOrder)``: the shipping saga runs as a child run, linked to
  the checkout's run in the log.

Order A-1 goes through; order B-2 fails at ``book.credit`` (the shop's EU account is
frozen): the transaction takes back the debit, and the saga's rollback undoes the invoice
and every reservation; order C-3 is over the limit: it halts, waits, and is resumed.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import (
    App,
    Case,
    Default,
    Group,
    Halt,
    Job,
    Map,
    Switch,
    Workflow,
    WorkflowError,
    WorkflowWorker,
    collect,
    compose,
    step,
)
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.resuming import resume_run

APPROVAL_LIMIT = 500
"""Orders above this amount wait for a manager's approval (the step halts the run)."""

STOCK = {"mug": 10, "tea": 20, "pot": 3}
CARD_CHARGES: list[str] = []
INVOICES: list[str] = []
RAN: dict[str, int] = {}
"""How many times steps ran (the halted step runs once in all)."""
_lock = threading.Lock()

LEDGER: dict[str, Path] = {}
"""Where the shop's own database is (set by main)."""
TRANSACTION: ContextVar[sqlite3.Connection] = ContextVar("ledger_transaction")
"""The open transaction, for the steps of the ``book`` group (the around sets it)."""


def ran(name: str) -> None:
    with _lock:
        RAN[name] = RAN.get(name, 0) + 1


# --- the shipping saga, composed into the checkout --------------------------------------------


class ShipOrder(Workflow, name="examples.ship_order", inputs=["order_id", "address"]):
    @step
    def book_carrier(self, order_id: str, address: str) -> str:
        say(f"    ship {order_id}: carrier booked to {address}")
        return f"label-{order_id}"

    @book_carrier.undo
    def void_label(self, label: str) -> None:
        say(f"    ship: {label} voided")

    @step
    def schedule_pickup(self, book_carrier: str) -> str:
        say(f"    ship: pickup scheduled for {book_carrier}")
        return f"pickup of {book_carrier}"


# --- the ledger transaction around the book group ---------------------------------------------


@contextlib.contextmanager
def ledger_transaction(order_id: str) -> Iterator[sqlite3.Connection]:
    """One SQLite transaction around the group's steps: committed after the last one,
    rolled back with the error of the one that failed. The group's steps run one at a time
    in the thread that entered it, so they share this connection."""
    connection = sqlite3.connect(LEDGER["path"], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    token = TRANSACTION.set(connection)
    say(f"  book {order_id}: BEGIN")
    try:
        yield connection
    except BaseException as exc:
        connection.execute("ROLLBACK")
        say(f"  book {order_id}: ROLLBACK ({exc})")
        raise
    else:
        connection.execute("COMMIT")
        say(f"  book {order_id}: COMMIT")
    finally:
        TRANSACTION.reset(token)
        connection.close()


def balance(connection: sqlite3.Connection, account: str) -> int:
    row = connection.execute("SELECT balance FROM accounts WHERE name = ?", (account,)).fetchone()
    return int(row[0])


def ledger() -> dict[str, int]:
    """The balances as committed (a connection of its own, outside any transaction)."""
    with contextlib.closing(sqlite3.connect(LEDGER["path"])) as connection:
        return dict(connection.execute("SELECT name, balance FROM accounts ORDER BY name"))


# --- the checkout saga ------------------------------------------------------------------------


class Line(BaseModel):
    sku: str
    qty: int


class Checkout(Workflow, name="examples.checkout"):
    class Inputs(BaseModel):
        order_id: str
        customer: str
        lines: list[Line]
        amount: int
        method: str
        payee: str = "shop"
        address: str = "1 Quay Street"
        approved_by: str | None = None

    class reserve_lines(Map, over="lines", element="line", batch_size=2, max_concurrency=2):
        @step
        def reserve(self, line: Line, order_id: str) -> dict[str, Any]:
            ran("reserve")
            with _lock:
                if STOCK[line.sku] < line.qty:
                    raise RuntimeError(f"{line.sku}: {STOCK[line.sku]} left, {line.qty} wanted")
                STOCK[line.sku] -= line.qty
            say(f"  reserve {order_id}: {line.qty} {line.sku}")
            return {"sku": line.sku, "qty": line.qty}

        @reserve.undo
        def release(self, reservation: dict[str, Any]) -> None:
            with _lock:
                STOCK[reservation["sku"]] += reservation["qty"]
            say(f"  undo: released {reservation['qty']} {reservation['sku']}")

    @step
    def approve(self, order_id: str, amount: int, approved_by: str | None) -> str | Halt:
        ran(f"approve {order_id}")
        if amount > APPROVAL_LIMIT and approved_by is None:
            say(f"  approve {order_id}: {amount} is over {APPROVAL_LIMIT}: halting for a manager")
            # the step completes with the ticket as its result; the run stops here
            return Halt(f"ticket-{order_id}", reason="waiting for a manager's approval")
        return "under the limit"

    class pay(Switch):
        class card(Case, when=lambda method: method == "card"):
            @step
            def charge_card(self, order_id: str, amount: int, approve: str) -> str:
                CARD_CHARGES.append(order_id)
                say(f"  pay {order_id}: card charged {amount} ({approve})")
                return f"card:{order_id}"

            @charge_card.undo
            def refund(self, receipt: str) -> None:
                CARD_CHARGES.remove(receipt.removeprefix("card:"))
                say(f"  undo: refunded {receipt}")

        class otherwise(Default):
            @step
            def send_invoice(self, order_id: str, amount: int, method: str, approve: str) -> str:
                INVOICES.append(order_id)
                say(f"  pay {order_id}: no card ({method}): invoice for {amount} sent")
                return f"invoice:{order_id}"

            @send_invoice.undo
            def void_invoice(self, receipt: str) -> None:
                INVOICES.remove(receipt.removeprefix("invoice:"))
                say(f"  undo: voided {receipt}")

    class book(Group, around=ledger_transaction):
        @step
        def debit(
            self, pay: str, customer: str, amount: int, reserve_lines: list[dict[str, Any]]
        ) -> int:
            tx = TRANSACTION.get()
            tx.execute(
                "UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, customer)
            )
            lines = len(reserve_lines)
            say(
                f"  book: debit {customer} {amount} for {lines} lines "
                f"(in the transaction: {customer} {balance(tx, customer)})"
            )
            return amount

        @step
        def credit(self, debit: int, payee: str) -> int:
            tx = TRANSACTION.get()
            frozen = tx.execute("SELECT frozen FROM accounts WHERE name = ?", (payee,)).fetchone()
            if frozen is None or frozen[0]:
                raise RuntimeError(f"account {payee} is frozen")
            tx.execute("UPDATE accounts SET balance = balance + ? WHERE name = ?", (debit, payee))
            say(f"  book: credit {payee} {debit}")
            return debit

    # the shipping saga as a child run, once the money is booked
    shipment = compose(
        ShipOrder, inputs={"order_id": "order_id", "address": "address"}, wait_for=("book",)
    )

    receipt = collect(order="order_id", paid="pay", booked="book", shipped="shipment")


class CheckoutWorker(
    WorkflowWorker, workflow=Checkout, queue="checkout", max_attempts=1, name="examples.checkout"
):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        assert isinstance(error, WorkflowError)
        say(f"  on_final_failure: {error.step} failed: {error.error}")


# --- running the orders -----------------------------------------------------------------------


ORDERS: dict[str, dict[str, Any]] = {
    "A-1": {
        "customer": "alice",
        "lines": [{"sku": "mug", "qty": 2}, {"sku": "tea", "qty": 5}, {"sku": "pot", "qty": 1}],
        "amount": 60,
        "method": "card",
    },
    "B-2": {
        "customer": "bob",
        "lines": [{"sku": "mug", "qty": 1}, {"sku": "tea", "qty": 3}],
        "amount": 40,
        "method": "bank transfer",
        "payee": "shop-eu",
    },
    "C-3": {
        "customer": "carol",
        "lines": [{"sku": "pot", "qty": 2}, {"sku": "mug", "qty": 4}],
        "amount": 800,
        "method": "card",
    },
}


def make_ledger(folder: Path) -> None:
    LEDGER["path"] = folder / "ledger.db"
    with contextlib.closing(sqlite3.connect(LEDGER["path"])) as connection:
        connection.execute(
            "CREATE TABLE accounts (name TEXT PRIMARY KEY, balance INTEGER, frozen INTEGER)"
        )
        connection.executemany(
            "INSERT INTO accounts VALUES (?, ?, ?)",
            [
                ("alice", 100, 0),
                ("bob", 100, 0),
                ("carol", 1000, 0),
                ("shop", 0, 0),
                ("shop-eu", 0, 1),
            ],
        )
        connection.commit()


def the_run(app: App, job: Job[Any]) -> Any:
    runs = list_runs(app, job_id=job.id, top_level=True, limit=1)
    assert runs and runs[0].id is not None
    return get_run(app, runs[0].id)


def report(app: App, job: Job[Any]) -> None:
    found = app.get_job(job.id) or job
    run = the_run(app, job)
    print(describe(found))
    print(f"  run {run.id}: {run.status}")
    if run.status == "succeeded":
        print(f"  receipt: {run.result}")
    if run.error:
        print(f"  failed at {run.error.get('step')}")
    undone = run.undo_order()
    if undone:
        print(f"  undone, newest first: {', '.join(undone)}")
    for child in run.children:
        print(
            f"  child run {child.id} ({child.workflow}, step {child.parent_step}): {child.status}"
        )
    print(f"  ledger: {ledger()}")
    print(f"  stock: {STOCK}; card charges: {CARD_CHARGES}; invoices: {INVOICES}")


def checkout(app: App, order_id: str) -> Job[Any]:
    print(f"\norder {order_id}: {ORDERS[order_id]['method']}, {ORDERS[order_id]['amount']}")
    job = app.insert(CheckoutWorker.new({"order_id": order_id, **ORDERS[order_id]}))
    wait_until(lambda: settled(app, job) or parked(app, job))
    return job


def parked(app: App, job: Job[Any]) -> bool:
    found = app.get_job(job.id)
    return found is not None and found.state.value == "scheduled" and "halted_run" in found.meta


def main() -> None:
    with (
        tempfile.TemporaryDirectory(prefix="jobsaga-example-ledger-") as folder,
        temporary_app(CheckoutWorker, workflows=[Checkout, ShipOrder]) as app,
    ):
        make_ledger(Path(folder))
        print(f"ledger: {ledger()}")
        print(f"stock: {STOCK}")
        with app.node({"checkout": 2}, poll_interval=0.05).start_in_thread():
            report(app, checkout(app, "A-1"))
            report(app, checkout(app, "B-2"))

            job = checkout(app, "C-3")
            waiting = app.get_job(job.id) or job
            run = the_run(app, job)
            print(
                f"job {waiting.id}: {waiting.state.value}, parked on run "
                f"{waiting.meta['halted_run']} (step {waiting.meta['halted_step']}); "
                f"run {run.id}: {run.status}"
            )
            print(f"  ledger: {ledger()}; card charges: {CARD_CHARGES}")
            resumed = resume_run(app, run.id, {"approved_by": "ann"}, reason="approved by Ann")
            print(f"resume_run: job {resumed.job_id} available again (inputs: {resumed.inputs})")
            wait_until(lambda: settled(app, job))
            report(app, job)
        print(
            f"\nsteps run: reserve {RAN['reserve']}x for 7 lines in all; "
            f"approve of C-3 {RAN['approve C-3']}x (halted once, resumed, not run again)"
        )


if __name__ == "__main__":
    main()
