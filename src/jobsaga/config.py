"""Configuration of a node from Python, a TOML file, environment variables and CLI flags.

One set of names: a node option is called what ``Node`` (and ``App.node``) calls it, in every
source. The TOML key, the environment variable (``JOBSAGA_`` + the key in capitals) and the
``jobsaga worker`` flag (``--`` + the key with dashes) of ``prune_after`` are ``prune_after``,
``JOBSAGA_PRUNE_AFTER`` and ``--prune-after``. Besides the node's options there are ``url``
(the database; ``JOBSAGA_DATABASE_URL``, the variable ``App()`` itself reads), ``app`` (which
App the CLI imports) and ``queues``.

Sources are layered, later ones winning key by key: defaults < TOML file < environment <
explicit overrides (CLI flags, or keywords in Python). ``queues`` is replaced whole by the
source that gives it (the set of queues a node runs is one decision). Every source is
validated against one model with ``extra="forbid"``: a misspelt key is an error that names
the key, where it came from, and the closest known key. Unset options keep ``Node``'s own
defaults, so there is one place where a default lives.

``jobsaga.toml``::

    url = "postgresql://localhost/shop"
    app = "shop.jobs:app"
    grace_period = 30
    prune_after = 604800
    crontab = [{ expression = "0 2 * * *", worker = "shop.jobs.DailyCleanup" }]

    [queues]
    default = 10
    mailers = 5
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
)

from .engines import ENV_URL
from .errors import ConfigError
from .plugins.crontab import CronEntry, coerce_crontab
from .redaction import redact_url
from .suggest import closest, did_you_mean
from .worker import check_queue_name

if TYPE_CHECKING:
    from .app import App
    from .runtime.node import Node

__all__ = ["NodeConfig"]

_origin: ContextVar[Mapping[tuple[str, ...], str] | None] = ContextVar(
    "jobsaga_config_origin", default=None
)
"""While :func:`build` validates layered sources: which source set each key, for errors."""

ENV_PREFIX = "JOBSAGA_"
ENV_CONFIG = "JOBSAGA_CONFIG"
DEFAULT_FILE = "jobsaga.toml"

Seconds = Annotated[float, Field(gt=0)]
NonNegativeSeconds = Annotated[float, Field(ge=0)]
Count = Annotated[int, Field(ge=1)]

NOT_NODE_OPTIONS = ("url", "app", "queues")
"""The keys that are not keyword options of ``Node``: where the database is, which app, and
the queues (``Node``'s positional argument)."""

FORMER_KEYS: dict[str, str] = {
    "plugins.stager.interval": "stage_interval",
    "plugins.heartbeat.interval": "heartbeat_interval",
    "plugins.lifeline.rescue_after": "rescue_after",
    "plugins.lifeline.interval": "rescue_interval",
    "plugins.pruner.max_age": "prune_after",
    "plugins.pruner.interval": "prune_interval",
    "plugins.pruner.limit": "prune_limit",
    "plugins.leader.enabled": "leadership",
    "plugins.leader.lease": "leader_lease",
    "plugins.cron.crontab": "crontab",
}
"""Keys from before the node's options had one set of names, and the name each has now. They
are errors, never read: a deployment that still sets one is told the new name instead of
silently running without it (a worker that stops pruning, or leads when it should not)."""

REMOVED_KEYS: dict[str, str] = {
    "status_interval": (
        "was removed: the heartbeat publishes what a node runs (heartbeat_interval), at "
        "once when a control changes it"
    ),
}
"""Keys that no longer exist, and why. An error says so rather than suggesting the closest
key (``status_interval`` is close to ``stage_interval``, a different option)."""

FORMER_ENV: dict[str, str] = {
    old: new
    for old, new in [
        ("JOBSAGA_NODE_NAME", "JOBSAGA_NAME"),
        *(
            (ENV_PREFIX + "_".join(key.split(".")[1:]).upper(), ENV_PREFIX + now.upper())
            for key, now in FORMER_KEYS.items()
        ),
    ]
    if old != new  # JOBSAGA_HEARTBEAT_INTERVAL and JOBSAGA_LEADER_LEASE kept their names
}
"""The environment variables of :data:`FORMER_KEYS` (``JOBSAGA_PRUNER_MAX_AGE``...)."""


class NodeConfig(BaseModel):
    """Everything a node needs: where the database is, which app, which queues, how it runs.

    Build it directly (``NodeConfig(queues={"default": 10}, prune_after=86400)``), or with
    :meth:`load` from a TOML file, the environment and overrides. ``None`` means "Node's
    default". Every field but ``url``, ``app`` and ``queues`` is a keyword of ``Node`` under
    the same name, in the same order (``tests/operations/test_config.py`` checks it).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    url: str | None = None
    """Database URL; unset: the app's own (or the embedded SQLite default). Shown with its
    password masked in JSON (``jobsaga config``) and in the repr; the attribute is whole."""
    app: str | None = None
    """Your App as ``module:attribute``; the CLI imports it to know the workers."""
    queues: dict[str, Count] | None = None
    """Queue name -> concurrency limit; unset: ``{"default": 10}``."""

    # --- Node's keyword options, under Node's names ------------------------------------------
    name: str | None = None
    """Node name (default: host-pid-random)."""
    grace_period: NonNegativeSeconds | None = None
    """Seconds running jobs may finish after SIGTERM/SIGINT (default 15)."""
    poll_interval: Seconds | None = None
    """Seconds between safety polls for new jobs (default 0.2 on SQLite, 1.0 on PostgreSQL)."""
    stage_interval: Seconds | None = None
    """Longest the stager sleeps between looks for due scheduled jobs (default 1)."""
    max_threads: Count | None = None
    """Threads for sync performs and steps (default max(4, sum of queue limits))."""
    ack_batch: Count | None = None
    """Most outcomes written in one statement (default 200)."""
    ack_delay: NonNegativeSeconds | None = None
    """Longest an outcome waits for others to share its write (default 0.005)."""
    control_interval: Seconds | None = None
    """Seconds between looks at queue controls and cancels (default 1 on SQLite, 5 on
    PostgreSQL, where NOTIFY brings them at once)."""
    heartbeat_interval: Seconds | None = None
    """Seconds between the node's heartbeats (default 5)."""
    rescue_after: Seconds | None = None
    """Seconds of silence after which a node's executing jobs are rescued (default 60; at
    least twice heartbeat_interval)."""
    rescue_interval: Seconds | None = None
    """Seconds between the lifeline's looks for dead nodes' jobs (default: derived)."""
    crontab: tuple[CronEntry, ...] | None = None
    """Cron entries: tables ``{expression, worker, args, queue, priority, max_attempts, tags,
    timezone, name}`` or lists ``[expression, worker]`` / ``[expression, worker, {options}]``;
    the worker by its registered name."""
    prune_after: Seconds | None = None
    """Seconds after which finished jobs are deleted (default: never)."""
    prune_interval: Seconds | None = None
    """Seconds between prunes (default 30)."""
    prune_limit: Count | None = None
    """Most jobs deleted per prune (default 5000)."""
    leader_lease: Seconds | None = None
    """Seconds a leader's lease lasts unless renewed (default 5)."""
    leadership: bool | None = None
    """Whether this node may lead the cluster-wide duties: lifeline, cron, pruner (default
    true)."""
    max_abandoned_threads: Count | None = None
    """Threads of timed-out sync performs a queue may leave running before it stops fetching
    (default: the queue's concurrency limit)."""
    summary_interval: NonNegativeSeconds | None = None
    """Seconds between the node's summary lines (per queue: jobs completed, failed, snoozed...
    since the last; none when nothing finished); 0: no summary (default 60)."""

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # the same clear message, whatever the source
            raise ConfigError(describe(exc, _origin.get())) from None

    @field_serializer("url", when_used="json")
    def _shown_url(self, url: str | None) -> str | None:
        return None if url is None else redact_url(url)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "url" and isinstance(value, str) else value

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, value: object) -> object:
        if isinstance(value, str):
            value = parse_queue_list(value)
        if isinstance(value, Mapping):
            if not value:
                raise ConfigError("give at least one queue, e.g. default = 10")
            for queue in value:
                check_queue_name(queue)
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ConfigError("node name must not be blank")
        return value

    @field_validator("crontab", mode="wrap")
    @classmethod
    def _crontab(
        cls, value: object, handler: ValidatorFunctionWrapHandler
    ) -> tuple[CronEntry, ...] | None:
        """Entries are built (and checked) by the crontab's own code, not field by field."""
        return None if value is None else parse_crontab(value)

    # --- building ---------------------------------------------------------------------------

    def node_options(self) -> dict[str, Any]:
        """Keyword arguments for ``App.node(queues, **options)`` (only what was set)."""
        options = {key: getattr(self, key) for key in node_option_names()}
        return {key: value for key, value in options.items() if value is not None}

    def node(self, app: App) -> Node:
        """A node of ``app`` configured by this."""
        return app.node(self.queues, **self.node_options())

    # --- loading ------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
        discover: bool = True,
        sources: Mapping[str, str] | None = None,
    ) -> NodeConfig:
        """Layer a TOML file, the environment and ``overrides`` (``{"prune_after": 3600}``);
        later layers win.

        ``path`` defaults to ``$JOBSAGA_CONFIG``, then to ``./jobsaga.toml`` if it exists
        (unless ``discover=False``). ``env`` defaults to ``os.environ``. ``sources`` says
        where each override came from, for errors (the CLI passes ``{"grace_period":
        "--grace-period", "queues.x": "--set queues.x=0"}``): an error names that flag
        instead of "overrides".
        """
        environ = os.environ if env is None else env
        layers: list[tuple[str, dict[str, Any]]] = []
        file = path or environ.get(ENV_CONFIG)
        if file is None and discover and Path(DEFAULT_FILE).is_file():
            file = DEFAULT_FILE
        if file is not None:
            layers.append((str(file), read_toml(file)))
        env_layer, env_origin = from_env(environ)
        layers.append(("environment", env_layer))
        layers.append(("overrides", unflatten(dict(overrides or {}))))
        named = {tuple(key.split(".")): label for key, label in (sources or {}).items()}
        return build(layers, {"environment": env_origin, "overrides": named})


