"""The public API is curated: a sorted ``__all__``, every name importable, nothing private."""

from __future__ import annotations

import jobsaga


def test_all_is_sorted_and_importable() -> None:
    assert jobsaga.__all__ == sorted(jobsaga.__all__)
    for name in jobsaga.__all__:
        assert not name.startswith("_")
        assert getattr(jobsaga, name) is not None


def test_every_public_class_is_exported() -> None:
    public = {
        name
        for name, value in vars(jobsaga).items()
        if isinstance(value, type) and not name.startswith("_")
    }
    assert public <= set(jobsaga.__all__)


def test_importing_opens_no_connection() -> None:
    app = jobsaga.App("postgresql://nobody@127.0.0.1:1/none")
    assert app._engine is None  # built lazily, on first use
