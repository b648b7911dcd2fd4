"""A real server and Chromium: a click on a chart bar opens the rows behind it, and the drill
table downloads as CSV with those rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.timeutil import utc_now
from tests.browser_helpers import ROLE_ACCOUNTS, wait_idle


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_chart_click_drills_to_rows_and_downloads_csv(dashboard_server, page, tmp_path: Path):  # noqa: F811
    today = utc_now().date()
    link = f"{dashboard_server.url}/revenue?from={today.replace(day=1)}&to={today}&money=USD"
    page.goto(link)  # a deep link: the sign-in form first, then this very view
    username, password = ROLE_ACCOUNTS["finance"]
    page.get_by_role("textbox", name="Username").wait_for()
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(".st-key-revenue_cash_chart .point", timeout=90_000)
    wait_idle(page)
    # The cash chain: MRR, Billed?, Collected, Refunded, Disputed. Click the "Collected" bar.
    bars = page.locator(".st-key-revenue_cash_chart .point")
    labels = [t.text_content() for t in page.locator(".st-key-revenue_cash_chart .xtick text").all()]
    # Click where a person would: the middle of the bar (plotly's drag layer takes the event and
    # finds the bar under the pointer).
    bar = bars.nth(labels.index("Collected"))
    bar.scroll_into_view_if_needed()
    box = bar.bounding_box()
    assert box is not None
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)  # plotly picks the point under the pointer on hover
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    page.wait_for_function("() => document.body.innerText.includes('row(s) behind Cash: Collected')",
                           timeout=30_000)
    wait_idle(page)
    assert page.get_by_text("row(s) behind Cash: Collected").count() == 1
    with page.expect_download() as info:
        page.locator(".st-key-revenue_cash_csv button").click()
    saved = tmp_path / "rows.csv"
    info.value.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("payment_id,member_id,email")
    assert "ann.lee@example.com" in text
