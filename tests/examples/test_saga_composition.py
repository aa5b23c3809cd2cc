"""examples/saga_composition.py, run as a user runs it, does what it says: each order's
outcome is read back from what the example prints (the ledger database, the stock, the run
log), not only its exit status."""

from __future__ import annotations

import ast
import re

import pytest

from tests.examples.test_examples import run_example

pytestmark = pytest.mark.xdist_group("example-saga_composition")


def section(output: str, order: str) -> str:
    """The lines the example printed for ``order`` (up to the next order or the summary)."""
    found = re.search(rf"^order {order}:.*?(?=^order |^steps run:|\Z)", output, re.M | re.S)
    assert found, f"no section for order {order}:\n{output}"
    return found.group(0)


def printed(text: str, label: str) -> object:
    """The last Python literal printed after ``label: `` (a dict or list) in ``text``."""
    found = re.findall(rf"{label}: (\{{[^}}]*\}}|\[[^\]]*\])", text)
    assert found, f"{label!r} not printed in:\n{text}"
    return ast.literal_eval(found[-1])


@pytest.fixture(scope="module")
def output() -> str:
    return run_example("saga_composition")


def test_an_order_goes_through_every_part(output: str) -> None:
    a = section(output, "A-1")
    assert "job 1 examples.checkout: completed after 1/1" in a
    assert printed(a, "ledger") == {
        "alice": 40,
        "bob": 100,
        "carol": 1000,
        "shop": 60,
        "shop-eu": 0,
    }
    assert printed(a, "stock") == {"mug": 8, "tea": 15, "pot": 2}  # three lines reserved
    assert "pay A-1: card charged 60" in a  # the card case
    assert "book A-1: COMMIT" in a
    assert re.search(r"child run \d+ \(examples\.ship_order, step shipment\): succeeded", a)
    assert "'shipped': 'pickup of label-A-1'" in a


def test_a_failing_step_in_the_around_group_rolls_back_the_whole_transaction(output: str) -> None:
    a, b = section(output, "A-1"), section(output, "B-2")
    # the debit was written inside the transaction ...
    assert "book: debit bob 40 for 2 lines (in the transaction: bob 60)" in b
    assert "book B-2: ROLLBACK (account shop-eu is frozen)" in b
    # ... and is gone with the failed credit: the ledger is as order A-1 left it
    assert printed(b, "ledger") == printed(a, "ledger")
    assert re.search(r"run \d+: rolled_back", b) and "failed at book.credit" in b


def test_the_saga_rollback_undoes_the_default_case_and_every_reservation(output: str) -> None:
    a, b = section(output, "A-1"), section(output, "B-2")
    assert "pay B-2: no card (bank transfer): invoice for 40 sent" in b  # the Default case
    undone = re.search(r"undone, newest first: (.*)", b)
    assert undone, b
    steps = undone.group(1).split(", ")
    assert steps[0] == "pay.otherwise.send_invoice"  # completed last, undone first
    assert sorted(steps[1:]) == ["reserve_lines[0].reserve", "reserve_lines[1].reserve"]
    assert printed(b, "stock") == printed(a, "stock")  # both reservations released
    assert printed(b, "invoices") == []
    assert "child run" not in b  # the shipment waits for the booking: never started
    assert "on_final_failure: book.credit failed: account shop-eu is frozen" in b


def test_a_halted_order_waits_parked_and_is_resumed_without_rerunning_steps(
    output: str,
) -> None:
    c = section(output, "C-3")
    parked = re.search(
        r"job (\d+): scheduled, parked on run (\d+) \(step approve\); run (\d+): halted", c
    )
    assert parked and parked.group(2) == parked.group(3), c
    waiting = c[parked.end() :].split("resume_run:")[0]
    assert printed(waiting, "card charges") == ["A-1"]  # nothing charged while halted
    assert printed(waiting, "ledger")["carol"] == 1000  # type: ignore[index]
    assert f"resume_run: job {parked.group(1)} available again (inputs: ('approved_by',))" in c
    assert "pay C-3: card charged 800 (ticket-C-3)" in c  # the halt value is approve's result
    assert f"run {parked.group(2)}: succeeded" in c
    assert printed(c, "ledger")["carol"] == 200  # type: ignore[index]
    assert printed(c, "card charges") == ["A-1", "C-3"]
    assert "approve of C-3 1x" in output and "reserve 7x for 7 lines" in output
