"""Run a queue's jobs synchronously in the test, through the runtime's executor and acks."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from ..app import App
from ..job import JobState
from ..runtime.executor import Executor
from .perform import _run, placeholder

OUTCOMES = ("completed", "retryable", "snoozed", "cancelled", "discarded")


def _make_due(app: App, queue: str) -> None:
    """Bring scheduled/retryable jobs of ``queue`` to now, then stage them."""
    sql = (
        "UPDATE jobsaga_jobs SET scheduled_at = {now} "
        "WHERE queue = {q} AND state IN ('scheduled', 'retryable')"
    )
    ph = placeholder(app)
    with app.engine.transaction() as tx:
        tx.execute(
            sql.format(now=ph("now"), q=ph("queue")),
            {"now": app.engine.time_param(app.now()), "queue": queue},
        )
    app.engine.stage()


def drain_queue(
    app: App,
    queue: str = "default",
    *,
    with_scheduled: bool = False,
    with_recursion: bool = False,
    with_safety: bool = True,
    with_limit: int | None = None,
) -> dict[str, int]:
    """Run available jobs of ``queue`` until none is left; returns counts by outcome.

    ``with_scheduled`` runs scheduled (and retryable) jobs now; ``with_recursion`` keeps
    draining jobs the drained jobs enqueue (otherwise one pass); ``with_safety=False`` lets a
    perform's exception propagate; ``with_limit`` caps the number of jobs run.
    """
    counts: Counter[str] = Counter()
    ran = 0
    with ThreadPoolExecutor(2) as threads:
        executor = Executor(app, "jobsaga.testing", threads)
        while True:
            if with_scheduled:
                _make_due(app, queue)
            else:
                app.engine.stage()
            limit = 100 if with_limit is None else min(100, with_limit - ran)
            jobs = app.engine.fetch(queue, limit, "jobsaga.testing") if limit > 0 else []
            if not jobs:
                break
            for job in jobs:
                outcome, typed, worker = _run(executor.attempt(job))
                if outcome.error is not None and not with_safety:
                    raise outcome.error
                ack = _run(executor.finish(job, outcome, worker))
                app.engine.ack([ack])
                key = ack.state.value
                if ack.state is JobState.SCHEDULED and ack.attempt_delta == -1:
                    key = "snoozed"
                counts[key] += 1
                ran += 1
            if with_limit is not None and ran >= with_limit:
                break
            if not with_recursion:
                break
    return {k: counts.get(k, 0) for k in OUTCOMES}
