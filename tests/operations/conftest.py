from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import workers


@pytest.fixture(autouse=True)
def _fresh_workers() -> Iterator[None]:
    workers.reset()
    yield
    workers.release.set()  # let anything still held finish so nodes stop quickly


NODE = {"poll_interval": 0.05, "control_interval": 0.1, "grace_period": 2.0}
"""Short timings for nodes in these tests."""
