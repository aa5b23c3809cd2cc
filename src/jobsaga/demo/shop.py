"""The shop half of ``jobsaga demo``: a small shop's background work, every outcome shown.

Each worker is shaped like a real job (receipts, card charges, a rate-limited inventory
sync...) and behaves deterministically from its args, so the demo's table is the same every
run: completed, retried then completed, snoozed then completed, discarded, cancelled, failed
for good (with its final-failure hook), timed out, a unique duplicate, and a scheduled job.
Retry delays are shortened so the whole demo settles in a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, Field

from ..job import Job, JobSpec
from ..results import Cancel, Discard, Snooze
from ..worker import Worker

FAST_RETRY = {"backoff": lambda attempt: 0.2 * attempt}
final_failures: list[str] = []


class SendReceipt(
    Worker, queue="mailers", max_attempts=5, tags=["billing"], name="demo.send_receipt"
):
    class Args(BaseModel):
        order_id: str
        email: str = Field(pattern=r".+@.+")

    async def perform(self, job: Job[Args]) -> None:
        await asyncio.sleep(0.05)  # the mail provider's round trip


class ChargeCard(Worker, queue="default", max_attempts=3, name="demo.charge_card", **FAST_RETRY):
    """The payment gateway times out on the first attempt, then accepts."""

    class Args(BaseModel):
        order_id: str
        cents: int = Field(gt=0)

    def perform(self, job: Job[Args]) -> dict[str, Any]:
        if job.attempt == 1:
            raise ConnectionError("payment gateway timed out")
        return {"charged": job.args.cents}


class SyncInventory(Worker, queue="default", name="demo.sync_inventory"):
    """The warehouse API rate-limits us once; snoozing does not use up an attempt."""

    def perform(self, job: Job[dict[str, Any]]) -> Snooze | None:
        if job.meta.get("snoozed", 0) < 1:
            return Snooze(0.3)
        return None


class FetchExchangeRate(Worker, queue="default", name="demo.fetch_exchange_rate"):
    def perform(self, job: Job[dict[str, Any]]) -> Discard | None:
        if job.args["currency"] not in {"EUR", "USD", "GBP"}:
            return Discard(f"currency {job.args['currency']} is not supported")
        return None


class BuildReport(Worker, queue="reports", name="demo.build_report"):
    def perform(self, job: Job[dict[str, Any]]) -> Cancel | None:
        if job.args.get("customer_deleted"):
            return Cancel("the customer closed their account")
        return None


class NotifyPartner(
    Worker, queue="default", max_attempts=3, name="demo.notify_partner", **FAST_RETRY
):
    """The partner's endpoint is gone: every attempt fails, and the last one calls the hook."""

    def perform(self, job: Job[dict[str, Any]]) -> None:
        raise RuntimeError(f"partner {job.args['partner']} answered HTTP 410 Gone")

    def on_final_failure(self, job: Job[dict[str, Any]], error: BaseException) -> None:
        final_failures.append(f"job {job.id}: marked partner {job.args['partner']} unreachable")


class ResizeImages(
    Worker, queue="media", max_attempts=2, timeout=0.3, name="demo.resize_images", **FAST_RETRY
):
    def perform(self, job: Job[dict[str, Any]]) -> None:
        time.sleep(float(job.args["seconds"]))


class ImportCatalog(
    Worker,
    queue="default",
    name="demo.import_catalog",
    unique={"period": 300, "keys": ["supplier"]},
):
    def perform(self, job: Job[dict[str, Any]]) -> None:
        return None


SHOP_WORKERS: list[type[Worker]] = [
    SendReceipt,
    ChargeCard,
    SyncInventory,
    FetchExchangeRate,
    BuildReport,
    NotifyPartner,
    ResizeImages,
    ImportCatalog,
]
SHOP_QUEUES = {"default": 10, "mailers": 5, "reports": 2, "media": 2}


def demo_jobs() -> list[JobSpec]:
    """One job per outcome (the last ``ImportCatalog`` is the unique duplicate)."""
    return [
        SendReceipt.new({"order_id": "o-1001", "email": "ada@example.com"}),
        SendReceipt.new({"order_id": "o-1002", "email": "grace@example.com"}, priority=0),
        ChargeCard.new({"order_id": "o-1001", "cents": 4200}),
        SyncInventory.new({"warehouse": "north"}),
        FetchExchangeRate.new({"currency": "EUR"}),
        FetchExchangeRate.new({"currency": "XTS"}),
        BuildReport.new({"customer": "c-7", "customer_deleted": True}),
        NotifyPartner.new({"partner": "acme-logistics"}),
        ResizeImages.new({"seconds": 1.0}),
        ImportCatalog.new({"supplier": "s-1", "since": "2026-11-01"}),
        ImportCatalog.new({"supplier": "s-1", "since": "2026-11-02"}),  # duplicate
        SendReceipt.new({"order_id": "o-1003", "email": "linus@example.com"}, schedule_in=1.0),
    ]
