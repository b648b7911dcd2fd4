"""Security flows in a real browser (Chromium through Playwright against `streamlit run`):
a sign-in cookie copied before sign-out signs nobody in afterwards, and the cookie's flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import AuditEntry, LoginAttempt
from core.permissions import Actor
from tests.support.browser import sign_in_as, wait_idle
from tests.support.servers import COOKIE_NAME as COOKIE

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


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


HOSTILE_NAME = '**Mal** [x](http://evil.example) <b>b</b> `t` $m$'
HOSTILE_NOTE = '=HYPERLINK("http://evil.example","x")'
HOSTILE_STAFF = "**Eve** [admin](http://evil.example)"


def test_hostile_names_show_as_text_and_leave_the_csv_inert(tmp_path, browser):
    """A member and a staff member named in markdown see their names as typed: no bold, no link,
    no code, no maths; and the notes CSV carries the formula as inert text."""
    from datetime import UTC, datetime

    from core import staff
    from core.db import session_scope
    from core.models import Member, StaffNote
    from tests.support.browser import sign_in
    from tests.support.servers import start_server, stop_server
    from tests.support.worlds import prepare_database

    url, _ = prepare_database(tmp_path / "hostile.db", prefer_demo=False)
    server = start_server(tmp_path, database_url=url)
    try:
        staff.add_account(server.engine, actor=Actor.system("test"), username="eve", name=HOSTILE_STAFF,
                          email="eve@example.com", roles="manager", password="eve-demo-pass-1", bcrypt_rounds=4)
        with session_scope(server.engine) as s:
            member = Member(email="mal@example.com", name=HOSTILE_NAME, created_at=datetime(2026, 1, 5, tzinfo=UTC))
            s.add(member)
            s.flush()
            s.add(StaffNote(member_id=member.id, author="support", body=HOSTILE_NOTE,
                            created_at=datetime(2026, 2, 1, tzinfo=UTC)))
            member_id = member.id
        context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        context.set_default_timeout(30_000)
        page = context.new_page()
        page.goto(f"{server.url}/members?member={member_id}")
        sign_in(page, "eve", "eve-demo-pass-1")
        heading = page.locator("h1", has_text="Mal")
        heading.wait_for()
        wait_idle(page)
        assert heading.inner_text().replace("\u2060", "").strip() == f"👤 {HOSTILE_NAME}"
        app = page.locator("[data-testid=stApp]")
        # no link anywhere on the page leads out of the app, and nothing hostile is formatted
        hrefs = app.locator("a").evaluate_all("els => els.map(e => e.href)")
        assert not [h for h in hrefs if "evil" in h.split("#")[0]]  # (a heading's own #anchor is the app's)
        formatted = app.locator("[data-testid=stMarkdownContainer] :is(em, code, del, img, .katex, a)") \
            .evaluate_all("els => els.map(e => e.textContent)")
        assert not [t for t in formatted if "Mal" in t or "Eve" in t or "evil" in t]
        strong = app.locator("[data-testid=stMarkdownContainer] strong").all_inner_texts()
        assert "Mal" not in strong and "Eve" not in strong  # our own bold holds the whole name, not a part
        sidebar = page.locator("[data-testid=stSidebar]").inner_text()
        assert HOSTILE_STAFF in sidebar.replace("\u2060", "")
        # the notes CSV: the formula arrives as text
        page.get_by_role("tab", name="Notes").click()
        wait_idle(page)
        with page.expect_download() as download:
            page.locator(".st-key-csv-notes button").click()
        content = Path(download.value.path()).read_text(encoding="utf-8")
        assert "\"'=HYPERLINK(\"\"http://evil.example\"\",\"\"x\"\")\"" in content
        assert "\n=HYPERLINK" not in content and ",=HYPERLINK" not in content
        context.close()
    finally:
        stop_server(server.proc)
        server.engine.dispose()


def test_the_audit_log_page_leaves_no_traceback_in_the_server_log(dashboard_server, page):
    """Entries with and without a member id in one table: every column keeps one type, so Arrow
    serialises it and the server log stays free of tracebacks."""
    from core import audit
    from core.db import session_scope

    with session_scope(dashboard_server.engine) as s:
        audit.record(s, actor="support", action="member.note", member_id=dashboard_server.world.ann_id,
                     target_type="member", target_id=dashboard_server.world.ann_id, comment="called")
    start = dashboard_server.log_path.stat().st_size
    page.goto(f"{dashboard_server.url}/audit")
    sign_in_as(page, "manager")
    page.locator("[role=gridcell]", has_text="Member: note").first.wait_for(state="attached")
    wait_idle(page)
    with dashboard_server.log_path.open("rb") as log:
        log.seek(start)
        written = log.read().decode("utf-8", errors="replace")
    assert "Traceback" not in written and "Arrow" not in written, written[-2000:]
    cells = " ".join(page.locator("[role=gridcell]").all_inner_texts())
    assert str(dashboard_server.world.ann_id) in cells.split()  # the member id, not "1.0"
    # the grid's own toolbar offers no CSV of its own (it would skip core.csv_export)
    page.locator("[data-testid=stDataFrame]").first.hover()
    page.get_by_role("button", name="Search").first.wait_for()
    assert page.get_by_role("button", name="Download as CSV").count() == 0


def _from(browser, url: str, address: str):
    """A browser whose requests arrive as through a proxy on this host that names the browser's
    address (``X-Forwarded-For``, trusted from 127.0.0.1 by uvicorn; docs/deploy.md)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  extra_http_headers={"X-Forwarded-For": address})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto(url)
    return context, page


def test_guessing_from_one_address_does_not_keep_the_owner_out(dashboard_server, browser):
    """Five wrong passwords for a known username, from anywhere, locked the account for everyone:
    anyone who knew a username could keep its owner out."""
    from core import staff
    from tests.support.browser import sign_in

    # An account of this test's own: the shared server's other tests sign in as the demo roles.
    username, password = "guessed", "the-owners-password-1"
    staff.add_account(dashboard_server.engine, actor=Actor.of("test", "admin"), username=username, name="Owner",
                      email="guessed@example.com", roles="support", password=password, bcrypt_rounds=4)
    guesser, guessing = _from(browser, dashboard_server.url, "203.0.113.9")
    for n in range(5):
        sign_in(guessing, username, f"a-wrong-guess-{n}")
    guessing.get_by_text("Sign-ins to this account from this address are paused until").wait_for()
    sign_in(guessing, username, password)  # the right password from there: still paused
    guessing.get_by_text("Sign-ins to this account from this address are paused until").wait_for()
    assert not guessing.get_by_text("Signed in as").is_visible()

    owner, working = _from(browser, dashboard_server.url, "198.51.100.4")
    sign_in(working, username, password)
    working.get_by_text("Signed in as").wait_for()
    with Session(dashboard_server.engine) as s:
        refused = s.scalars(select(AuditEntry.action).where(AuditEntry.target_id == username)).all()
        places = set(s.scalars(select(LoginAttempt.place).where(LoginAttempt.username == username)))
    assert refused.count("auth.login_failed") == 6 and "auth.lockout" not in refused
    assert len(places) == 2 and None not in places  # the two addresses, told apart
    guesser.close()
    owner.close()
