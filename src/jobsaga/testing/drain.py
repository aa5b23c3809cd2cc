"""Run a queue's jobs synchronously in the test, through the runtime's executor and acks."""

from __future__ import annotations

from collections import Counter

from ..app import App
from ..errors import ConfigError
from .runner import run_sync, runner

OUTCOMES = ("completed", "retryable", "snoozed", "cancelled", "discarded")


def drain_queue(
    app: App,
    queue: str = "default",
    *,
    with_scheduled: bool = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
) -> dict[str, int]:
    """Run the available jobs of ``queue`` in the test, in fetch order; returns counts by
    outcome (``completed``, ``retryable``, ``snoozed``, ``cancelled``, ``discarded``).

    A drain is made of passes: a pass runs, once each, the jobs that were available when it
    began. Without ``with_recursion`` there is one pass, so the jobs the drained jobs enqueue
    and the retries they schedule stay enqueued for the test to assert on; with it, passes go
    on until one finds nothing to run. ``with_scheduled`` makes the queue's scheduled and
    retryable jobs due at the start of each pass. A job that snoozes runs once per drain: it
    counts as ``snoozed`` and stays scheduled, so a job that always snoozes cannot make a
    drain loop forever. ``with_safety=False`` raises a perform's exception in the test (after
    the failed attempt is written); ``with_limit`` caps how many jobs run.
    """
    if with_limit is not None and with_limit < 0:
        raise ConfigError(f"with_limit must be 0 or more, got {with_limit}")
    counts: Counter[str] = Counter()
    snoozed: list[int] = []
    ran = 0
    with runner(app) as run:
        while with_limit is None or ran < with_limit:
            if with_scheduled:
                app.engine.make_due(queue, except_ids=snoozed)
            app.engine.stage()
            waiting = app.list_jobs(queue=queue, state="available", limit=None)
            waiting.sort(key=lambda job: (job.priority, job.scheduled_at, job.id))
            if not waiting:
                break
            for job in waiting[: None if with_limit is None else with_limit - ran]:
                done = run_sync(run.run_stored(job, job.attempt + 1))
                if done is None:  # cancelled or deleted by someone else since the pass began
                    continue
                ran += 1
                counts[done.outcome_name] += 1
                if done.outcome_name == "snoozed":
                    snoozed.append(job.id)
                if done.outcome.error is not None and not with_safety:
                    raise done.outcome.error
            if not with_recursion:
                break
    return {name: counts.get(name, 0) for name in OUTCOMES}
