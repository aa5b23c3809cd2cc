"""The dashboard under test: an ASGI test client per engine, signed in with the full token,
the read-only one, or none."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from jobsaga import App
from jobsaga.web import Dashboard, dashboard

FULL = "full-secret"
READ_ONLY = "look-secret"


@pytest.fixture
def board(app: App) -> Dashboard:
    return dashboard(app, token=f"ops={FULL}", read_only_token=f"viewer={READ_ONLY}")


@pytest.fixture
def client(board: Dashboard) -> Iterator[TestClient]:
    """Signed in with the full token (a cookie, as a browser holds it)."""
    with TestClient(board.asgi, base_url="http://127.0.0.1") as test_client:
        test_client.cookies.set("jobsaga_token", cookie_of(board, FULL))
        yield test_client


@pytest.fixture
def viewer(board: Dashboard) -> Iterator[TestClient]:
    with TestClient(board.asgi, base_url="http://127.0.0.1") as test_client:
        test_client.cookies.set("jobsaga_token", cookie_of(board, READ_ONLY))
        yield test_client


@pytest.fixture
def anonymous(board: Dashboard) -> Iterator[TestClient]:
    with TestClient(board.asgi, base_url="http://127.0.0.1") as test_client:
        yield test_client


def cookie_of(board: Dashboard, secret: str) -> str:
    """The sign-in cookie a browser gets for ``secret`` (an HMAC of it, not the token)."""
    token = board.access.find(secret)
    assert token is not None
    return board.access.cookie(token)


def csrf_of(board: Dashboard, secret: str = FULL) -> str:
    token = board.access.find(secret)
    assert token is not None
    return board.access.csrf(token)


@pytest.fixture
def post(client: TestClient, board: Dashboard) -> Callable[..., Any]:
    """POST a form as the page's own form would (with the CSRF value)."""

    def send(url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return client.post(url, data={"csrf": csrf_of(board), **(data or {})}, **kwargs)

    return send
