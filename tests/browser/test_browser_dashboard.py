"""Main flows in a real browser: Debian's Chromium (Playwright) against the server `make run`
starts (`streamlit run dashboard/serve.py`) on a small world. One server per worker; each test has a fresh browser context
(no cookies), so each starts signed out."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest

from core.metrics import overview_counts
from dashboard import format as fmt
from tests.support.browser import LateReruns, fill_new_account, sign_in, sign_in_as, wait_idle
from tests.support.servers import start_server, stop_server
from tests.support.worlds import prepare_database

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def grid_text(page) -> str:
    """The dataframes' cells (the grid is a canvas; its accessible table carries the text)."""
    return " ".join(page.locator("[role=gridcell]").all_inner_texts())


def heading(page) -> str:
    return " ".join(page.locator("h1").all_inner_texts())


def sign_in_form_visible(page) -> bool:
    return page.get_by_role("button", name="Sign in").is_visible()


@pytest.mark.parametrize("role", ["support", "finance", "manager", "admin"])
def test_each_role_signs_in_and_sees_the_overview_numbers(dashboard_server, page, role):
    page.goto(dashboard_server.url)
    sign_in_as(page, role)
    page.get_by_text("Members by tier and status").first.wait_for()  # a rerun briefly shows the old and new
    wait_idle(page)
    page.locator("[role=gridcell]", has_text="platinum").first.wait_for(state="attached")
    assert "Overview" in heading(page)
    body = page.inner_text("body")
    assert "Data through" in body
    cells = grid_text(page)
    assert "platinum" in cells and "premium" in cells
    # the figures on screen are the database's: MRR per currency as core computes it
    mrr = overview_counts.mrr_by_currency(dashboard_server.engine)
    expected = [fmt.money(v, c) for v, c in zip(mrr["mrr_minor"], mrr["currency"], strict=True)]
    assert expected
    if role == "support":
        assert "Paying subscriptions by currency" in body
        assert not any(text in cells for text in expected)
        assert all(f"{n:,}" in cells for n in mrr["paying_subscriptions"])
    else:
        assert "MRR by currency" in body
        assert all(text in cells for text in expected)


def test_deep_link_survives_the_sign_in(dashboard_server, page):
    ann = dashboard_server.world.ann_id
    page.goto(f"{dashboard_server.url}/members?member={ann}")
    sign_in_as(page, "support")
    page.get_by_role("heading", name=re.compile("Ann Lee")).wait_for()
    assert f"member={ann}" in page.url
    assert "ann.lee@example.com" in page.inner_text("body")


def test_forbidden_url_says_which_role_it_needs_and_is_audited(dashboard_server, page):
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from core.models import AuditEntry

    def refusals() -> list[AuditEntry]:
        with Session(dashboard_server.engine) as s:
            return list(s.scalars(select(AuditEntry).where(AuditEntry.action == "auth.permission_refused",
                                                           AuditEntry.actor == "support",
                                                           AuditEntry.target_id == "admin")))

    before = len(refusals())
    page.goto(f"{dashboard_server.url}/admin")
    sign_in_as(page, "support")
    page.get_by_text("The Admin page needs the admin role; you are signed in as support (support).").wait_for()
    wait_idle(page)
    body = page.inner_text("body")
    assert "Staff accounts" not in body and "Business settings" not in body
    assert "Page not found" not in body
    assert "/admin" in page.url  # the address stays what was asked for
    nav = " ".join(page.locator("[data-testid=stSidebarNav]").all_inner_texts())
    assert "Admin" not in nav and "Audit log" not in nav and "Members" in nav
    assert len(refusals()) == before + 1  # once per visit, whatever the reruns


def test_member_search_to_member_page_and_csv_download(dashboard_server, page):
    page.goto(f"{dashboard_server.url}/members")
    sign_in_as(page, "support")
    box = page.get_by_role("textbox", name="Find a member")
    box.wait_for()
    box.fill("bob.stone")
    box.press("Enter")
    link = page.get_by_role("link", name=re.compile("Bob Stone"))
    link.first.wait_for()
    heading = page.get_by_role("heading", name=re.compile("Bob Stone"))
    wait_idle(page)
    link.first.click()
    heading.wait_for()
    wait_idle(page)
    assert f"member={dashboard_server.world.bob_id}" in page.url
    # The grid fills its accessible cells after the canvas is drawn, a moment after the
    # script goes idle; wait for the cell rather than reading the grid at once.
    page.locator("[role=gridcell]", has_text="Insufficient funds").first.wait_for(state="attached")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").first.click()
    path = Path(download.value.path())
    content = path.read_text(encoding="utf-8")
    assert download.value.suggested_filename.endswith("-payments.csv")
    assert content.splitlines()[0].startswith("Created at,Status,Amount,Currency,Decline code")
    assert "Insufficient funds" in content and "insufficient_funds" not in content
    # Amounts are numbers a spreadsheet can add up ("9.99" beside "USD"), not "$9.99".
    rows = list(csv.DictReader(io.StringIO(content)))
    assert rows and all(re.fullmatch(r"-?\d+(\.\d+)?", r["Amount"]) for r in rows), [r["Amount"] for r in rows]
    # Back (the browser's, then the page's link) comes to the search as it was, not an empty box.
    page.go_back()
    link.first.wait_for()
    assert box.input_value() == "bob.stone"
    link.first.click()
    heading.wait_for()
    wait_idle(page)
    page.get_by_role("link", name=re.compile("Back to the search")).click()
    link.first.wait_for()
    assert box.input_value() == "bob.stone"
    # ... and a new search from there lists its own members (the address still named Bob, so the
    # next search opened his page again).
    wait_idle(page)
    assert "member=" not in page.url
    box.fill("ann.lee")
    box.press("Enter")
    page.get_by_role("link", name=re.compile("Ann Lee")).first.wait_for()
    wait_idle(page)
    assert "member=" not in page.url and not heading.is_visible()


