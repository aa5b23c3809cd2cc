"""Configuration of a node from Python, a TOML file, environment variables and CLI flags.

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

    [queues]
    default = 10
    mailers = 5

    [plugins.pruner]
    max_age = 604800

    [plugins.cron]
    crontab = [{ expression = "0 2 * * *", worker = "shop.jobs.DailyCleanup" }]
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
)

from .errors import ConfigError
from .plugins.crontab import CronEntry, coerce_crontab
from .redaction import redact_url
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


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class StagerConfig(_Section):
    interval: Seconds | None = None
    """Node(stage_interval=): the longest the stager sleeps between looks for due jobs."""


class HeartbeatConfig(_Section):
    interval: Seconds | None = None
    """Node(heartbeat_interval=)."""


class LifelineConfig(_Section):
    rescue_after: Seconds | None = None
    """Node(rescue_after=): silence after which a node's executing jobs are rescued."""
    interval: Seconds | None = None
    """Node(rescue_interval=)."""


class PrunerConfig(_Section):
    max_age: Seconds | None = None
    """Node(prune_after=): finished jobs older than this are deleted; unset: no pruning."""
    interval: Seconds | None = None
    """Node(prune_interval=)."""
    limit: Annotated[int, Field(ge=1)] | None = None
    """Node(prune_limit=): rows deleted per batch."""


class LeaderConfig(_Section):
    enabled: bool | None = None
    """Node(leadership=): False keeps this node out of leader elections."""
    lease: Seconds | None = None
    """Node(leader_lease=)."""


class CronConfig(_Section):
    crontab: Any = None
    """Entries as tables ``{expression, worker, args, queue, priority, max_attempts, tags,
    timezone, name}`` or lists ``[expression, worker]`` / ``[expression, worker, {options}]``;
    the worker by its registered name."""

    @field_validator("crontab", mode="before")
    @classmethod
    def _entries(cls, value: Any) -> Any:
        if value is None:
            return None
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
        entries: tuple[CronEntry, ...] = coerce_crontab(items)
        return entries


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


class PluginsConfig(_Section):
    stager: StagerConfig = StagerConfig()
    heartbeat: HeartbeatConfig = HeartbeatConfig()
    lifeline: LifelineConfig = LifelineConfig()
    pruner: PrunerConfig = PrunerConfig()
    leader: LeaderConfig = LeaderConfig()
    cron: CronConfig = CronConfig()


