"""Every page needs a token; a read-only token cannot act; every action needs the CSRF value;
errors are pages, never tracebacks (both engines)."""

from __future__ import annotations

from starlette.testclient import TestClient

from jobsaga import App
from jobsaga.web import Dashboard
from tests.web.conftest import FULL, csrf_of


def test_every_page_needs_a_token(anonymous: TestClient) -> None:
    for path in ("/", "/jobs", "/queues", "/runs"):
        page = anonymous.get(path)
        assert page.status_code == 401 and "sign in" in page.text


def test_signing_in_sets_a_cookie_and_opens_the_pages(anonymous: TestClient) -> None:
    signed = anonymous.get(f"/login?token={FULL}", follow_redirects=False)
    assert signed.status_code == 303
    assert "httponly" in signed.headers["set-cookie"].lower()
    assert "samesite=strict" in signed.headers["set-cookie"].lower()
    assert anonymous.get("/").status_code == 200
    wrong = anonymous.get("/login?token=nope")
    assert wrong.status_code == 401 and "not one this dashboard accepts" in wrong.text


def test_a_bearer_token_works_for_scripts(anonymous: TestClient) -> None:
    assert anonymous.get("/", headers={"Authorization": f"Bearer {FULL}"}).status_code == 200


def test_a_read_only_token_cannot_act(viewer: TestClient, board: Dashboard) -> None:
    assert viewer.get("/").status_code == 200
    refused = viewer.post("/queues/default/pause", data={"csrf": csrf_of(board, "look-secret")})
    assert refused.status_code == 403 and "read-only" in refused.text


def test_an_action_without_the_csrf_value_is_refused(client: TestClient) -> None:
    refused = client.post("/queues/default/pause", data={})
    assert refused.status_code == 403 and "CSRF" in refused.text


def test_an_unknown_page_is_a_page(client: TestClient) -> None:
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "Traceback" not in missing.text


def test_no_page_shows_the_database_password(app: App, client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    if "@" in app.url and ":" in app.url.split("@")[0].split("//")[-1]:
        password = app.url.split("@")[0].split(":")[-1]
        assert password not in page.text


def test_sign_in_returns_only_to_a_page_of_this_dashboard(anonymous: TestClient) -> None:
    for target in (
        "http://127.0.0.1.evil.example/phish",
        "http://127.0.0.1@evil.example/phish",
        "//evil.example/phish",
        "https://evil.example/",
    ):
        signed = anonymous.get(f"/login?token={FULL}&next={target}", follow_redirects=False)
        assert signed.status_code == 303 and signed.headers["location"] == "/", target
    back = anonymous.get(f"/login?token={FULL}&next=/jobs?state=retryable", follow_redirects=False)
    assert back.headers["location"] == "/jobs?state=retryable"


def test_a_token_in_a_pages_url_is_not_taken(anonymous: TestClient) -> None:
    """Only /login reads a token from the URL (URLs land in histories and access logs)."""
    assert anonymous.get(f"/jobs?token={FULL}").status_code == 401


def test_the_cookie_holds_no_token_and_the_sign_in_page_no_database(
    anonymous: TestClient,
) -> None:
    first = anonymous.get("/")
    assert first.status_code == 401 and "127.0.0.1:5432" not in first.text
    assert "sqlite:" not in first.text
    signed = anonymous.get(f"/login?token={FULL}", follow_redirects=False)
    assert FULL not in signed.headers["set-cookie"]
    assert anonymous.get("/").status_code == 200


def test_a_page_that_does_not_exist_says_what_was_asked_for(client: TestClient) -> None:
    missing = client.get("/runs/abc")
    assert missing.status_code == 404 and "there is no page at /runs/abc" in missing.text