def test_a_form_submitted_right_after_signing_in_is_neither_lost_nor_emptied(dashboard_server, page):
    """The sign-in's cookie components reported their values back: reruns nobody asked for. One
    landing just after a submit stopped the submit's run, and the form came back empty with no
    account made. Here every such rerun lands at that worst moment; there must be none."""
    late = LateReruns(page)
    page.goto(f"{dashboard_server.url}/admin")
    page.get_by_role("textbox", name="Username").wait_for()
    wait_idle(page)
    late.arm(skip=1)  # the Sign in click goes through; what the page asks for after it is held
    page.get_by_role("textbox", name="Username").fill("admin")
    page.get_by_role("textbox", name="Password").fill("admin-demo-pass")
    page.get_by_role("button", name="Sign in").click()
    # no waiting for "idle" here: a rerun the page asked for and that is held keeps it "running"
    page.get_by_label("First password", exact=True).wait_for()
    fill_new_account(page, "latecomer", "Late Comer", "support", "a-long-first-password")
    page.get_by_text("Account latecomer created.").wait_for(timeout=20_000)
    wait_idle(page)
    page.wait_for_timeout(1_000)  # a rerun delivered late would have wiped the sentence by now
    wait_idle(page)
    assert page.get_by_text("Account latecomer created.").count() == 1
    assert late.delivered == 0 and late.held == []  # the page asked for no rerun on its own
    page.wait_for_function("document.cookie.includes('memberdesk_test')", timeout=30_000)


def test_sign_out_clears_the_cookie(dashboard_server, page):
    page.goto(dashboard_server.url)
    sign_in_as(page, "manager")  # waits for the cookie
    page.get_by_role("button", name="Sign out").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_function("!document.cookie.includes('memberdesk_test')", timeout=30_000)
    assert "memberdesk_test" not in [c["name"] for c in page.context.cookies()]
    page.reload()
    page.get_by_role("button", name="Sign in").wait_for()
    wait_idle(page)
    assert "Overview" not in heading(page)


def test_cookie_keeps_the_session_across_a_reload(dashboard_server, page):
    page.goto(dashboard_server.url)
    sign_in_as(page, "finance")  # waits for the cookie
    page.goto(f"{dashboard_server.url}/failed_payments")  # a new session: the cookie signs it in
    page.wait_for_timeout(500)
    wait_idle(page)
    assert not sign_in_form_visible(page)
    # signed in by the cookie; finance may not open Failed payments, and the page says who may
    page.get_by_text("The Failed payments page needs the admin, manager or support role").wait_for()
    assert "Signed in as" in page.locator("[data-testid=stSidebar]").inner_text()


def test_lockout_after_repeated_failures(dashboard_server, page):
    page.goto(dashboard_server.url)
    for _ in range(5):
        sign_in(page, "lockme", "wrong-password-x")
    page.get_by_text("This account is locked").wait_for()
    sign_in(page, "lockme", "lockme-demo-pass")
    page.get_by_text("This account is locked").wait_for()
    assert sign_in_form_visible(page)


def test_fresh_server_first_request_deep_link_shows_the_sign_in(tmp_path, browser):
    url, world = prepare_database(tmp_path / "fresh.db")
    server = start_server(tmp_path, database_url=url)
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        for path in (f"/members?member={world.ann_id}", "/admin", "/audit"):
            page.goto(server.url + path)
            page.get_by_role("button", name="Sign in").wait_for(timeout=30_000)
            wait_idle(page)
            body = page.inner_text("body")
            assert "Ann Lee" not in body and "Staff accounts" not in body
        context.close()
    finally:
        stop_server(server.proc)
        server.engine.dispose()


