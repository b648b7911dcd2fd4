"""A real server and Chromium: a click on a chart bar opens the rows behind it, and the drill
table downloads as CSV with those rows."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.timeutil import utc_now
from tests.support.browser import ROLE_ACCOUNTS, sign_in_as, wait_idle


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_chart_click_drills_to_rows_and_downloads_csv(dashboard_server, page, tmp_path: Path):
    # The month of Ann's collected payment, as the database holds it (the world was written at the
    # server's start, on the wall clock: "this month" at the test's moment may already be the next).
    from sqlalchemy import text

    with dashboard_server.engine.connect() as conn:
        paid = conn.execute(text("SELECT created_at FROM payments WHERE stripe_charge_id = 'ch_ANN_OK'")).scalar_one()
    day = (paid if isinstance(paid, datetime) else datetime.fromisoformat(str(paid))).date()
    link = f"{dashboard_server.url}/revenue?from={day.replace(day=1)}&to={day}&money=USD"
    page.goto(link)  # a deep link: the sign-in form first, then this very view
    username, password = ROLE_ACCOUNTS["finance"]
    page.get_by_role("textbox", name="Username").wait_for()
    wait_idle(page)
    page.get_by_role("textbox", name="Username").fill(username)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector(".st-key-revenue_cash_chart .point", timeout=90_000)
    wait_idle(page)
    # The cash chain: MRR, Billed, Collected, Refunded, Disputed, Net, fees, each value written on
    # its bar. Click the "Collected" bar.
    bars = page.locator(".st-key-revenue_cash_chart .point")
    labels = [t.text_content() for t in page.locator(".st-key-revenue_cash_chart .xtick text").all()]
    assert labels[:3] == ["MRR", "Billed", "Collected"]
    values = [t.text_content() for t in page.locator(".st-key-revenue_cash_chart text.bartext").all()]
    assert len(values) == len(labels) and all(v and v[0] in "$-" for v in values), values
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
    assert text.splitlines()[0].startswith("Payment id,Member id,Email")  # headers in words, as on screen
    assert "ann.lee@example.com" in text


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_a_long_worklist_lists_its_start_and_downloads_the_whole(tmp_path_factory, page, tmp_path: Path):
    """A manager sees the first rows of a long past-due worklist with how many there are in all,
    and the download button hands over every row (read only when pressed)."""
    from datetime import timedelta

    from sqlalchemy import text

    from core.db import make_engine
    from core.metrics.bundles import WORKLIST_ROWS
    from tests.support.browser import sign_in_as
    from tests.support.servers import start_server, stop_server
    from tests.support.worlds import prepare_database

    tmp = tmp_path_factory.mktemp("long_worklist")
    url, _ = prepare_database(tmp / "memberdesk.db")
    engine = make_engine(url)
    since = utc_now() - timedelta(days=3)
    with engine.begin() as conn:  # paying members fall past due (their own server: no other test sees it)
        conn.execute(text("UPDATE subscriptions SET status = 'past_due', past_due_since = :t WHERE id IN "
                          "(SELECT id FROM subscriptions WHERE status = 'active' AND mrr_minor > 0 LIMIT :n)"),
                     {"t": since.replace(tzinfo=None), "n": WORKLIST_ROWS + 20})
        total = conn.execute(text("SELECT COUNT(*) FROM subscriptions WHERE status = 'past_due'")).scalar()
    engine.dispose()
    assert total > WORKLIST_ROWS
    server = start_server(tmp, database_url=url)
    try:
        today = utc_now().date()
        page.goto(f"{server.url}/failed_payments?from={today.replace(day=1)}&to={today}")
        sign_in_as(page, "manager")
        caption = (f"The {WORKLIST_ROWS:,} members longest past due of {total:,} are listed, by decline code; "
                   f"the download holds all {total:,}.")
        page.get_by_text(caption).wait_for(timeout=90_000)
        wait_idle(page)
        with page.expect_download(timeout=60_000) as info:
            page.get_by_role("button", name=f"Download the whole worklist: {total:,} (CSV)").click()
        saved = tmp_path / "worklist.csv"
        info.value.save_as(saved)
        lines = saved.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("Subscription id,Member id,Email")
        assert len(lines) - 1 == total
    finally:
        stop_server(server.proc)
        server.engine.dispose()


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_segment_tabs_draw_only_the_tab_in_view(dashboard_server, page):
    """A visit draws the first segment tab's chart only; choosing another tab draws that one
    (a hidden tab's chart used to be drawn on every visit, at the browser's cost)."""
    # The server runs on the wall clock and its demo world ends now: a year back holds revenue in
    # every segment whatever the day (this month alone may hold none just after midnight on the 1st).
    today = utc_now().date()
    page.goto(f"{dashboard_server.url}/revenue?from={today - timedelta(days=365)}&to={today}&money=USD")
    sign_in_as(page, "finance")
    page.wait_for_selector(".st-key-revenue_by_tier_chart .point", timeout=90_000)
    wait_idle(page)
    assert page.locator(".st-key-revenue_by_country_chart").count() == 0
    page.get_by_role("tab", name="By country").click()
    page.wait_for_selector(".st-key-revenue_by_country_chart .point", timeout=30_000)
    wait_idle(page)
    assert page.locator(".st-key-revenue_by_tier_chart").count() == 0
    page.get_by_role("tab", name="By tier").click()
    page.wait_for_selector(".st-key-revenue_by_tier_chart .point", timeout=30_000)


# Each chart's margins as given and as plotly drew them: a margin that grew means plotly's
# automargin (on in Streamlit's chart theme) found a label or legend outside it and drew the chart
# a second time.
MARGINS = """() => [...document.querySelectorAll('.js-plotly-plot')].map((el) => {
  const m = el.layout.margin || {}, s = el._fullLayout._size;
  return {key: el.closest('[class*=st-key-]')?.className.match(/st-key-([\\w-]+)/)?.[1] || '?',
          given: [m.l, m.r, m.t, m.b], drawn: [s.l, s.r, s.t, s.b]};
})"""


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_charts_are_drawn_once_with_room_for_their_labels(dashboard_server, page):
    """Every chart of the analytics pages, by month and by day, in two currencies, is given margins
    that hold its axis labels and legend, so plotly draws it once (a chart whose margins had to
    grow was drawn twice: half of the browser's time on these pages)."""
    today = utc_now().date()
    views = [f"revenue?from={today - timedelta(days=365)}&to={today}&money=USD",
             f"revenue?grain=day&from={today - timedelta(days=35)}&to={today}&money=JPY",
             f"churn?from={today - timedelta(days=365)}&to={today}",
             f"failed_payments?grain=week&from={today - timedelta(days=180)}&to={today}&money=EUR"]
    page.goto(f"{dashboard_server.url}/{views[0]}")
    sign_in_as(page, "manager")
    grown: list[str] = []
    drawn = 0

    def measure(where: str) -> None:
        nonlocal drawn
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=90_000)
        wait_idle(page)
        page.wait_for_timeout(500)  # plotly draws after the run's last element
        for chart in page.evaluate(MARGINS):
            drawn += 1
            if any(d > (g or 0) + 0.5 for g, d in zip(chart["given"], chart["drawn"], strict=True)):
                grown.append(f"{where} {chart['key']}: given {chart['given']}, drawn {chart['drawn']}")

    for view in views:
        page.goto(f"{dashboard_server.url}/{view}")
        measure(view.split("?")[0])
        if view.startswith("revenue"):  # countries: a horizontal money axis, its labels on the left
            page.get_by_role("tab", name="By country").click()
            measure(f"{view.split('?')[0]} by country")
    assert drawn >= 10
    assert grown == []