def node_option_names() -> tuple[str, ...]:
    """NodeConfig's keys that are ``Node``'s keyword options, in ``Node``'s order."""
    return tuple(key for key in NodeConfig.model_fields if key not in NOT_NODE_OPTIONS)


# --- helpers ----------------------------------------------------------------------------------

CRON_KEYS = frozenset(
    {
        "expression",
        "worker",
        "args",
        "queue",
        "priority",
        "max_attempts",
        "tags",
        "timezone",
        "name",
    }
)


def parse_crontab(value: object) -> tuple[CronEntry, ...]:
    """Crontab entries as a file or the environment gives them (tables or lists), or as
    Python does (``CronEntry`` objects, tuples)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError("crontab must be a list of entries")
    items = []
    for index, item in enumerate(value):
        if isinstance(item, Mapping):
            options = dict(item)
            unknown = set(options) - CRON_KEYS
            if unknown:
                raise ConfigError(
                    f"entry #{index}: unknown key {sorted(unknown)[0]!r} "
                    f"(known: {', '.join(sorted(CRON_KEYS))})"
                )
            if "expression" not in options or "worker" not in options:
                raise ConfigError(f"entry #{index}: needs 'expression' and 'worker'")
            item = (options.pop("expression"), options.pop("worker"), options)
        items.append(item)
    return coerce_crontab(items)


def parse_queue_list(text: str) -> dict[str, int]:
    """``"default=10,mailers=5"`` (the environment and CLI form) as a mapping."""
    queues: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, limit = part.partition("=")
        if not sep or not limit.strip().isdigit():
            raise ConfigError(f"{part!r}: use NAME=LIMIT, e.g. default=10")
        if name.strip() in queues:  # the last one winning would hide the mistake
            raise ConfigError(f"queue {name.strip()!r} is given twice: give each queue once")
        queues[name.strip()] = int(limit)
    return queues


def read_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    file = Path(path)
    try:
        with file.open("rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    if file.name == "pyproject.toml":
        section = document.get("tool", {}).get("jobsaga")
        if section is None:
            raise ConfigError(f"{file}: has no [tool.jobsaga] table")
        return dict(section)
    return document


def env_names() -> dict[str, str]:
    """Each key's environment variable: ``JOBSAGA_`` + the key in capitals, but ``url``'s,
    which is ``JOBSAGA_DATABASE_URL`` (what ``App()`` itself reads)."""
    names = {ENV_PREFIX + key.upper(): key for key in NodeConfig.model_fields}
    names[ENV_URL] = names.pop(ENV_PREFIX + "URL")
    return names


ENV_NAMES = env_names()
ENV_OTHER = frozenset({ENV_CONFIG})
"""JOBSAGA_ variables that are not configuration keys but are known (not misspellings)."""


def from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The configuration the environment sets, and which variable set each key.

    A JOBSAGA_ variable that is not a key but is close to one, or that is a key's former
    name, is an error (a misspelling silently ignored would be the worst outcome); others
    (e.g. a test suite's) are ignored.
    """
    layer: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in ENV_OTHER:
            continue
        key = ENV_NAMES.get(variable)
        if key is None:
            if variable in FORMER_ENV:
                raise ConfigError(
                    f"environment variable {variable} is now {FORMER_ENV[variable]} "
                    "(node options have Node's names everywhere; see docs/configuration.md)"
                )
            removed = variable.removeprefix(ENV_PREFIX).lower()
            if removed in REMOVED_KEYS:
                raise ConfigError(
                    f"environment variable {variable}: {removed} {REMOVED_KEYS[removed]}"
                )
            close = closest(variable, [*ENV_NAMES, *ENV_OTHER], cutoff=0.85)
            if close:
                raise ConfigError(
                    f"unknown environment variable {variable} (did you mean {close}?)"
                )
            continue
        value: Any = raw
        if raw.strip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{variable}: not valid JSON: {exc}") from None
        layer[key] = value
        origin[(key,)] = variable
    return layer, origin


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    """Overrides as the model takes them: unset (``None``) values dropped; a dotted key (a
    former name, ``plugins.pruner.max_age``) made nested, so it is reported by that name."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        *parents, last = key.split(".")
        target = nested
        for part in parents:
            found = target.setdefault(part, {})
            if not isinstance(found, dict):
                raise ConfigError(f"{key}: {part!r} is a value, not a table")
            target = found
        target[last] = value
    return nested


def merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    """``layer`` over ``base``, key by key (a value, ``queues`` included, replaces whole)."""
    return {**base, **layer}


def build(
    layers: list[tuple[str, dict[str, Any]]],
    named: Mapping[str, Mapping[tuple[str, ...], str]],
) -> NodeConfig:
    """Validate the merged layers; ``named`` gives, per source, a finer name for where some
    keys came from (the variable that set a key, the flag that gave an override)."""
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for source, layer in layers:
        names = named.get(source, {})
        for key in layer:
            for path in [p for p in origin if p[0] == key]:  # a later layer replaces it whole
                del origin[path]
            nested = (label for path, label in names.items() if path[0] == key)
            origin[(key,)] = names.get((key,)) or next(nested, source)
        for path, label in names.items():
            if len(path) > 1 and path[0] in layer:  # a nested key set alone: --set queues.x=0
                origin[path] = label
        merged = merge(merged, layer)
    token = _origin.set(origin)
    try:
        return NodeConfig(**merged)
    finally:
        _origin.reset(token)


def _former(path: tuple[str, ...], given: object) -> list[str]:
    """For an unknown ``plugins`` table: each former key in it and its name now."""
    if path != ("plugins",) or not isinstance(given, Mapping):
        return []
    found = []
    for section, options in given.items():
        for key in options if isinstance(options, Mapping) else ():
            now = FORMER_KEYS.get(f"plugins.{section}.{key}")
            if now is not None:
                found.append(f"plugins.{section}.{key} is now {now}")
    return found


def describe(error: ValidationError, origin: Mapping[tuple[str, ...], str] | None = None) -> str:
    """A ValidationError as one line per problem: key, source, what is wrong, what is known."""
    origin = origin or {}
    problems = []
    for item in error.errors():
        path = tuple(str(p) for p in item["loc"])
        key = ".".join(path) or "config"
        source = next(
            (origin[path[:n]] for n in range(len(path), 0, -1) if path[:n] in origin), None
        )
        flag = source is not None and source.startswith("-")
        where = f"{key} (from {source})" if source else key
        if item["type"] == "extra_forbidden":
            former = _former(path, item["input"])
            known = list(NodeConfig.model_fields) if len(path) == 1 else []
            close = did_you_mean(path[-1], known)
            if former:
                hint = "; ".join(former) + " (node options have Node's names everywhere)"
            elif len(path) == 1 and path[0] in REMOVED_KEYS:
                hint = f"{path[0]} {REMOVED_KEYS[path[0]]}"
            elif close:
                hint = close
            else:
                hint = f"known: {', '.join(known)}"
            problems.append(f"unknown key {where}: {hint}")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            given = item["input"]
            if path == ("url",) and isinstance(given, str):
                given = redact_url(given)
            shown = "" if isinstance(given, (list, tuple, dict)) else f" (got {given!r})"
            if flag:  # the flag as typed names the key: "--grace-period: ..."
                assert source is not None
                where, shown = source, "" if "=" in source else shown
            problems.append(f"{where}: {message}{shown}")
    return "invalid jobsaga configuration: " + "; ".join(problems)