def test_a_person_changes_their_own_password(dashboard_server, page):
    """An admin gives a new account a first password "to be changed"; there was nowhere to change it."""
    from core import staff
    from core.permissions import Actor

    staff.add_account(dashboard_server.engine, actor=Actor.of("test", "admin"), username="newbie", name="New Bie",
                      email="newbie@example.com", roles="support", password="first-password-1", bcrypt_rounds=4)
    page.goto(dashboard_server.url)
    sign_in(page, "newbie", "first-password-1")
    sidebar = page.locator("[data-testid=stSidebar]")
    sidebar.get_by_text("Change your password").click()
    sidebar.get_by_label("Current password", exact=True).fill("not-the-password")
    sidebar.get_by_label("New password", exact=True).fill("my-own-secret-22")
    sidebar.get_by_label("New password again", exact=True).fill("my-own-secret-22")
    sidebar.get_by_role("button", name="Change password").click()
    page.get_by_text("Your current password is not right; nothing was changed.").wait_for()
    # The sidebar's sentence shows while the page below is still drawing; a person types again
    # once it has settled (on a loaded machine a click during that run was dropped).
    wait_idle(page)
    sidebar.get_by_label("Current password", exact=True).fill("first-password-1")
    sidebar.get_by_role("button", name="Change password").click()
    page.get_by_text("Your password is changed; your other sessions are signed out.").wait_for()
    wait_idle(page)
    assert sidebar.get_by_label("New password", exact=True).input_value() == ""
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, "newbie", "first-password-1")
    page.get_by_text("The username or password is incorrect.").wait_for()
    sign_in(page, "newbie", "my-own-secret-22")
    page.get_by_text("Signed in as").wait_for()


def test_saving_business_settings_stays_on_their_tab(dashboard_server, page):
    """Saving the Admin page's business settings sent the person back to the first tab (Staff
    accounts), away from the sentence and the form they had just used."""
    page.goto(f"{dashboard_server.url}/admin")
    sign_in_as(page, "admin")
    settings_tab = page.get_by_role("tab", name="Business settings")
    settings_tab.click()
    page.get_by_role("button", name="Save settings").wait_for()
    wait_idle(page)
    page.get_by_role("button", name="Save settings").click()  # the settings as they are: nothing else moves
    page.get_by_text("Business settings saved.").wait_for(timeout=20_000)
    wait_idle(page)
    assert settings_tab.get_attribute("aria-selected") == "true"
    assert page.get_by_role("button", name="Save settings").is_visible()
    assert not page.get_by_role("button", name="Create account").is_visible()


def test_a_download_s_address_does_not_work_without_a_sign_in(dashboard_server, page, browser):
    """Streamlit served an export at /media/<hash>.csv to anyone with the address: signed out, after
    its maker's sign-out, to a colleague whose role may not open the page it came from."""
    page.goto(f"{dashboard_server.url}/members?member={dashboard_server.world.bob_id}")
    sign_in_as(page, "support")
    page.get_by_role("heading", name=re.compile("Bob Stone")).wait_for()
    wait_idle(page)
    page.locator("[role=gridcell]", has_text="Insufficient funds").first.wait_for(state="attached")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").first.click()
    address = download.value.url
    assert "/media/" in address
    assert page.request.get(address).status == 200  # signed in: the file
    stranger = browser.new_context()
    try:
        answer = stranger.request.get(address)
        assert answer.status == 403 and "Sign in" in answer.text()
        # Nor for a colleague who is signed in: the address works for whoever made the file.
        colleague = stranger.new_page()
        colleague.goto(dashboard_server.url)
        sign_in_as(colleague, "manager")
        assert colleague.request.get(address).status == 403
    finally:
        stranger.close()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_function("!document.cookie.includes('memberdesk_test')", timeout=30_000)
    assert page.request.get(address).status == 403  # signed out: no longer


def test_a_saved_rate_s_confirmation_does_not_carry_over_to_the_next(dashboard_server, page):
    """After a confirmed big move, the form kept the rate and the ticked box in the browser, so the
    next typo (95 for 9.5) was saved unchecked. The rate saved here is put back afterwards."""
    from core.permissions import Actor
    from core.settings import business as business_settings

    def rates() -> dict[tuple[str, str], float]:
        return {(r.currency, str(r.month)): float(r.usd_per_unit)
                for r in business_settings.list_rates(dashboard_server.engine)}

    before = rates()
    page.goto(f"{dashboard_server.url}/admin")
    sign_in_as(page, "admin")
    page.get_by_role("tab", name="Business settings").click()
    rate = page.get_by_role("textbox", name="USD per unit")
    rate.wait_for()
    wait_idle(page)
    try:
        rate.fill("9.5")
        page.get_by_text("Confirm a move of more than").click()
        page.get_by_role("button", name="Save rate").click()
        page.get_by_text(re.compile(r"Rate for \w+ saved\.")).wait_for(timeout=20_000)
        wait_idle(page)
        assert rate.input_value() == ""
        assert not page.get_by_role("checkbox", name=re.compile("Confirm a move")).is_checked()
        rate.fill("95")
        page.get_by_role("button", name="Save rate").click()
        page.get_by_text(re.compile("a move of")).first.wait_for(timeout=20_000)
        changed = {k: v for k, v in rates().items() if before.get(k) != v}
        assert list(changed.values()) == [9.5], changed
    finally:
        for (currency, month), value in before.items():
            if rates().get((currency, month)) != value:
                business_settings.save_rate(dashboard_server.engine, actor=Actor.of("test", "admin"), currency=currency,
                                            month=month, usd_per_unit=str(value), confirm_move=True)
