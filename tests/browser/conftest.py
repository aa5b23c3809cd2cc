"""The dashboard in a real headless Chromium, on both engines.

Each test serves its own app's dashboard with uvicorn on a thread, on a free port of its own
(the kernel picks it: several xdist workers run these side by side), over the test's own
database (the suite's ``app`` fixture: a SQLite file, or a PostgreSQL schema). Playwright for
Python drives Debian's ``chromium`` (``executable_path``): Playwright's own browser download
is not reachable here, and ``.ci/run`` installs the package when it is missing. Without it the
tests fail, saying so; they never skip.

Screenshots go to ``test-artifacts/browser/<engine>/<name>.png`` (ignored by git);
``docs/dashboard.md`` shows copies of some under ``docs/images/`` (see that page for the
command that refreshes them).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from jobsaga import App
from jobsaga.web import Dashboard, dashboard

from . import shop

FULL = "full-secret"
READ_ONLY = "look-secret"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
TIMEOUT_MS = 10_000
"""How long a page or an element may take to appear before the test fails (they take
milliseconds; this only bounds a failure, on a loaded CI machine too)."""
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "the browser tests need Debian's chromium on PATH (apt-get install -y chromium; "
            ".ci/run installs it when missing)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Playwright for one test module at a time, never longer: while its sync API is up, the
    test process's main thread has an event loop running (the driver's), and any other test
    that calls ``asyncio.run`` there fails ("cannot be called from a running event loop").
    pytest ends a module's fixtures before the next module's first test, also on an xdist
    worker, so no other test runs beside it. Starting it and Chromium again takes ~0.5 s."""
    with sync_playwright() as running:
        yield running
    asyncio.run(asyncio.sleep(0))  # fails here, naming the cause, if the loop were left behind


@pytest.fixture(scope="module")
def browser(playwright: Playwright, chromium_path: str) -> Iterator[Browser]:
    # As root (CI's container), Chromium refuses to start without --no-sandbox; a container's
    # /dev/shm is often too small for it.
    args = ["--disable-dev-shm-usage"] + (["--no-sandbox"] if os.geteuid() == 0 else [])
    launched = playwright.chromium.launch(
        executable_path=chromium_path, headless=True, args=args, timeout=30_000
    )
    yield launched
    launched.close()


class Served:
    """A dashboard served on 127.0.0.1 for the test: ``url(path)`` is where a page is."""

    def __init__(self, board: Dashboard) -> None:
        self.board = board
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))  # a free port, chosen by the kernel
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(board.asgi, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> Served:
        self._thread.start()
        for _ in range(500):
            if self._server.started:
                return self
            if not self._thread.is_alive():
                break
            threading.Event().wait(0.01)
        raise RuntimeError(f"the dashboard's server did not start on port {self.port}")

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    """The test's app, with the workers and the saga of :mod:`.shop`."""
    return make_app(*shop.WORKERS, workflows=list(shop.WORKFLOWS))


@pytest.fixture
def refresh_seconds() -> float:
    """A slow live refresh: a test's clicks should not race a refresh of the page under them.
    A test of the refresh itself parametrizes it."""
    return 60.0


@pytest.fixture
def board(app: App, refresh_seconds: float) -> Dashboard:
    return dashboard(
        app,
        token=f"ops={FULL}",
        read_only_token=f"viewer={READ_ONLY}",
        refresh_seconds=refresh_seconds,
    )


@pytest.fixture
def served(board: Dashboard) -> Iterator[Served]:
    with Served(board) as running:
        yield running


def sign_in(browser: Browser, served: Served, secret: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    # An action's confirm() dialog is answered yes (Playwright would dismiss it); what it
    # asked is kept on the page object for the test to read.
    asked: list[str] = []
    page.asked = asked  # type: ignore[attr-defined]
    page.on("dialog", lambda dialog: (asked.append(dialog.message), dialog.accept()))
    # A script error on any page fails the test (the live refresh is the only script).
    script_errors: list[str] = []
    page.on("pageerror", lambda error: script_errors.append(f"{page.url}: {error}"))
    page.goto(served.url(f"/login?token={secret}"))
    try:
        yield page
    finally:
        context.close()
    assert not script_errors, f"script errors in the page: {script_errors}"


@pytest.fixture
def page(browser: Browser, served: Served) -> Iterator[Page]:
    """A fresh browser tab signed in with the full token (through the login link, as a
    person would open it), on the overview."""
    yield from sign_in(browser, served, FULL)


@pytest.fixture
def viewer_page(browser: Browser, served: Served) -> Iterator[Page]:
    """A tab signed in with the read-only token."""
    yield from sign_in(browser, served, READ_ONLY)


@pytest.fixture
def shot(engine_name: str) -> Callable[[Page, str], Path]:
    """Save a full-page screenshot as ``test-artifacts/browser/<engine>/<name>.png``."""

    def save(page: Page, name: str, **options: Any) -> Path:
        path = ARTIFACTS / engine_name / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True, **options)
        return path

    return save


def reload_until(page: Page, done: Callable[[], bool], what: str, within: float = 10.0) -> None:
    """Reload the page until ``done()`` holds: for what reaches a page only with a node's next
    heartbeat (which the live refresh would bring, every ``refresh_seconds``)."""
    deadline = time.monotonic() + within
    while not done():
        if time.monotonic() > deadline:
            raise AssertionError(f"the page did not show {what} within {within} s")
        page.wait_for_timeout(50)
        page.reload()
