"""A real server and Chromium: a click on a chart bar opens the rows behind it, and the drill
table downloads as CSV with those rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.timeutil import utc_now
from tests.browser_helpers import browser, dashboard_server, page, sign_in_as, wait_idle  # noqa: F401


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_chart_click_drills_to_rows_and_downloads_csv(dashboard_server, page, tmp_path: Path):  # noqa: F811
    today = utc_now().date()
    link = f"{dashboard_server.url}/revenue?from={today.replace(day=1)}&to={today}&money=USD"
    page.goto(link)
    sign_in_as(page, "finance")
    page.wait_for_selector(".st-key-revenue_cash_chart .point", timeout=30_000)
    wait_idle(page)
    # The cash chain: MRR, Billed?, Collected, Refunded, Disputed. Click the "Collected" bar.
    bars = page.locator(".st-key-revenue_cash_chart .point")
    labels = page.locator(".st-key-revenue_cash_chart .xtick text").all_inner_texts()
    bars.nth(labels.index("Collected")).click()
    wait_idle(page)
    page.get_by_text("Cash: Collected").first.wait_for()
    cells = page.locator(".st-key-revenue_cash_csv").locator("xpath=..").locator("td[role=gridcell]")
    page.wait_for_function("() => document.body.innerText.includes('row(s) behind Cash: Collected')")
    assert page.get_by_text("row(s) behind Cash: Collected").count() == 1
    with page.expect_download() as info:
        page.locator(".st-key-revenue_cash_csv button").click()
    saved = tmp_path / "rows.csv"
    info.value.save_as(saved)
    text = saved.read_text(encoding="utf-8")
    assert text.splitlines()[0].startswith("payment_id,member_id,email")
    assert "ann.lee@example.com" in text
    del cells
