"""The dashboard as an ASGI app: access checks, page rendering, errors as pages.

Each group of pages is a module of :mod:`jobsaga.web.pages` with a ``routes(dashboard)``
function; they render templates through :meth:`Dashboard.render`, act through the app's own
operations (the CLI's), and report each action with :meth:`Dashboard.acted` (a ``web.action``
telemetry event naming the action and the token's label).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import DatabaseError, JobsagaError
from ..redaction import redact_url
from .access import COOKIE, CSRF_FIELD, Access, Token
from .pages import jobs, overview, queues, runs

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger("jobsaga.web")

HERE = Path(__file__).parent
PAGE_GROUPS = (overview, jobs, queues, runs)
"""The modules of :mod:`jobsaga.web.pages`, in the navigation's order."""


class Dashboard:
    """One app's dashboard: ``dashboard.asgi`` is the ASGI app to serve or mount."""

    def __init__(self, app: App, access: Access, *, refresh_seconds: float = 2.0) -> None:
        self.app = app
        self.access = access
        self.refresh_seconds = refresh_seconds
        self.generated_token: str | None = None
        """The token made up when none was given (``jobsaga web`` prints it once)."""
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        routes: list[BaseRoute] = [
            Route("/login", self.login, methods=["GET", "POST"], name="login"),
            Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
        ]
        self.nav: list[tuple[str, str]] = []
        for group in PAGE_GROUPS:
            routes += group.routes(self)
            self.nav.append((group.TITLE, group.HOME))
        self.asgi = Starlette(
            routes=routes,
            middleware=[Middleware(BaseHTTPMiddleware, dispatch=self.guard)],
            exception_handlers={
                HTTPException: self.http_error,
                JobsagaError: self.refused,
                Exception: self.crashed,
            },
        )

    # --- access ---------------------------------------------------------------------------

    async def guard(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """Every page needs a token; every POST a full token and the CSRF value."""
        path = request.url.path.removeprefix(request.scope.get("root_path", ""))
        if path.startswith("/static/") or path == "/login":
            return await call_next(request)
        token = self.token_of(request)
        if token is None:
            return self.page(request, "login.html", status_code=401, next=_local(request.url))
        request.state.token = token
        if request.method == "POST":
            if token.read_only:
                return self.page(
                    request,
                    "error.html",
                    status_code=403,
                    title="read-only",
                    message="this token may look, not act",
                )
            await request.body()  # kept for the route: reading the form here would use it up
            form = await request.form()
            if not self.access.csrf_ok(token, str(form.get(CSRF_FIELD) or "")):
                return self.page(
                    request,
                    "error.html",
                    status_code=403,
                    title="refused",
                    message="the form's CSRF value is missing or wrong: reload the page",
                )
        return await call_next(request)

    def token_of(self, request: Request) -> Token | None:
        """A bearer header (scripts) or the sign-in cookie (browsers); a token in a page's URL
        is not taken (URLs end up in histories and access logs): only /login reads one."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return self.access.find(header[7:].strip())
        return self.access.from_cookie(request.cookies.get(COOKIE))

    async def login(self, request: Request) -> Response:
        if request.method == "POST":
            form = await request.form()
            presented, target = str(form.get("token") or ""), str(form.get("next") or "")
        else:
            presented = request.query_params.get("token", "")
            target = request.query_params.get("next", "")
        token = self.access.find(presented)
        if token is None:
            return self.page(
                request, "login.html", status_code=401, next=target, failed=bool(presented)
            )
        root = request.scope.get("root_path", "") or ""
        home = f"{root}/"
        response = RedirectResponse(_within(target, root) or home, 303)
        response.set_cookie(
            COOKIE, self.access.cookie(token), httponly=True, samesite="strict", path=home
        )
        return response

    # --- rendering ------------------------------------------------------------------------

    def page(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        token: Token | None = getattr(request.state, "token", None)
        body = self.templates.get_template(template).render(
            request=request,
            nav=self.nav,
            token=token,
            read_only=token is None or token.read_only,
            csrf=self.access.csrf(token) if token is not None else "",
            csrf_field=CSRF_FIELD,
            refresh_seconds=self.refresh_seconds,
            database=redact_url(self.app.url) if token is not None else "",
            url_for=request.url_for,
            **context,
        )
        return HTMLResponse(body, status_code=status_code)

    def acted(self, request: Request, action: str, **details: Any) -> None:
        """An action was taken: a ``web.action`` telemetry event says what and by whom."""
        token: Token | None = getattr(request.state, "token", None)
        self.app.telemetry.emit(
            "web.action", {}, {"action": action, "token": token.label if token else None, **details}
        )

    # --- errors as pages ------------------------------------------------------------------

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        title = "not found" if exc.status_code == 404 else "refused"
        if exc.detail == "Not Found":  # no route matched: say what was asked for
            exc = HTTPException(
                404, f"there is no page at {request.url.path} (ids are whole numbers)"
            )
        return self.page(
            request, "error.html", status_code=exc.status_code, title=title, message=exc.detail
        )

    async def refused(self, request: Request, exc: Exception) -> Response:
        message = str(exc)
        if isinstance(exc, DatabaseError):  # its text can name the server or a file path
            message = "the database refused a value of this request (a number too large?)"
        return self.page(request, "error.html", status_code=400, title="refused", message=message)

    async def crashed(self, request: Request, exc: Exception) -> Response:
        log.exception("dashboard page %s failed", request.url.path)
        message = "this page failed; the server's log has the details"
        return self.page(request, "error.html", status_code=500, title="error", message=message)


def dashboard(
    app: App,
    *,
    token: str | None = None,
    read_only_token: str | None = None,
    refresh_seconds: float = 2.0,
) -> Dashboard:
    """The dashboard of ``app``: serve ``.asgi`` or mount it (``Mount("/jobs", d.asgi)``).
    With no ``token``, one is generated: read it from ``.generated_token``."""
    access, generated = Access.from_options(token, read_only_token)
    made = Dashboard(app, access, refresh_seconds=refresh_seconds)
    made.generated_token = generated
    return made


def _local(url: Any) -> str:
    """A URL as a path and query only: where to come back to after signing in."""
    return str(url.path) + (f"?{url.query}" if url.query else "")


def _within(target: str, root: str) -> str | None:
    """``target`` when it is a path of this dashboard (no scheme, no host, under ``root``):
    a sign-in never redirects anywhere else."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith(f"{root}/") or "\\" in target:
        return None
    return target
