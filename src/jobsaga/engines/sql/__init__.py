"""Each dialect's SQL, as named blocks in ``.sql`` files under ``<dialect>/``.

One registry per dialect: every ``.sql`` file directly under ``<dialect>/`` (jobs,
operations, plugins, workflow) holds blocks that start with ``-- name: some_query``, and the
engine loads them all into one mapping, the same names for each dialect. A name defined in
two files is an error. A block may be spliced into others: ``/*job_filter*/`` in a query is
replaced by the ``job_filter`` block (a fragment, not a statement), so the shared filter is
written once per dialect. Migrations are files named ``NNNN_description.sql`` under
``<dialect>/migrations``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType

_NAME = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_SPLICE = re.compile(r"/\*(\w+)\*/")


def parse_queries(text: str) -> dict[str, str]:
    parts = _NAME.split(text)
    queries: dict[str, str] = {}
    for index in range(1, len(parts), 2):
        name, body = parts[index], parts[index + 1].strip()
        if name in queries:
            raise ValueError(f"query {name!r} defined twice")
        queries[name] = body
    return queries


@functools.cache
def dialect_queries(dialect: str) -> Mapping[str, str]:
    """Every named query of ``dialect``, fragments spliced in (read once per process, and
    shared by every engine of it: read-only)."""
    root = resources.files(__package__).joinpath(dialect)
    found: dict[str, str] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        for name, sql in parse_queries(entry.read_text("utf-8")).items():
            if name in found:
                raise ValueError(f"{dialect}: query {name!r} defined twice ({entry.name})")
            found[name] = sql
    fragments = {mark for sql in found.values() for mark in _SPLICE.findall(sql)}
    spliced = {name: found.pop(name) for name in fragments if name in found}
    return MappingProxyType(
        {
            name: _SPLICE.sub(lambda m: f"({spliced[m[1]]})" if m[1] in spliced else m[0], sql)
            for name, sql in found.items()
        }
    )


def load_migrations(dialect: str) -> list[tuple[str, str]]:
    """Return ``(version, sql)`` pairs in version order."""
    root = resources.files(__package__).joinpath(dialect, "migrations")
    found = [
        (entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found)
