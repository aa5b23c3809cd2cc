"""Named SQL blocks loaded from package resources, the same names for each dialect.

A file holds blocks that start with ``-- name: some_query``; migrations are files named
``NNNN_description.sql`` under ``<dialect>/migrations``. Other packages (the workflow run
log, plugins) keep their SQL the same way and load it with :func:`load_queries`.
"""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for index in range(1, len(parts), 2):
        name, body = parts[index], parts[index + 1].strip()
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        queries[name] = body
    return queries


def load_queries(package: str, resource: str) -> dict[str, str]:
    return parse_queries(resources.files(package).joinpath(resource).read_text("utf-8"))


def load_migrations(package: str, folder: str) -> list[tuple[str, str]]:
    """Return ``(version, sql)`` pairs in version order."""
    root = resources.files(package).joinpath(folder)
    found = [
        (entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)
