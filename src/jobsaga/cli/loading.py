"""Find the user's App from ``module:attr`` (or ``module`` holding an ``app``)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from ..app import App
from ..engines import resolve_url
from ..redaction import redact_url
from .redacting import remember_urls

ENV_APP = "JOBSAGA_APP"


def load_app(spec: str | None, url: str | None = None) -> App:
    """Import ``spec`` (``package.module:attr``); with no spec, a bare App on ``url``.

    With both, ``url`` overrides the database of the imported app (before it connects)."""
    spec = spec or os.environ.get(ENV_APP)
    if not spec:
        return App(url)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the project folder is importable
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--app"
        ) from exc
    target = getattr(module, attr or "app", None)
    if callable(target) and not isinstance(target, App):
        target = target()
    if not isinstance(target, App):
        raise click.BadParameter(
            f"{spec!r} is not a jobsaga.App (found {type(target).__name__})", param_hint="--app"
        )
    remember_urls(url, target.url)
    if url and resolve_url(url) != target.url:
        # --url (or $JOBSAGA_DATABASE_URL) points the app's workers at that database, so one
        # app module serves every environment; too late once the app has connected.
        if target._engine is not None:
            raise click.BadParameter(
                f"{spec!r} is already connected to {redact_url(target.url)}; "
                f"cannot switch to {redact_url(url)}",
                param_hint="--url",
            )
        target.url = resolve_url(url)
    return target
