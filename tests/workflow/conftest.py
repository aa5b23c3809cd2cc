"""Shared helpers for workflow tests: a trail that steps append to, reset per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

TRAIL: list[str] = []


@pytest.fixture(autouse=True)
def trail() -> Iterator[list[str]]:
    TRAIL.clear()
    yield TRAIL
    TRAIL.clear()
