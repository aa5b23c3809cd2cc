"""The operations' SQL, per dialect, with the shared job filter spliced into each query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..engines.sql import load_queries

if TYPE_CHECKING:
    from ..engines import Engine

FILTER_MARK = "/*job_filter*/"
_loaded: dict[str, dict[str, str]] = {}


def queries(engine: Engine) -> dict[str, str]:
    found = _loaded.get(engine.dialect)
    if found is None:
        raw = load_queries(f"{__package__}.sql", f"{engine.dialect}.sql")
        where = f"({raw.pop('job_filter')})"
        found = {name: sql.replace(FILTER_MARK, where) for name, sql in raw.items()}
        _loaded[engine.dialect] = found
    return found
