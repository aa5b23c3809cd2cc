"""Final attempt handling: the guide's "Error Handling > Final Attempt Handling".

Run it from the repository root: ``python examples/final_attempt.py``

The guide checks ``attempt >= max_attempts()`` by hand in perform to clean up after the last
failure. Here it is built in: ``on_final_failure(self, job, error)`` runs exactly once, when
the last attempt fails (by an exception or ``Error``), before the job is written as
discarded; ``job.is_final_attempt`` tells perform whether it is on that attempt. A job that
recovers before its last attempt never calls the hook.
"""

from __future__ import annotations

from typing import Any

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Job, Worker

RESOURCES = {"res-ok": "queued", "res-flaky": "queued", "res-broken": "queued"}
UI_MESSAGES: list[dict[str, Any]] = []  # stands in for Phoenix.PubSub.broadcast


class ProcessResource(
    Worker, max_attempts=3, name="examples.final_attempt", backoff=lambda attempt: 0.1
):
    class Args(BaseModel):
        resource_id: str

    def perform(self, job: Job[Args]) -> None:
        resource_id = job.args.resource_id
        final = " (final attempt)" if job.is_final_attempt else ""
        say(f"  {resource_id}: attempt {job.attempt}/{job.max_attempts}{final}")
        if resource_id == "res-broken" or (resource_id == "res-flaky" and job.attempt < 2):
            raise RuntimeError(f"processing {resource_id} failed")
        RESOURCES[resource_id] = "processed"

    def on_final_failure(self, job: Job[Args], error: BaseException) -> None:
        resource_id = job.args.resource_id
        say(f"  on_final_failure({resource_id}, {type(error).__name__}: {error})")
        RESOURCES[resource_id] = "failed"  # mark the resource failed
        UI_MESSAGES.append(  # tell the UI
            {"topic": f"resource:{resource_id}", "event": "processing_failed", "error": str(error)}
        )


def main() -> None:
    with temporary_app(ProcessResource) as app:
        jobs = app.insert_all([ProcessResource.new({"resource_id": r}) for r in RESOURCES])
        with app.node({"default": 5}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        print()
        for job in jobs:
            print(describe(app.get_job(job.id) or job))
        print(f"resources: {RESOURCES}")
        print(f"UI messages ({len(UI_MESSAGES)}): {UI_MESSAGES}")


if __name__ == "__main__":
    main()
