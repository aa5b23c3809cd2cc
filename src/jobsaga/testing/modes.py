"""Testing modes: ``inline`` performs each insert at once; ``manual`` stores it for draining."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import _context
from ..app import App
from ..job import Job, JobSpec
from ..runtime.executor import Executor
from .perform import _run, placeholder

MODES = ("inline", "manual")


def _inline(app: App, specs: Sequence[JobSpec], conn: Any) -> list[Job[Any]]:
    """Store each job, then run its attempt at once and return it as executed."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    token = _context.insert_interceptor.set(None)  # the stored insert itself must not recurse
    try:
        stored = app.engine.insert(list(specs), conn=conn)
    finally:
        _context.insert_interceptor.reset(token)
    done: list[Job[Any]] = []
    with ThreadPoolExecutor(2) as threads:
        executor = Executor(app, "jobsaga.testing", threads)
        for job in stored:
            if job.conflict:
                done.append(job)
                continue
            running = _claim(app, job)
            outcome, _typed, worker = _run(executor.attempt(running))
            app.engine.ack([_run(executor.finish(running, outcome, worker))])
            done.append(app.get_job(job.id) or job)
    return done


def _claim(app: App, job: Job[Any]) -> Job[Any]:
    """Mark this one job executing, as a fetch would, whatever its queue or schedule."""
    ph = placeholder(app)
    sql = (
        "UPDATE jobsaga_jobs SET state = 'executing', attempt = attempt + 1, "
        f"attempted_at = {ph('now')}, attempted_by = 'jobsaga.testing' "
        f"WHERE id = {ph('id')} RETURNING *"
    )
    with app.engine.transaction() as tx:
        rows = tx.execute(sql, {"now": app.engine.time_param(app.now()), "id": job.id})
    return app.engine.row_to_job(rows[0])


@contextmanager
def testing_mode(mode: str) -> Iterator[None]:
    """Within the block, inserts follow ``mode`` (``"inline"`` or ``"manual"``)."""
    if mode not in MODES:
        raise ValueError(f"testing mode must be one of {', '.join(MODES)}, got {mode!r}")
    token = _context.insert_interceptor.set(_inline if mode == "inline" else None)
    try:
        yield
    finally:
        _context.insert_interceptor.reset(token)
