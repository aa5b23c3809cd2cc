"""Testing modes: ``inline`` performs each insert at once; ``manual`` stores it for draining."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .. import _context
from ..app import App
from ..engines.base import CallerConnection
from ..errors import ConfigError
from ..job import Job, JobSpec
from .runner import run_sync, runner

MODES = ("inline", "manual")


def _inline(app: App, specs: Sequence[JobSpec], conn: CallerConnection | None) -> list[Job[Any]]:
    """Store each job, then run its attempt at once and return it as executed. With ``conn``
    (the caller's PostgreSQL transaction) the job is stored, claimed and acknowledged inside
    that transaction, so it is kept only if the caller commits, as a real insert would be."""
    stored = app.engine.insert(list(specs), conn=conn)  # the engine's insert: no interceptor
    done: list[Job[Any]] = []
    with runner(app) as run:
        for job in stored:
            if not job.conflict:
                run_sync(run.run_stored(job, job.attempt + 1, conn=conn))
                job = app.engine.get_job(job.id, conn=conn) or job
            done.append(job)
    return done


@contextmanager
def testing_mode(mode: str) -> Iterator[None]:
    """Within the block, inserts follow ``mode`` (``"inline"`` or ``"manual"``)."""
    if mode not in MODES:
        raise ConfigError(f"testing mode must be one of {', '.join(MODES)}, got {mode!r}")
    token = _context.insert_interceptor.set(_inline if mode == "inline" else None)
    try:
        yield
    finally:
        _context.insert_interceptor.reset(token)


# Its name starts with "test", and pytest collects every such function of a test module's
# namespace, imported ones included: a suite's ``from jobsaga.testing import testing_mode``
# would add a test that errors (``fixture 'mode' not found``). pytest skips what says it is
# not a test.
testing_mode.__test__ = False  # type: ignore[attr-defined]
