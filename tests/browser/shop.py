"""What the browser tests look at: a few jobs in each state and saga runs, made in
milliseconds by running them in the test (``drain_queue``), on the test's own database."""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel

from jobsaga import App, Job, Worker
from jobsaga.testing import drain_queue
from jobsaga.workflow import Workflow, WorkflowWorker, step

UNDONE: list[str] = []


class SendReceipt(Worker, queue="mailers", name="shop.send_receipt"):
    class Args(BaseModel):
        order: str

    def perform(self, job: Job[Any]) -> None:
        return None


class ChargeCard(Worker, queue="payments", max_attempts=1, name="shop.charge_card"):
    class Args(BaseModel):
        order: str
        declined: bool = False

    def perform(self, job: Job[Any]) -> None:
        if job.args.declined:
            raise RuntimeError(f"card declined for order {job.args.order}")


class Checkout(Workflow, name="checkout"):
    """Reserve stock and charge the card (side by side), then ship: a failed shipment undoes
    the charge and the reservation."""

    class Inputs(BaseModel):
        order: str
        ship_fails: bool = False

    @step
    def reserve(self, order: str) -> str:
        return f"reservation-{order}"

    @reserve.undo
    def release(self, reservation: str) -> None:
        UNDONE.append(reservation)

    @step
    def charge(self, order: str) -> str:
        return f"payment-{order}"

    @charge.undo
    def refund(self, payment: str) -> None:
        UNDONE.append(payment)

    @step
    def ship(self, reserve: str, charge: str, order: str, ship_fails: bool) -> str:
        if ship_fails:
            raise ConnectionError("carrier unreachable")
        return f"parcel-{order}"


class CheckoutWorker(
    WorkflowWorker, workflow=Checkout, queue="checkout", max_attempts=1, name="shop.checkout"
):
    pass


WORKERS = (SendReceipt, ChargeCard, CheckoutWorker)
WORKFLOWS = (Checkout,)


def fill(app: App) -> dict[str, Any]:
    """Receipts sent, one card charged and one declined (discarded: a failed job), two
    checkouts (one succeeded, one rolled back); one receipt left waiting."""
    receipts = app.insert_all([SendReceipt.new({"order": f"o-{n}"}) for n in range(1, 4)])
    charged = app.insert(ChargeCard.new({"order": "o-1"}))
    declined = app.insert(ChargeCard.new({"order": "o-2", "declined": True}))
    shipped = app.insert(CheckoutWorker.new({"order": "o-1"}))
    lost = app.insert(CheckoutWorker.new({"order": "o-2", "ship_fails": True}))
    for queue in ("mailers", "payments", "checkout"):
        drain_queue(app, queue)
    waiting = app.insert(SendReceipt.new({"order": "o-9"}))
    return {
        "receipts": [job.id for job in receipts],
        "charged": charged.id,
        "declined": declined.id,
        "shipped": shipped.id,
        "lost": lost.id,
        "waiting": waiting.id,
    }


def settles(app: App, job_id: int, within: float = 5.0) -> str:
    """The job's state once it is final, or after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        job = app.get_job(job_id)
        assert job is not None
        if job.state.is_final or time.monotonic() > deadline:
            return job.state.value
        time.sleep(0.02)
