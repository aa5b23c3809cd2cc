"""Worker with an actor: the guide's "Worker with Actor" and "Job Enqueueing > With Actor Context".

Run it from the repository root: ``python examples/actor_worker.py``

The guide stores the actor with string keys and rebuilds it in every worker
(``atomize_actor_keys``). Here the actor is a pydantic model inside the worker's ``Args``:
it is validated when the job is built (an unknown role is refused before anything is
stored), stored as JSON, and handed back to ``perform`` as an ``Actor`` whose ``role`` is a
``Role``, with no conversion code at all.
"""

from __future__ import annotations

import enum

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import ArgsError, Discard, Job, Worker


class Role(enum.StrEnum):
    ADMIN = "admin"
    MEMBER = "member"


class Actor(BaseModel):
    id: str
    organization_id: str
    role: Role


# Stands in for the application's database: resource id -> its organization and status.
RESOURCES = {"res-1": {"organization_id": "org-1", "status": "new"}}


class ProcessResource(Worker, queue="default", max_attempts=3, name="examples.process_resource"):
    class Args(BaseModel):
        resource_id: str
        actor: Actor

    def perform(self, job: Job[Args]) -> Discard | None:
        actor = job.args.actor  # an Actor already; actor.role is a Role
        say(f"  perform {job.args.resource_id} as {actor.id} ({actor.role!r})")
        resource = RESOURCES.get(job.args.resource_id)
        if resource is None:
            return Discard("not_found")
        if resource["organization_id"] != actor.organization_id:
            return Discard("forbidden")
        resource["status"] = f"processed by {actor.id}"
        return None


def main() -> None:
    with temporary_app(ProcessResource) as app:
        # With actor context: build the actor from the current user, pass the model as is.
        admin = Actor(id="user-1", organization_id="org-1", role=Role.ADMIN)
        outsider = Actor(id="user-2", organization_id="org-2", role=Role.MEMBER)
        jobs = [
            app.insert(ProcessResource.new({"resource_id": "res-1", "actor": admin})),
            app.insert(ProcessResource.new({"resource_id": "res-1", "actor": outsider})),
            app.insert(ProcessResource.new({"resource_id": "res-404", "actor": admin})),
        ]
        print(f"stored args of job {jobs[0].id}: {jobs[0].raw_args}")

        # An unknown role is refused when the job is built: nothing reaches the table.
        try:
            bad = {"id": "user-3", "organization_id": "org-1", "role": "superuser"}
            ProcessResource.new({"resource_id": "res-1", "actor": bad})
        except ArgsError as exc:
            print(f"refused at insert: {exc}")
        print(f"jobs stored: {sum(app.count_jobs().values())}")

        with app.node({"default": 5}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        for job in jobs:
            print(describe(app.get_job(job.id) or job))
        print(f"res-1 status: {RESOURCES['res-1']['status']}")


if __name__ == "__main__":
    main()
