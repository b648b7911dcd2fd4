# ruff: noqa: F811  (pytest fixtures imported from browser_helpers are redefined as arguments)
"""Security flows in a real browser (Chromium through Playwright against `streamlit run`):
a sign-in cookie copied before sign-out signs nobody in afterwards, and the cookie's flags."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditEntry
from tests.browser_helpers import (  # noqa: F401  (fixtures)
    browser,
    dashboard_server,
    sign_in_as,
    wait_idle,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
COOKIE = "memberdesk_test"


def _signed_in_cookie(page) -> dict:
    page.wait_for_function(f"document.cookie.includes('{COOKIE}')", timeout=30_000)
    wait_idle(page)
    [cookie] = [c for c in page.context.cookies() if c["name"] == COOKIE]
    return cookie


def _open_with(browser, url: str, cookie: dict):
    """A fresh browser (no state) given only the copied cookie, opening ``url``."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    context.add_cookies([cookie])
    page = context.new_page()
    page.goto(url)
    page.wait_for_timeout(500)
    wait_idle(page)
    return context, page


def test_a_cookie_copied_before_sign_out_signs_nobody_in_afterwards(dashboard_server, browser):
    url = dashboard_server.url
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(url)
    sign_in_as(page, "manager")
    cookie = _signed_in_cookie(page)
    # the flags a JavaScript-written cookie can have on plain HTTP (docs/security.md)
    assert cookie["sameSite"] == "Strict" and cookie["path"] == "/"
    assert cookie["secure"] is False and cookie["httpOnly"] is False

    # before the sign-out the copy works: the test would notice a cookie that never signs in
    other, other_page = _open_with(browser, f"{url}/members", cookie)
    other_page.get_by_role("textbox", name="Find a member").wait_for()
    assert not other_page.get_by_role("button", name="Sign in").is_visible()

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    wait_idle(page)

    # the copy in a fresh browser opens the sign-in form, not the members page
    thief, thief_page = _open_with(browser, f"{url}/members", cookie)
    thief_page.get_by_role("button", name="Sign in").wait_for()
    wait_idle(thief_page)
    body = thief_page.inner_text("body")
    assert "Find a member" not in body and "Signed in as" not in body
    # ... and the browser drops it
    thief_page.wait_for_function(f"!document.cookie.includes('{COOKIE}')", timeout=30_000)

    # the other browser that was already signed in with the copy is signed out at its next click
    other_page.reload()
    other_page.get_by_role("button", name="Sign in").wait_for()
    assert "Find a member" not in other_page.inner_text("body")

    with Session(dashboard_server.engine) as s:
        refused = s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.cookie_refused",
                                                     AuditEntry.actor == "manager")).all()
    assert refused and all(e.outcome == "refused" for e in refused)
    assert "session ended: sign-out" in {e.comment for e in refused}
    for c in (context, other, thief):
        c.close()
