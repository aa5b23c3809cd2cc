"""Options the commands share, declared once.

Every command that needs an app or a database takes :func:`config_options` and receives one
:class:`~jobsaga.cli.configured.AppSource`; listing commands take :func:`limit_option`;
``jobsaga worker`` takes :func:`node_options`, one flag per node option under the option's
own name (``--prune-after`` sets ``prune_after``), made from
:class:`~jobsaga.config.NodeConfig` so a new option gets its flag, help included.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import click

from ..config import NodeConfig, node_option_names
from .configured import AppSource, flag_name

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
        help="Any configuration key (e.g. prune_after=86400, crontab='[...]'); repeatable.",
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
    """``-q NAME=LIMIT`` flags as a mapping. A queue given twice is refused: which limit
    was meant cannot be guessed, and the last one silently winning hides the mistake."""
    queues: dict[str, int] = {}
    for value in values:
        name, sep, limit = value.partition("=")
        if not sep or not name or not limit.isdigit():
            raise click.BadParameter(
                f"{value!r}: use NAME=LIMIT, e.g. default=10", param_hint="--queue"
            )
        if int(limit) < 1:
            raise click.BadParameter(
                f"{value!r}: a queue's limit is how many of its jobs run at once, at least 1 "
                "(to stop a queue, pause it: jobsaga queues pause NAME)",
                param_hint="--queue",
            )
        if name in queues:
            raise click.BadParameter(
                f"queue {name!r} is given twice ({name}={queues[name]} and {value}): "
                "give each queue once",
                param_hint="--queue",
            )
        queues[name] = int(limit)
    return queues


NO_FLAG = frozenset({"crontab"})
"""Node options without a flag: a crontab is a list, given in the TOML file, the environment
or ``--set crontab='[...]'``."""


def node_options(fn: Callable[..., R]) -> Callable[..., R]:
    """A flag per node option (``--grace-period``, ``--prune-after``, ``--leadership/
    --no-leadership``...), handed to the command as ``node_options``: the options given,
    under their keys, for :meth:`AppSource.config` (NodeConfig checks the values)."""

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> R:
        given = {key: kwargs.pop(key) for key in NODE_FLAGS}
        return fn(*args, node_options=given, **kwargs)

    decorated: Callable[..., R] = command
    for key in reversed(NODE_FLAGS):
        decorated = _node_flag(key)(decorated)
    return decorated


NODE_FLAGS = tuple(key for key in node_option_names() if key not in NO_FLAG)


def _value_type(key: str) -> type:
    """The Python type of a node option's value (``float`` for ``Seconds | None``)."""
    annotation: Any = NodeConfig.model_fields[key].annotation
    if get_origin(annotation) in (Union, types.UnionType):
        annotation = next(a for a in get_args(annotation) if a is not type(None))
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    assert isinstance(annotation, type), (key, annotation)
    return annotation


def _node_flag(key: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
    flag = flag_name(key)  # the name errors give it (AppSource.config's sources)
    description = NodeConfig.model_fields[key].description or ""
    text = " ".join(description.split()).replace("``", "")
    kind = _value_type(key)
    if kind is bool:
        return click.option(f"{flag}/--no-{flag[2:]}", key, default=None, help=text)
    return click.option(flag, key, type=kind, default=None, help=text)
