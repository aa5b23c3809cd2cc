"""Options every command that touches the database shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def app_options(fn: F) -> F:
    fn = click.option(
        "--url",
        envvar="JOBSAGA_DATABASE_URL",
        default=None,
        help="Database URL (sqlite:///file.db or postgresql://...). Default: embedded jobsaga.db.",
    )(fn)
    fn = click.option(
        "--app",
        "app_spec",
        envvar="JOBSAGA_APP",
        default=None,
        help="Your App as module:attribute (its workers and workflows are loaded).",
    )(fn)
    return fn


def parse_queues(values: tuple[str, ...]) -> dict[str, int]:
    queues: dict[str, int] = {}
    for value in values:
        name, sep, limit = value.partition("=")
        if not sep or not limit.isdigit() or int(limit) < 1:
            raise click.BadParameter(
                f"{value!r}: use NAME=LIMIT, e.g. default=10", param_hint="--queue"
            )
        queues[name] = int(limit)
    return queues
