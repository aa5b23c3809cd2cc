"""Keeping database passwords out of everything jobsaga prints or logs.

A database URL may carry a password (``postgresql://user:secret@host/db`` or
``?password=secret``). Wherever jobsaga shows a URL (``jobsaga config``, error messages, a
config's repr), it shows :func:`redact_url`'s form. Text jobsaga does not write itself (a
driver's error message, which may echo part of a malformed URL) is cleaned with
:func:`redact_text` against the passwords :func:`url_secrets` finds in the URLs in play; the
CLI applies it to every log record and error it prints (:class:`RedactingFilter`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import unquote

MASK = "***"

__all__ = ["RedactingFilter", "redact_text", "redact_url", "url_secrets"]

MIN_SECRET = 4
"""Passwords shorter than this are not scrubbed from free text (masking every "ab" would
garble messages); URLs themselves are masked whatever the password's length."""

# libpq's own rule: the user part runs from ``://`` to the first ``@`` before any ``/``, so a
# password may hold ``#`` or ``?`` (which a generic URL parser reads as a fragment or query).
_USERINFO = re.compile(r"(?P<head>://[^/@:]*):(?P<password>[^/@]*)@")
_PASSWORD_PARAM = re.compile(r"(?P<head>[?&](?:ssl)?password=)(?P<password>[^&#]*)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """``url`` with its password (in the user part, or a ``password=`` or ``sslpassword=``
    parameter) masked, and every other character as given.

    Masked by pattern, following libpq's reading of a URL rather than a generic URL parser's
    (``postgresql://u:se#cret@h/db`` connects, with the password ``se#cret``), and never
    raises: a URL too malformed to parse is masked all the same, since the error that reports
    it must not be the one that leaks it."""
    url = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", url, count=1)
    return _PASSWORD_PARAM.sub(lambda m: f"{m['head']}{MASK}", url)


def url_secrets(url: str | None) -> set[str]:
    """The passwords ``url`` carries, as written and percent-decoded (a driver may echo
    either), long enough to scrub from free text (:data:`MIN_SECRET`)."""
    if not url:
        return set()
    found = [m["password"] for m in _USERINFO.finditer(url)]
    found += [m["password"] for m in _PASSWORD_PARAM.finditer(url)]
    secrets = (
        set(found) | {unquote(s) for s in found} | {unquote(s.replace("+", " ")) for s in found}
    )
    return {s for s in secrets if len(s) >= MIN_SECRET}


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each of ``secrets`` replaced by the mask (longest first, so a password
    holding another is masked whole)."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter that scrubs ``secrets`` (a set that may grow after the filter is
    installed) from each record's message and traceback before any formatter sees it."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        cleaned = redact_text(message, self.secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info, self.secrets)
        return True
