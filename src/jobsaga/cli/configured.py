"""Options and app loading for commands that read the layered configuration
(``--config`` / ``$JOBSAGA_CONFIG`` / ``./jobsaga.toml``, the environment, then flags)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import click

from ..app import App
from ..config import NodeConfig
from ..errors import ConfigError
from .loading import load_app

F = TypeVar("F", bound=Callable[..., Any])


def config_options(fn: F) -> F:
    """--config, --app, --url and --set, read through :class:`NodeConfig` (which also reads
    JOBSAGA_CONFIG, JOBSAGA_APP, JOBSAGA_DATABASE_URL and the other JOBSAGA_ variables)."""
    fn = click.option(
        "--set",
        "settings",
        multiple=True,
        metavar="KEY=VALUE",
        help="Any configuration key, dotted (e.g. plugins.pruner.max_age=86400); repeatable.",
    )(fn)
    fn = click.option(
        "--url", default=None, help="Database URL (sqlite:///file.db or postgresql://...)."
    )(fn)
    fn = click.option("--app", "app_spec", default=None, help="Your App as module:attribute.")(fn)
    fn = click.option(
        "--config",
        "config_path",
        default=None,
        type=click.Path(dir_okay=False),
        help="TOML file (default: $JOBSAGA_CONFIG, else ./jobsaga.toml if present).",
    )(fn)
    return fn


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is JSON when it parses as JSON (numbers, true, lists)."""
    parsed: dict[str, Any] = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{setting!r}: use KEY=VALUE", param_hint="--set")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parsed[key.strip()] = value
    return parsed


def load_config(
    config_path: str | None, settings: tuple[str, ...], flags: Mapping[str, Any]
) -> NodeConfig:
    overrides = {**parse_settings(settings), **{k: v for k, v in flags.items() if v is not None}}
    try:
        return NodeConfig.load(config_path, overrides=overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def configured_app(
    config_path: str | None, app_spec: str | None, url: str | None, settings: tuple[str, ...] = ()
) -> tuple[App, NodeConfig]:
    config = load_config(config_path, settings, {"app": app_spec, "url": url})
    return load_app(config.app, config.url), config