class NodeConfig(_Section):
    """Everything a node needs: where the database is, which app, which queues, how it runs.

    Build it directly (``NodeConfig(queues={"default": 10})``), or with :meth:`load` from a
    TOML file, the environment and overrides. ``None`` means "Node's default".
    """

    url: str | None = None
    """Database URL; unset: the app's own (or the embedded SQLite default). Shown with its
    password masked in JSON (``jobsaga config``) and in the repr; the attribute is whole."""
    app: str | None = None
    """Your App as ``module:attribute``; the CLI imports it to know the workers."""
    name: str | None = None
    """Node name; unset: host-pid-random."""
    queues: dict[str, Annotated[int, Field(ge=1)]] | None = None
    """Queue name -> concurrency limit; unset: ``{"default": 10}``."""
    grace_period: NonNegativeSeconds | None = None
    poll_interval: Seconds | None = None
    control_interval: Seconds | None = None
    max_threads: Annotated[int, Field(ge=1)] | None = None
    max_abandoned_threads: Annotated[int, Field(ge=1)] | None = None
    ack_batch: Annotated[int, Field(ge=1)] | None = None
    ack_delay: NonNegativeSeconds | None = None
    plugins: PluginsConfig = PluginsConfig()

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:  # the same clear message, whatever the source
            raise ConfigError(describe(exc, _origin.get())) from None

    @field_serializer("url", when_used="json")
    def _shown_url(self, url: str | None) -> str | None:
        return None if url is None else redact_url(url)

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "url" and isinstance(value, str) else value

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, value: Any) -> Any:
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

    # --- building ---------------------------------------------------------------------------

    def node_options(self) -> dict[str, Any]:
        """Keyword arguments for ``App.node(queues, **options)`` (only what was set)."""
        plugins = self.plugins
        options = {
            "name": self.name,
            "grace_period": self.grace_period,
            "poll_interval": self.poll_interval,
            "control_interval": self.control_interval,
            "max_threads": self.max_threads,
            "max_abandoned_threads": self.max_abandoned_threads,
            "ack_batch": self.ack_batch,
            "ack_delay": self.ack_delay,
            "stage_interval": plugins.stager.interval,
            "heartbeat_interval": plugins.heartbeat.interval,
            "rescue_after": plugins.lifeline.rescue_after,
            "rescue_interval": plugins.lifeline.interval,
            "prune_after": plugins.pruner.max_age,
            "prune_interval": plugins.pruner.interval,
            "prune_limit": plugins.pruner.limit,
            "leadership": plugins.leader.enabled,
            "leader_lease": plugins.leader.lease,
            "crontab": plugins.cron.crontab,
        }
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
    ) -> NodeConfig:
        """Layer a TOML file, the environment and ``overrides`` (nested dicts or dotted keys,
        e.g. ``{"plugins.pruner.max_age": 3600}``); later layers win.

        ``path`` defaults to ``$JOBSAGA_CONFIG``, then to ``./jobsaga.toml`` if it exists
        (unless ``discover=False``). ``env`` defaults to ``os.environ``.
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
        return build(layers, env_origin)


# --- helpers ----------------------------------------------------------------------------------


def parse_queue_list(text: str) -> dict[str, int]:
    """``"default=10,mailers=5"`` (the environment and CLI form) as a mapping."""
    queues: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, limit = part.partition("=")
        if not sep or not limit.strip().isdigit():
            raise ConfigError(f"{part!r}: use NAME=LIMIT, e.g. default=10")
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


def _env_names() -> dict[str, tuple[str, ...]]:
    """Each configuration key's environment variable: top-level keys as JOBSAGA_<KEY>, plugin
    options as JOBSAGA_<PLUGIN>_<KEY> (JOBSAGA_PRUNER_MAX_AGE)."""
    names: dict[str, tuple[str, ...]] = {}
    for field in NodeConfig.model_fields:
        if field != "plugins":
            names[ENV_PREFIX + field.upper()] = (field,)
    for section, info in PluginsConfig.model_fields.items():
        model = info.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in model.model_fields:
            names[f"{ENV_PREFIX}{section.upper()}_{key.upper()}"] = ("plugins", section, key)
    # The names the CLI has always read.
    names["JOBSAGA_DATABASE_URL"] = names.pop("JOBSAGA_URL")
    names["JOBSAGA_NODE_NAME"] = names.pop("JOBSAGA_NAME")
    return names


ENV_NAMES = _env_names()
ENV_OTHER = frozenset({ENV_CONFIG})
"""JOBSAGA_ variables that are not configuration keys but are known (not misspellings)."""


def from_env(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The configuration the environment sets, and which variable set each key.

    A JOBSAGA_ variable that is not a key but is close to one is an error (a misspelling
    silently ignored would be the worst outcome); others (e.g. a test suite's) are ignored.
    """
    layer: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for variable, raw in environ.items():
        if not variable.startswith(ENV_PREFIX) or variable in ENV_OTHER:
            continue
        path = ENV_NAMES.get(variable)
        if path is None:
            close = difflib.get_close_matches(variable, [*ENV_NAMES, *ENV_OTHER], n=1, cutoff=0.85)
            if close:
                raise ConfigError(
                    f"unknown environment variable {variable} (did you mean {close[0]}?)"
                )
            continue
        value: Any = raw
        if raw.strip().startswith(("[", "{")):
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{variable}: not valid JSON: {exc}") from None
        _put(layer, path, value)
        origin[path] = variable
    return layer, origin


def unflatten(values: dict[str, Any]) -> dict[str, Any]:
    """``{"plugins.pruner.max_age": 1}`` -> nested dicts; nested input is kept as it is."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            continue
        path = tuple(key.split("."))
        if isinstance(value, Mapping) and key != "queues":
            for inner, inner_value in unflatten(dict(value)).items():
                _put(nested, (*path, *inner.split(".")), inner_value)
        else:
            _put(nested, path, value)
    return nested


def _put(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        found = target.setdefault(part, {})
        if not isinstance(found, dict):
            raise ConfigError(f"{'.'.join(path)}: {part!r} is a value, not a table")
        target = found
    target[path[-1]] = value


def _walk(data: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths: list[tuple[str, ...]] = []
    for key, value in data.items():
        path = (*prefix, key)
        paths.append(path)
        if isinstance(value, Mapping) and key != "queues" and path[:2] != ("plugins", "cron"):
            paths.extend(_walk(value, path))
    return paths


def merge(base: dict[str, Any], layer: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict) and key != "queues":
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build(
    layers: list[tuple[str, dict[str, Any]]], env_origin: Mapping[tuple[str, ...], str]
) -> NodeConfig:
    merged: dict[str, Any] = {}
    origin: dict[tuple[str, ...], str] = {}
    for source, layer in layers:
        for path in _walk(layer):
            origin[path] = env_origin.get(path, source) if source == "environment" else source
        merged = merge(merged, layer)
    token = _origin.set(origin)
    try:
        return NodeConfig(**merged)
    finally:
        _origin.reset(token)


def _known_at(path: tuple[str, ...]) -> list[str]:
    model: type[BaseModel] = NodeConfig
    for part in path[:-1]:
        info = model.model_fields.get(part)
        annotation = info.annotation if info is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


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
        where = f"{key} (from {source})" if source else key
        if item["type"] == "extra_forbidden":
            known = _known_at(path)
            close = difflib.get_close_matches(path[-1], known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
            problems.append(f"unknown key {where}: {hint}")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            given = item["input"]
            if path == ("url",) and isinstance(given, str):
                given = redact_url(given)
            shown = "" if isinstance(given, (list, tuple, dict)) else f" (got {given!r})"
            problems.append(f"{where}: {message}{shown}")
    return "invalid jobsaga configuration: " + "; ".join(problems)
