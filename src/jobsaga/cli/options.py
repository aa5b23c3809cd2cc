"""Options the commands share, declared once.

Every command that needs an app or a database takes :func:`config_options` and receives one
:class:`~jobsaga.cli.configured.AppSource`; listing commands take :func:`limit_option`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from .configured import AppSource

R = TypeVar("R")

NO_LIMIT = 0
"""``--limit 0``: every match (the Python API says ``limit=None``)."""


def config_options(fn: Callable[..., R]) -> Callable[..., R]:
    """--config, --app, --url and --set, handed to the command as ``source`` (an
    :class:`AppSource`, resolved by :class:`~jobsaga.config.NodeConfig`: flags, then the
    JOBSAGA_* variables, then the TOML file, then defaults)."""

    @functools.wraps(fn)
    def command(
        *args: Any,
        config_path: str | None,
        app_spec: str | None,
        url: str | None,
        settings: tuple[str, ...],
        **kwargs: Any,
    ) -> R:
        source = AppSource(config_path, app_spec, url, tuple(settings))
        return fn(*args, source=source, **kwargs)

    decorated: Callable[..., R] = command
    for option in reversed(CONFIG_OPTIONS):
        decorated = option(decorated)
    return decorated


CONFIG_OPTIONS = [
    click.option(
        "--config",
        "config_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="TOML file (default: $JOBSAGA_CONFIG, else ./jobsaga.toml if present).",
    ),
    click.option(
        "--app",
        "app_spec",
        default=None,
        help="Your App as module:attribute (its workers and workflows are loaded). "
        "Default: $JOBSAGA_APP, else app in the TOML file.",
    ),
    click.option(
        "--url",
        default=None,
        help="Database URL (sqlite:///file.db or postgresql://...). Default: "
        "$JOBSAGA_DATABASE_URL, else url in the TOML file, else the app's, else "
        "sqlite:///jobsaga.db.",
    ),
    click.option(
        "--set",
        "settings",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any configuration key, dotted (e.g. plugins.pruner.max_age=86400); repeatable.",
    ),
]


def limit_option(fn: Callable[..., R]) -> Callable[..., R]:
    """``--limit N`` (default 50); ``0`` lists every match."""
    return click.option(
        "--limit",
        type=click.IntRange(min=0),
        default=50,
        show_default=True,
        help="Show at most this many; 0: no limit (every match).",
    )(fn)


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
