"""What keeps database passwords out of a command's output and logs.

URLs the CLI shows are masked where they are written (:func:`~jobsaga.redaction.redact_url`).
This is the net behind that, for text the CLI does not write itself: a driver's message that
echoes part of a malformed URL, a log record, a traceback. Each URL the command resolves
(``--url``, ``$JOBSAGA_DATABASE_URL``, the TOML file's, the ``--app``'s own) adds its
password to the invocation's secrets (:func:`remember_urls`); the log handlers get a
:class:`~jobsaga.redaction.RedactingFilter` over them, and :func:`redacted_errors` cleans
the error a command ends with.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..engines import ENV_URL
from ..redaction import RedactingFilter, redact_text, url_secrets

SECRETS = "jobsaga.secrets"
"""Key of the invocation's secrets in ``click.Context.meta`` (shared by nested contexts)."""


def secrets_of(ctx: click.Context) -> set[str]:
    found: set[str] = ctx.meta.setdefault(SECRETS, set())
    return found


def remember_urls(*urls: str | None) -> None:
    """Scrub the passwords of ``urls`` from whatever the running command prints or logs."""
    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        for url in urls:
            secrets_of(ctx).update(url_secrets(url))


def redact_logs(ctx: click.Context) -> None:
    """Put a filter over this invocation's secrets on each handler of the root logger (one
    per handler: a filter left by an earlier invocation in the same process is replaced)."""
    import os

    secrets = secrets_of(ctx)
    secrets.update(url_secrets(os.environ.get(ENV_URL)))
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(secrets))


@contextmanager
def redacted_errors(ctx: click.Context) -> Iterator[None]:
    """The command's error without the invocation's secrets: a click error's message is
    cleaned in place; any other exception whose traceback would show one is printed cleaned
    (exit status 1) instead of raw."""
    try:
        yield
    except click.ClickException as exc:
        cleaned = redact_text(exc.message, secrets_of(ctx))
        if cleaned != exc.message:
            # click declares it Final, but keeping the exception keeps its kind (a usage
            # error's usage line and exit status 2)
            setattr(exc, "message", cleaned)  # noqa: B010
        raise
    except (click.exceptions.Exit, click.Abort):
        raise
    except Exception:
        secrets = secrets_of(ctx)
        shown = traceback.format_exc()
        cleaned = redact_text(shown, secrets)
        if cleaned == shown:
            raise
        click.echo(cleaned.rstrip(), err=True)
        ctx.exit(1)
