from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest

from . import workers


@pytest.fixture(autouse=True)
def _fresh_workers() -> Iterator[None]:
    workers.reset()
    yield
    workers.release.set()  # let anything still held finish so nodes stop quickly


NODE = {"poll_interval": 0.05, "control_interval": 0.1, "grace_period": 2.0}
"""Short timings for nodes in these tests."""


def progress_interrupted_at(
    batch: int,
) -> Callable[..., AbstractContextManager[Callable[[int], None]]]:
    """A stand-in for ``jobsaga.cli.progress.progress`` whose ``batch``-th report raises
    KeyboardInterrupt, as a Ctrl-C right after that batch committed would."""

    @contextmanager
    def interrupted(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
        reports: list[int] = []

        def advance(done: int) -> None:
            reports.append(done)
            if len(reports) == batch:
                raise KeyboardInterrupt

        yield advance

    return interrupted
