"""What perform returns: the guide's "Error Handling > Return Values".

Run it from the repository root: ``python examples/error_handling.py``

=========================  ==============================  ==================================
the guide                  jobsaga                         the job becomes
=========================  ==============================  ==================================
``:ok``                    return ``None`` (or a value)    completed
``{:discard, :not_found}`` return ``Discard("not_found")`` discarded at once, reason recorded
``{:snooze, 60}``          return ``Snooze(60)``           scheduled; the attempt given back
``{:error, reason}``       return ``Error(reason)``/raise  retried with backoff, then discarded
``{:cancel, reason}``      return ``Cancel(reason)``       cancelled at once, reason recorded
=========================  ==============================  ==================================

``{:cancel, reason}`` is Oban's, beyond the guide. Snoozes and retries are a fraction of a
second here so the example settles quickly.
"""

from __future__ import annotations

from _support import describe, say, settled, temporary_app, wait_until
from pydantic import BaseModel

from jobsaga import Cancel, Discard, Error, Job, Snooze, Worker


def process(job: Job[ProcessWorker.Args]) -> str:
    """Stands in for the real work: the scenario says how it goes; transient errors heal."""
    scenario = job.args.scenario
    if scenario in ("transient_error", "exception") and job.attempt > 1:
        return "ok"
    if scenario == "rate_limit" and job.meta.get("snoozed", 0) >= 1:
        return "ok"
    return scenario


class ProcessWorker(
    Worker, max_attempts=3, name="examples.process", backoff=lambda attempt: 0.2 * attempt
):
    class Args(BaseModel):
        scenario: str

    def perform(self, job: Job[Args]) -> Discard | Snooze | Error | Cancel | None:
        outcome = process(job)
        say(f"  attempt {job.attempt} of {job.args.scenario}: {outcome}")
        match outcome:
            case "ok":
                return None  # success: completed
            case "not_found" | "forbidden":
                return Discard(outcome)  # permanent failure: never retried
            case "rate_limit":
                return Snooze(0.3)  # postpone (the guide: 60 s); not a failed attempt
            case "customer_left":
                return Cancel("the customer closed the account")  # stop, deliberately
            case "exception":
                raise ConnectionError("upstream reset the connection")  # retried too
            case _:
                return Error(outcome)  # transient failure: retried with backoff


SCENARIOS = [
    "ok",
    "not_found",
    "forbidden",
    "rate_limit",
    "transient_error",
    "exception",
    "customer_left",
]


def main() -> None:
    with temporary_app(ProcessWorker) as app:
        jobs = app.insert_all([ProcessWorker.new({"scenario": s}) for s in SCENARIOS])
        with app.node({"default": 10}, poll_interval=0.05).start_in_thread():
            wait_until(lambda: settled(app))
        print()
        for job in jobs:
            stored = app.get_job(job.id) or job
            snoozed = stored.meta.get("snoozed", 0)
            extra = f", snoozed {snoozed}x" if snoozed else ""
            print(f"{stored.raw_args['scenario']:<16} {describe(stored)}{extra}")


if __name__ == "__main__":
    main()
