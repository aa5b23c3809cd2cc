"""Whether a database holds the schema this jobsaga expects, checked by reading only.

What a node checks at start and the CLI checks before it reads or changes anything, so that
a missing schema is one error with its remedy rather than a driver's "no such table".
"""

from __future__ import annotations

from . import sql as sqlfiles
from .base import Engine


def known_migrations(engine: Engine) -> list[str]:
    """Versions this jobsaga ships for the engine's dialect, in order."""
    return [version for version, _ in sqlfiles.load_migrations(engine.dialect)]


def missing_migrations(engine: Engine) -> list[str]:
    """Known versions the database lacks, in order: every one when it has no jobsaga tables.
    Creates nothing (``applied_migrations`` reads only on every engine)."""
    applied = set(engine.applied_migrations())
    return [version for version in known_migrations(engine) if version not in applied]
