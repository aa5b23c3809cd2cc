"""Who may see the dashboard, and who may act: tokens, their labels, CSRF.

Every page needs a token: a full one (pages and actions) or a read-only one (pages only;
actions are hidden and refused with 403). A browser signs in once with ``?token=...`` (or a
form), which sets an HttpOnly, SameSite=Strict cookie; scripts send ``Authorization: Bearer``.
Every action is a POST carrying a CSRF value derived from the token (an HMAC a page from
another site cannot compute), checked before anything runs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..errors import ConfigError

COOKIE = "jobsaga_token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True, slots=True)
class Token:
    """A token and what it may do; ``label`` names it in telemetry (never the secret)."""

    secret: str
    label: str
    read_only: bool = False


class Access:
    """The tokens a dashboard accepts."""

    def __init__(self, tokens: list[Token]) -> None:
        if not tokens:
            raise ConfigError("the dashboard needs at least one token")
        self.tokens = tokens
        self._key = secrets.token_bytes(32)

    @classmethod
    def from_options(
        cls, token: str | None, read_only_token: str | None
    ) -> tuple[Access, str | None]:
        """Tokens from options (``label=secret`` or just ``secret``); with no full token, one
        is generated and returned so the caller can print it once."""
        generated = None
        if token is None:
            token = generated = secrets.token_urlsafe(24)
        tokens = [_parse(token, "admin", read_only=False)]
        if read_only_token is not None:
            tokens.append(_parse(read_only_token, "read-only", read_only=True))
        return cls(tokens), generated

    def find(self, presented: str | None) -> Token | None:
        if not presented:
            return None
        for token in self.tokens:
            if hmac.compare_digest(token.secret.encode(), presented.encode()):
                return token
        return None

    def cookie(self, token: Token) -> str:
        """What the sign-in cookie holds: an HMAC of the token, not the token itself (a
        cookie that leaks does not give the token away, and it dies with this process)."""
        return hmac.new(self._key, b"cookie:" + token.secret.encode(), hashlib.sha256).hexdigest()

    def from_cookie(self, value: str | None) -> Token | None:
        if not value:
            return None
        for token in self.tokens:
            if hmac.compare_digest(self.cookie(token), value):
                return token
        return None

    def csrf(self, token: Token) -> str:
        """The CSRF value of a token's forms: stable for the token, unguessable without it."""
        return hmac.new(self._key, token.secret.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, token: Token, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(self.csrf(token), presented)


def _parse(text: str, default_label: str, *, read_only: bool) -> Token:
    label, sep, secret = text.partition("=")
    if sep and label and secret and label.replace("-", "").replace("_", "").isalnum():
        return Token(secret, label, read_only)
    return Token(text, default_label, read_only)