# On every plotly chart as it appears: each time plotly finishes drawing it, was its data computed
# again (``calcdata``, plotly's per-trace computation, replaced) since the last time?
COMPUTED_AGAIN = """
window.computedAgain = []; window.drawings = 0;
new MutationObserver(() => {
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    if (gd.watched || !gd.on) continue;
    gd.watched = true;
    gd.lastCalc = gd.calcdata;
    gd.on('plotly_afterplot', () => {
      window.drawings++;
      if (gd.lastCalc && gd.calcdata !== gd.lastCalc)
        window.computedAgain.push(gd.closest('[class*=st-key-]')?.className.match(/st-key-([\\w-]+)/)?.[1] || '?');
      gd.lastCalc = gd.calcdata;
    });
  }
}).observe(document, {subtree: true, childList: true});
"""


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_going_from_page_to_page_draws_each_chart_once(dashboard_server, page):
    """A manager goes Revenue → Churn and retention → Failed payments → Revenue by the navigation:
    plotly computes each chart once. Streamlit's frontend hands plotly a copy of every figure after
    its first drawing; with a theme template in the figure, or without a ``datarevision``, plotly
    took the copy for new data and drew every chart a second time (the whole cost again)."""
    page.add_init_script(COMPUTED_AGAIN)
    page.goto(dashboard_server.url)
    sign_in_as(page, "manager")
    for title in ("Revenue", "Churn and retention", "Failed payments", "Revenue"):
        page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=90_000)
        wait_idle(page)
        page.wait_for_timeout(500)  # plotly draws after the run's last element
    drawings, again = page.evaluate("[window.drawings, window.computedAgain]")
    assert drawings >= 10  # the charts of the four visits were watched
    assert again == []


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_back_leaves_an_analytics_page_at_the_first_press(dashboard_server, page):
    """A manager opens Revenue, then Churn and retention, by the navigation, chooses Week, and
    presses Back twice: the month view, then Revenue. The controls used to write their default
    range into the address after the navigation had pushed it (the first Back only took the
    parameters off), and wrote their own state back over the address Back gave them (Back after a
    choice seemed to do nothing)."""
    page.goto(dashboard_server.url)
    sign_in_as(page, "manager")
    for title in ("Revenue", "Churn and retention"):
        page.locator("[data-testid=stSidebarNav] a", has_text=title).first.click()
        page.get_by_role("heading", name=title).first.wait_for(timeout=90_000)
        wait_idle(page)
    assert page.url.endswith("/churn")
    granularity = page.get_by_role("radiogroup", name="Granularity")
    granularity.get_by_text("Week").click()
    page.wait_for_url("**/churn?grain=week")
    page.get_by_text("Share of paying members lost, by week").wait_for(timeout=30_000)
    wait_idle(page)
    page.go_back()
    page.get_by_text("Share of paying members lost, by month").wait_for(timeout=30_000)
    wait_idle(page)
    assert page.url.endswith("/churn")
    assert granularity.get_by_role("radio", name="Month").is_checked()  # the control shows it too
    # ... and the date range shows both its days (it showed only the start: a single-date widget).
    shown = " ".join(i.input_value() for i in page.locator("[data-testid=stDateInput] input").all())
    assert len(re.findall(r"\d{4}", shown)) == 2, shown
    page.go_back()
    page.get_by_role("heading", name="Revenue").first.wait_for(timeout=30_000)
    wait_idle(page)
    assert page.url.endswith("/revenue")
    assert page.get_by_role("heading", name="Churn and retention").count() == 0


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_back_from_a_link_the_controls_corrected_leaves_at_the_first_press(dashboard_server, page):
    """A finance person opens a link asking for every day since 1990: the page says it starts in
    2000 by month, and leaves the address as it was. The controls wrote the corrected values into
    the address (a history entry), so Back led to the same link, corrected and written again: two
    presses to leave."""
    page.goto(dashboard_server.url)
    sign_in_as(page, "finance")
    page.locator("[data-testid=stSidebarNav] a", has_text="Revenue").first.click()
    page.get_by_role("heading", name="Revenue").first.wait_for(timeout=90_000)
    wait_idle(page)
    page.goto(f"{dashboard_server.url}/churn?from=1990-01-01&grain=day")
    page.get_by_text("Ranges start on 2000-01-01 or later").wait_for(timeout=90_000)
    page.get_by_text("too many to show by day").wait_for(timeout=30_000)
    page.get_by_text("Share of paying members lost, by month").wait_for(timeout=30_000)
    wait_idle(page)
    page.wait_for_timeout(500)  # a write of the address would have come by now
    assert page.url.endswith("/churn?from=1990-01-01&grain=day")
    page.go_back()
    page.get_by_role("heading", name="Revenue").first.wait_for(timeout=30_000)
    wait_idle(page)
    assert page.url.endswith("/revenue")


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_the_figures_by_original_currency_download_as_plain_numbers(dashboard_server, page, tmp_path: Path):
    """The Revenue page's "same figures in each original currency" table shows "€5,366.84"; its CSV
    held those very strings, text a spreadsheet cannot add up. It holds each figure as a plain
    number in major units beside the currency, the same amounts the table shows."""
    import csv
    import io
    from decimal import Decimal

    from core.money import decimals
    from dashboard import format as fmt

    page.goto(f"{dashboard_server.url}/revenue")
    sign_in_as(page, "finance")
    opener = page.get_by_text("The same figures in each original currency")
    opener.wait_for(timeout=90_000)
    wait_idle(page)
    opener.click()
    box = page.locator("[data-testid=stExpander]", has_text="The same figures in each original currency")
    box.locator("[role=gridcell]").first.wait_for(state="attached")
    shown = " ".join(box.locator("[role=gridcell]").all_inner_texts())
    with page.expect_download() as info:
        page.locator(".st-key-revenue_by_currency button").click()
    saved = tmp_path / "by-currency.csv"
    info.value.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert rows and list(rows[0]) == ["Currency", "MRR", "ARR", "ARPU", "Net revenue"]
    for row in rows:
        for column, cell in row.items():
            if column == "Currency" or cell == "":
                continue
            assert re.fullmatch(r"-?\d+(\.\d+)?", cell), (column, cell)  # a plain number
            minor = int(Decimal(cell) * 10 ** decimals(row["Currency"]))
            assert fmt.money(minor, row["Currency"]) in shown, (column, cell, shown)


