"""Where a command's app and database come from, and opening them ready to use.

Every command that needs an app or a database resolves it the same way, through
:class:`~jobsaga.config.NodeConfig`: flags (``--app``, ``--url``, ``--set``) over the
``JOBSAGA_*`` variables over the TOML file (``--config``, ``$JOBSAGA_CONFIG``, else
``./jobsaga.toml``) over defaults. Commands that read or change jobs, queues, runs or the
crontab open the database with :meth:`AppSource.open`, which first checks that it exists and
is migrated: a missing SQLite file or schema is one clear error, and the check creates
nothing (no empty SQLite file, no table).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from ..app import App
from ..config import NodeConfig
from ..engines import DEFAULT_SQLITE
from ..engines.schema import known_migrations, missing_migrations
from ..engines.sqlite import SqliteEngine
from ..errors import ConfigError, DatabaseError, JobsagaError, MigrationError
from ..redaction import redact_url
from .loading import load_app
from .redacting import remember_urls

if TYPE_CHECKING:
    from ..runtime.node import Node

__all__ = ["AppSource", "command_error", "parse_settings", "redact_url", "require_schema"]


@dataclass(frozen=True)
class AppSource:
    """The ``--config``/``--app``/``--url``/``--set`` a command was given."""

    config_path: str | None = None
    app_spec: str | None = None
    url: str | None = field(default=None, repr=False)
    """As given (its password masked only where shown)."""
    settings: tuple[str, ...] = field(default=(), repr=False)
    """``KEY=VALUE`` pairs, which may hold a URL too."""

    def config(self, **flags: Any) -> NodeConfig:
        """The layered configuration; ``flags`` are the command's own (None: not given),
        under their keys (``queues`` is ``-q/--queue``; any other is ``--`` + the key with
        dashes). An error names the flag or ``--set`` that gave the bad value."""
        settings = parse_settings(self.settings)
        flagged = self._flagged(flags)
        overrides = {**settings, **flagged}
        sources = self._sources(flags)
        given_url = overrides.get("url")  # a --set url=[...] is refused below, not crashed on
        remember_urls(self.url, given_url if isinstance(given_url, str) else None)
        try:
            config = NodeConfig.load(self.config_path, overrides=overrides, sources=sources)
        except ConfigError as exc:
            raise click.UsageError(str(exc)) from None
        remember_urls(config.url)
        return config

    def flags_text(self) -> str:
        """The ``--config``/``--app``/``--url`` this command was given, for a hint's command
        line to reach the same database (the URL's password masked: it is printed)."""
        given = [
            ("--config", self.config_path),
            ("--app", self.app_spec),
            ("--url", redact_url(self.url) if self.url else None),
        ]
        return "".join(f" {flag} {shlex.quote(value)}" for flag, value in given if value)

    def _flagged(self, flags: dict[str, Any]) -> dict[str, Any]:
        given = {"app": self.app_spec, "url": self.url, **flags}
        return {key: value for key, value in given.items() if value is not None}

    def _sources(self, flags: dict[str, Any]) -> dict[str, str]:
        """Each key set here, and the flag or ``--set`` that set it, as the user typed it."""
        sources = {key: f"--set {redact_url(text)}" for key, text in setting_texts(self.settings)}
        sources.update({key: flag_name(key) for key in self._flagged(flags)})
        return sources

    def node(self, config: NodeConfig, app: App, **flags: Any) -> Node:
        """The node ``config`` describes. A check across keys (``rescue_after`` at least twice
        ``heartbeat_interval``) is made as the node is built; its error names the flags or
        ``--set`` that gave those keys, as a single key's error does."""
        try:
            return config.node(app)
        except ConfigError as exc:
            text = str(exc)
            named = [
                label
                for key, label in self._sources(flags).items()
                if re.search(rf"\b{re.escape(key.split('.')[0])}\b", text)
            ]
            raise click.UsageError(f"{', '.join(named)}: {text}" if named else text) from None

    def app(self, config: NodeConfig | None = None) -> App:
        """The configured app, not connected (for commands that need no database)."""
        config = config if config is not None else self.config()
        app = load_app(config.app, config.url)
        remember_urls(app.url)  # the --app's own URL, when no other was given
        return app

    @contextmanager
    def open(self, *, migrated: bool = True) -> Iterator[App]:
        """The configured app, closed afterwards. With ``migrated`` (the default) the database
        must exist and hold jobsaga's schema, else the command stops with the remedy."""
        config = self.config()
        app = self.app(config)
        try:
            if migrated:
                require_schema(app, defaulted=config.url is None and config.app is None)
            yield app
        except (ConfigError, MigrationError, DatabaseError) as exc:
            raise command_error(app, exc) from None
        finally:
            app.close()


def command_error(app: App, exc: JobsagaError) -> click.ClickException:
    """One error line for any jobsaga error: a bad URL, a newer jobsaga's schema, a database
    that cannot be reached or refused a statement (a SQLite file read-only, corrupt or
    truncated: the engine's message names the file and the cause), then which database (its
    password masked). Never the driver's traceback."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, DatabaseError):
        return click.ClickException(f"{text} (at {redact_url(app.url)})")
    return click.ClickException(text)


def require_schema(app: App, *, defaulted: bool = False) -> None:
    """Stop the command unless ``app``'s database exists and has every migration.

    The check reads only: a SQLite file that does not exist is reported, not created.
    ``defaulted``: no URL was given anywhere, so the database is the embedded default."""
    engine = app.engine  # not connected yet
    shown = redact_url(app.url)
    migrate = f"jobsaga migrate --url {shlex.quote(shown)}"
    path = engine.path if isinstance(engine, SqliteEngine) else None
    if path is not None and path != ":memory:" and not os.path.exists(path):
        hint = (
            " (the default: no --url, $JOBSAGA_DATABASE_URL or url in a TOML file was given)"
            if defaulted and app.url == DEFAULT_SQLITE
            else ""
        )
        raise click.ClickException(
            f"no database at {shown}{hint}: the file {os.path.abspath(path)} does not exist; "
            f"check the URL, or create the database with `{migrate}`"
        )
    missing = missing_migrations(engine)
    if not missing:
        return
    if missing == known_migrations(engine):
        state = "has no jobsaga tables"
    else:
        state = f"is behind this jobsaga (lacks migrations {', '.join(missing)})"
    raise click.ClickException(f"the database at {shown} {state}: run `{migrate}` first")


FLAG_NAMES = {"queues": "--queue"}
"""Keys whose flag is not ``--`` + the key with dashes."""


def flag_name(key: str) -> str:
    """The flag that sets ``key`` (``--grace-period`` for ``grace_period``)."""
    return FLAG_NAMES.get(key, "--" + key.replace("_", "-"))


def setting_texts(settings: tuple[str, ...]) -> list[tuple[str, str]]:
    """Each ``--set`` as (its key, the text as typed), for naming it in an error."""
    return [(text.partition("=")[0].strip(), text) for text in settings]


def parse_settings(settings: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is JSON when it parses as JSON (numbers, true, lists)."""
    parsed: dict[str, Any] = {}
    for setting in settings:
        key, sep, raw = setting.partition("=")
        if not sep or not key.strip():
            # Not yet known as a URL, so its password is not among those scrubbed: mask it.
            shown = redact_url(setting)
            raise click.BadParameter(f"{shown!r}: use KEY=VALUE", param_hint="--set")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        parsed[key.strip()] = value
    return parsed
