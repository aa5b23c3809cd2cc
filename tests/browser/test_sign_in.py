"""Signing in with a real browser: the login link sets the cookie, the overview opens, a wrong
token stays on the sign-in page, the read-only token is named as such."""

from __future__ import annotations

from playwright.sync_api import Browser, Page, expect

from .conftest import TIMEOUT_MS, Served


def test_the_login_link_opens_the_overview(page: Page) -> None:
    expect(page).to_have_title("Overview · jobsaga")
    expect(page.locator("header .who")).to_contain_text("ops")
    expect(page.locator("nav a.here")).to_have_text("Overview")
    # The cookie is HttpOnly: the page's scripts cannot read the token.
    assert "full-secret" not in page.evaluate("document.cookie")


def test_the_sign_in_form_refuses_a_wrong_token_then_signs_in(
    browser: Browser, served: Served
) -> None:
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    try:
        page.goto(served.url("/"))
        expect(page).to_have_title("sign in · jobsaga")
        page.get_by_label("token").fill("not-the-token")
        page.get_by_role("button", name="sign in").click()
        expect(page.locator(".message")).to_contain_text("not one this dashboard accepts")
        page.get_by_label("token").fill("full-secret")
        page.get_by_role("button", name="sign in").click()
        expect(page).to_have_title("Overview · jobsaga")
    finally:
        context.close()


def test_the_read_only_token_is_named_read_only(viewer_page: Page) -> None:
    expect(viewer_page.locator("header .who")).to_contain_text("viewer (read-only)")