@pytest.mark.browser
@pytest.mark.xdist_group("browser")
def test_a_click_on_a_cohort_cell_opens_its_members(dashboard_server, page):
    """A manager on Churn and retention sees the cohorts from the oldest at the top, each cell
    with its share written in, and clicks the top-left cell: the picker below selects the members
    behind it (the cohort's own members, in its own month, month 0)."""
    page.goto(dashboard_server.url)
    sign_in_as(page, "manager")
    page.locator("[data-testid=stSidebarNav] a", has_text="Churn and retention").first.click()
    chart = ".st-key-churn_cohort_members_chart"
    page.wait_for_selector(f"{chart} .scatterlayer .point", timeout=90_000)
    wait_idle(page)
    page.locator(chart).scroll_into_view_if_needed()
    ticks = page.locator(f"{chart} .ytick text").all()
    rows = sorted(((t.bounding_box()["y"], t.text_content()) for t in ticks), key=lambda r: r[0])
    assert [r for _, r in rows] == sorted(r for _, r in rows)  # the oldest cohort on top
    top = rows[0][1]
    # Every cell is labelled with its share (the month in progress in italics).
    labels = [t.text_content() for t in page.locator(f"{chart} text").all()]
    assert sum(bool(re.fullmatch(r"\d+\.\d%", t or "")) for t in labels) >= 3, labels
    # The click target of the top-left cell: the marker highest up, then furthest left.
    boxes = [b for b in (m.bounding_box() for m in page.locator(f"{chart} .scatterlayer .point").all()) if b]
    cell = min(boxes, key=lambda b: (round(b["y"]), b["x"]))
    x, y = cell["x"] + cell["width"] / 2, cell["y"] + cell["height"] / 2
    page.mouse.move(x, y)  # plotly picks the point under the pointer on hover
    page.wait_for_timeout(300)
    page.mouse.click(x, y)
    wanted = f"row(s) behind Cohort {top}, paying at the end of {top}"  # the cohort's own members
    page.wait_for_function(f"() => document.body.innerText.includes({wanted!r})", timeout=30_000)
    wait_idle(page)
    assert page.get_by_text(wanted).count() == 1
