"""Workers the testing guide (docs/testing.md) tests."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from jobsaga import Complete, Discard, Job, Worker

ACCOUNTS: dict[int, str] = {1: "ada@example.com"}
SENT: list[str] = []


class SendWelcome(Worker, queue="mailers", max_attempts=5):
    class Args(BaseModel):
        account_id: int

    def perform(self, job: Job[Any]) -> Any:
        email = ACCOUNTS.get(job.args.account_id)
        if email is None:
            return Discard(f"account {job.args.account_id} does not exist")
        SENT.append(email)
        return {"sent_to": email}


class Onboard(Worker):
    class Args(BaseModel):
        account_id: int

    def perform(self, job: Job[Any]) -> Complete:
        # the follow-up is inserted with the job's completion, in the same transaction
        welcome = SendWelcome.new({"account_id": job.args.account_id}, schedule_in=3600)
        return Complete(enqueue=(welcome,))


# --- a worker with an actor (the guide's "Worker with Actor") ------------------------------

import enum  # noqa: E402


class Role(enum.StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"


class Actor(BaseModel):
    """Who asked: typed, so a job with an unknown role is refused at insert."""

    id: int
    organization_id: int
    role: Role


REPORTS: dict[int, int] = {10: 1}  # report id -> its organization
SHARED: list[tuple[int, int]] = []


class ShareReport(Worker, queue="reports"):
    class Args(BaseModel):
        report_id: int
        actor: Actor

    def perform(self, job: Job[Any]) -> Any:
        organization = REPORTS.get(job.args.report_id)
        if organization is None:
            return Discard("not_found")
        if organization != job.args.actor.organization_id:
            return Discard("forbidden")
        SHARED.append((job.args.report_id, job.args.actor.id))
        return None


# --- a worker that runs a saga (docs/testing.md, "A worker that runs a workflow") ---------

from jobsaga import Workflow, WorkflowWorker, step  # noqa: E402

LEDGER: list[str] = []


class Provision(Workflow, inputs=["account_id", "plan"]):
    @step
    def reserve_seat(self, account_id: int) -> str:
        LEDGER.append(f"reserved {account_id}")
        return f"seat-{account_id}"

    @reserve_seat.undo
    def release_seat(self, seat: str) -> None:
        LEDGER.append(f"released {seat}")

    @step
    def charge(self, reserve_seat: str, plan: str) -> str:
        if plan == "gold":
            raise RuntimeError("card declined")
        LEDGER.append(f"charged {plan}")
        return f"invoice-{plan}"


class ProvisionWorker(WorkflowWorker, workflow=Provision, max_attempts=1):
    pass
