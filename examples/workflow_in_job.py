"""A workflow inside a job: the guide's "Workflow Integration > Critical Pattern".

Run it from the repository root: ``python examples/workflow_in_job.py``

DO: run the saga inside a job. A ``WorkflowWorker`` runs one workflow per job: its args are
the workflow's inputs plus its typed context (the actor), the job layer retries a failed run
with backoff, and ``on_final_failure`` gets the ``WorkflowError`` after the last attempt.
DON'T: enqueue a job from a step: an inserted job cannot be compensated when the saga rolls
back. jobsaga refuses it with ``EnqueueInStepError``; the safe alternative is
``ctx.enqueue_after_success(...)``, inserted only once the whole workflow has succeeded.
"""

from __future__ import annotations

import textwrap
from typing import Any, ClassVar

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import App, Job, StepContext, Worker, Workflow, WorkflowError, WorkflowWorker, step
from jobsaga.workflow import list_runs

RESOURCES = {"res-1": "queued", "res-2 [fails]": "queued"}
SEATS: list[str] = []  # what the reserve step holds (undone on rollback)


class Actor(BaseModel):
    id: str
    role: str


class NotifyOwner(Worker, queue="notifications", name="examples.notify_owner"):
    class Args(BaseModel):
        resource_id: str
        user_id: str

    def perform(self, job: Job[Args]) -> None:
        say(f"  NotifyOwner: told {job.args.user_id} that {job.args.resource_id} is processed")


class ProcessResource(Workflow, name="examples.process_resource"):
    class Inputs(BaseModel):
        resource_id: str

    class Context(BaseModel):
        actor: Actor

    @step
    def reserve(self, resource_id: str) -> str:
        SEATS.append(resource_id)
        return resource_id

    @reserve.undo
    def release(self, seat: str) -> None:
        SEATS.remove(seat)

    @step
    def process(self, reserve: str, ctx: StepContext[Context]) -> str:
        if "[fails]" in reserve:
            raise RuntimeError(f"processing {reserve} failed (attempt {ctx.attempt})")
        RESOURCES[reserve] = "processed"
        # DO: a follow-up job, inserted with the job's completion if the saga succeeds
        ctx.enqueue_after_success(
            NotifyOwner.new({"resource_id": reserve, "user_id": ctx.context.actor.id})
        )
        return "processed"


class ProcessResourceWorker(
    WorkflowWorker,
    workflow=ProcessResource,
    queue="workflows",
    max_attempts=2,
    name="examples.process_resource_worker",
    backoff=lambda attempt: 0.1,
):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        assert isinstance(error, WorkflowError)
        RESOURCES[job.args.resource_id] = "failed"
        say(f"  on_final_failure: {error.error}; undone: {', '.join(error.undone)}")


class EnqueueFromStep(Workflow, name="examples.dont_enqueue", inputs=["resource_id"]):
    app: ClassVar[App]  # the app, as a step might find it through a module global

    @step
    def trigger_job(self, resource_id: str) -> str:
        # DON'T: this raises EnqueueInStepError, and the step fails with it
        self.app.insert(NotifyOwner.new({"resource_id": resource_id, "user_id": "user-1"}))
        return "enqueued"


class DontWorker(WorkflowWorker, workflow=EnqueueFromStep, max_attempts=1, name="examples.dont"):
    pass


def main() -> None:
    workers = (ProcessResourceWorker, NotifyOwner, DontWorker)
    with temporary_app(*workers, workflows=[ProcessResource, EnqueueFromStep]) as app:
        EnqueueFromStep.app = app
        actor = Actor(id="user-1", role="admin")
        jobs = [ProcessResourceWorker.new({"resource_id": r, "actor": actor}) for r in RESOURCES]
        jobs.append(DontWorker.new({"resource_id": "res-1"}))
        dont = app.insert_all(jobs)[-1]
        queues = {"workflows": 2, "notifications": 2, "default": 2}
        with app.node(queues, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        print()
        for job in app.list_jobs(newest_first=False, limit=None):
            print(describe(job))
        for run in sorted(list_runs(app), key=lambda run: run.id or 0):
            print(f"run {run.id} of job {run.job_id} (attempt {run.attempt}): {run.status}")
        print(f"resources: {RESOURCES}; seats still held: {SEATS}")
        notified = app.list_jobs(worker=NotifyOwner, limit=None)
        print(f"NotifyOwner jobs: {len(notified)} (res-1's follow-up; none from the DON'T step)")
        error = (app.get_job(dont.id) or dont).errors[-1]["error"]
        print("the DON'T step's error, as recorded on its job:")
        print(textwrap.fill(error, 96, initial_indent="  ", subsequent_indent="  "))


if __name__ == "__main__":
    main()
