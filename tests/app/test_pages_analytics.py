"""The finance pages (Revenue, Churn and retention, Failed payments) run by Streamlit's AppTest on
a real database (SQLite always, PostgreSQL when configured): who may open them, the numbers they
show (the registry's answer to the same question, and hand-checked figures), drill-down rows, CSV
downloads, deep links through query parameters, and sentences instead of tracebacks."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from core.metrics import Query, compute
from core.models import Member
from core.timeutil import utc_now
from dashboard import format as fmt
from tests.support.apptest import page_app_test, texts
from tests.support.servers import ROOT
from tests.support.worlds import World, build_small_world, refresh_rollups

PAGES = {"revenue.py": "Revenue", "churn.py": "Churn and retention", "failed_payments.py": "Failed payments"}
ALLOWED = {
    "revenue.py": {"finance", "manager", "admin"},
    "churn.py": {"finance", "manager", "admin"},
    "failed_payments.py": {"support", "manager", "admin"},
}
ROLES = ("support", "finance", "manager", "admin")


@pytest.fixture
def world(engine) -> World:
    with Session(engine, expire_on_commit=False) as s:
        w = build_small_world(s)
        s.commit()
    refresh_rollups(engine)
    return w


def this_month() -> tuple[date, date]:
    """The first day of this month and today (UTC: the world's default business time zone)."""
    today = utc_now().date()
    return today.replace(day=1), today


def run_page(database_url: str, page: str, role: str, params: dict[str, Any] | None = None) -> Any:
    at = page_app_test(database_url, page, role=role)
    at.default_timeout = 60
    for key, value in (params or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def drill_boxes(at: Any) -> list[Any]:
    return [s for s in at.selectbox if s.label.startswith("Show ")]


def registry(engine, slug: str, start: date, end: date, currency: str | None = "USD", **filters: Any):
    q = Query.make(engine, start=start, end=end + timedelta(days=1), now=utc_now(), currency=currency, **filters)
    return compute(engine, slug, q)


class TestAccess:
    @pytest.mark.parametrize("page", sorted(PAGES))
    @pytest.mark.parametrize("role", ROLES)
    def test_page_by_role(self, database_url, world, page, role):
        first, today = this_month()  # one month keeps the matrix fast; other tests use longer ranges
        at = run_page(database_url, page, role, {"from": first.isoformat(), "to": today.isoformat()})
        shown = texts(at)
        if role in ALLOWED[page]:
            assert [t.value for t in at.title] == [PAGES[page]]
            assert not at.error, [e.value for e in at.error]
            assert at.metric, "the page shows its numbers"
        else:
            assert not at.metric and not at.get("plotly_chart")
            assert at.error and "role" in shown.lower()


class TestTimes:
    @pytest.mark.parametrize("page", sorted(PAGES))
    def test_times_are_in_the_business_time_zone(self, database_url, engine, world, page):
        """The pages said "data as of 08:44 UTC" and "refreshed 08:44 UTC" while the business time
        zone was Asia/Kolkata and the Overview said "Numbers as of 14:14 Asia/Kolkata"."""
        import re
        from datetime import datetime
        from zoneinfo import ZoneInfo

        from core.metrics.rollups import refresh, state
        from core.permissions import Actor
        from core.settings import business
        from dashboard.text import shown

        business.save(engine, actor=Actor.of("admin", ["admin"]), business_timezone="Asia/Kolkata")
        refresh(engine)  # rebuilt for the new zone, as the background refresher does after the change
        kolkata = ZoneInfo("Asia/Kolkata")
        built = state(engine)
        assert built is not None and built.tz == "Asia/Kolkata"
        before = utc_now().replace(second=0, microsecond=0)
        at = run_page(database_url, page, "admin")
        after = utc_now()
        captions = [shown(c.value) for c in at.caption]  # as the browser shows them (md's escapes taken out)
        (line,) = [c for c in captions if c.startswith("Time zone Asia/Kolkata")]
        as_of = re.search(r"data as of (\d{4}-\d\d-\d\d \d\d:\d\d) Asia/Kolkata$", line)
        assert as_of, line
        shown_at = datetime.strptime(as_of.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=kolkata)
        assert before <= shown_at <= after, (line, before, after)  # the page's minute, in Kolkata's time
        refreshed = f"refreshed {built.now.astimezone(kolkata):%Y-%m-%d %H:%M} Asia/Kolkata"
        assert any(refreshed in c for c in captions), captions
        assert not [c for c in captions if "UTC" in c], captions


class TestRates:
    def test_a_saved_rate_shows_on_the_next_load_and_the_line_names_it(self, database_url, engine, world):
        """After an admin saved a rate, Revenue showed the figures at the old rate for a minute (its
        cached answer was keyed by the settings without the rates) and nothing on the page said
        which rates the numbers were converted at."""
        from datetime import UTC, datetime

        from core.permissions import Actor
        from core.settings import business
        from dashboard.text import shown
        from tests.support.factories import make_payment

        first, today = this_month()
        with Session(engine) as s:  # 100.00 EUR collected this month (at its first instant: before any `now`)
            make_payment(s, member=s.get(Member, world.bob_id), amount=10000, currency="EUR",
                         created_at=datetime.combine(first, datetime.min.time(), tzinfo=UTC))
            s.commit()
        refresh_rollups(engine)  # written with a time before the last refresh: counted from the next one
        link = {"from": first.isoformat(), "to": today.isoformat()}
        before = {m.label: m.value for m in run_page(database_url, "revenue.py", "finance", link).metric}
        business.save_rate(engine, actor=Actor.of("admin", ["admin"]), currency="EUR", month=first,
                           usd_per_unit="1.30")
        at = page_app_test(database_url, "revenue.py", role="finance", clear_cache=False)  # the caches kept
        for key, value in link.items():
            at.query_params[key] = value
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        cards = {m.label: m.value for m in at.metric}
        net = registry(engine, "net_revenue", first, today)  # the 100.00 EUR now at 1.30
        assert cards["Net revenue"] == fmt.money(net.value, net.currency) != before["Net revenue"]
        saved = business.load(engine).fx_rates_changed_at
        line = next(shown(c.value) for c in at.caption if shown(c.value).startswith("Time zone"))
        assert f"converted to USD (FX rates as of their last change, {saved.astimezone(UTC):%Y-%m-%d %H:%M} UTC)" in line

    def test_a_cached_answer_is_never_one_at_other_rates(self, engine):
        """The same question in the same minute, asked again after a rate was saved, is answered at
        the new rate (the pages' cache keys on the rates' digest with the settings)."""
        import streamlit as st

        from core.permissions import Actor
        from core.settings import business
        from dashboard import metrics_data as md
        from dashboard.controls import Controls
        from tests.support.factories import at, make_member, make_payment

        asked = at("2026-03-09 18:43")
        with Session(engine) as s:
            make_payment(s, member=make_member(s), amount=1000, currency="EUR", created_at=at("2026-03-03 10:00"))
            s.commit()
        refresh_rollups(engine)
        st.cache_data.clear()
        chosen = Controls(start=date(2026, 3, 1), end=date(2026, 3, 9))

        def collected() -> int:
            q = md.question(engine, chosen, md.settings(engine), now=asked)
            return md.find(md.bundle(engine, q, "revenue", _asked_at=asked), "gross_revenue").value

        assert collected() == 1160  # 10.00 EUR at the seeded 2026 rate
        business.save_rate(engine, actor=Actor.of("admin", ["admin"]), currency="EUR", month="2026-03",
                           usd_per_unit="1.30")
        assert collected() == 1300


class TestRevenue:
    def test_usd_only_view_shows_the_hand_checked_figures(self, database_url, engine, world):
        first, today = this_month()
        at = run_page(database_url, "revenue.py", "finance",
                      {"from": first.isoformat(), "to": today.isoformat(), "money": "USD"})
        cards = {m.label: m.value for m in at.metric}
        # USD amounts only, unconverted: this month Ann's renewal succeeded on its second attempt
        # (999 cents); nothing was refunded or lost in USD. Her MRR is 999 cents a month.
        assert cards["Net revenue"] == "$9.99"
        assert cards["MRR"] == "$9.99"
        assert cards["ARR"] == "$119.88"
        assert "USD only" in texts(at)
        # The segment bars' figures as a table too (the segments' sum could only be hovered).
        by_tier = next(df.value for df in at.dataframe if "Tier" in df.value.columns and "Net" in df.value.columns)
        assert list(by_tier.columns) == ["Tier", "Gross", "Refunds", "Disputes lost", "Net", "Currency"]
        assert by_tier["Net"].tolist() == ["$9.99"] and by_tier["Tier"].tolist() == ["Premium"]

    def test_converted_view_matches_the_registry(self, database_url, engine, world):
        first, today = this_month()
        at = run_page(database_url, "revenue.py", "manager", {"from": first.isoformat(), "to": today.isoformat()})
        cards = {m.label: m.value for m in at.metric}
        for slug, label in (("mrr", "MRR"), ("arr", "ARR"), ("net_revenue", "Net revenue"),
                            ("paying_members", "Paying members")):
            r = registry(engine, slug, first, today)
            expected = fmt.count(r.value) if r.unit == "count" else fmt.money(r.value, r.currency)
            assert cards[label] == expected, slug
        assert "Time zone UTC" in texts(at)

    def test_every_card_carries_its_definition(self, database_url, world):
        at = run_page(database_url, "revenue.py", "admin")  # the default range: this month and the 12 before
        for m in at.metric:
            assert m.proto.help and "Time zone" in m.proto.help, m.label

    def test_cash_drill_shows_the_payment_rows_with_csv(self, database_url, world):
        first, today = this_month()
        at = run_page(database_url, "revenue.py", "finance",
                      {"from": first.isoformat(), "to": today.isoformat(), "money": "USD"})
        pick(at, "Cash: Collected")
        # The drill's rows (the segment tables below the chain come after it on the page).
        frame = next(d.value for d in reversed(at.dataframe) if "Email" in d.value.columns)
        assert "ann.lee@example.com" in set(frame["Email"])
        assert any(b.label.startswith("Download") for b in at.get("download_button"))

    def test_waterfall_drills_to_the_new_member(self, database_url, world):
        # Ann's premium subscription pays 9.99 USD from 1 January 2025 00:00, the end of December
        # 2024: December's movements are one "new" of $9.99, from $0.00 to $9.99.
        at = run_page(database_url, "revenue.py", "finance", {"from": "2024-12-01", "to": "2024-12-31", "money": "USD"})
        pick(at, "Movement: New")
        frame = at.dataframe[-1].value
        assert list(frame["Email"]) == ["ann.lee@example.com"]
        assert list(frame["MRR at end"]) == ["$9.99"]
        # Drawn at full width below the two charts (in a half-width column the money columns were cut off).
        assert all(len(c.dataframe) == 0 for c in at.columns)

    def test_a_cash_chain_of_part_of_a_month_says_so(self, database_url, world):
        # A week into a month, billed and collected are a week's amounts beside a month's MRR.
        part = texts(run_page(database_url, "revenue.py", "finance", {"from": "2026-04-01", "to": "2026-05-10"}))
        assert "These amounts cover 10 of the month's 31 days, while MRR is a whole month's rate" in part
        whole = texts(run_page(database_url, "revenue.py", "finance", {"from": "2026-04-01", "to": "2026-05-31"}))
        assert "of the month's" not in whole

    def test_bad_link_parameters_are_explained(self, database_url, world):
        at = run_page(database_url, "revenue.py", "finance", {"from": "yesterday", "grain": "hour", "tier": "gold"})
        shown = texts(at)
        assert "was not a date" in shown
        assert "is not a granularity" in shown
        assert "“gold” is not one of the tiers in the data; all tiers are shown." in shown
        # A future start alone was dropped without a word; a past one alone runs to today.
        later = run_page(database_url, "revenue.py", "finance", {"from": "2099-01-01"})
        assert "The link's start date is after today; the default range is shown." in texts(later)
        # A range wholly in the future showed $0.00 and a "so far" period without a word.
        future = texts(run_page(database_url, "revenue.py", "finance", {"from": "2099-01-01", "to": "2099-03-01"}))
        assert "The link's dates are after today, and there are no figures yet; the default range is shown." in future

    def test_a_link_s_correction_is_said_until_the_person_changes_that_control(self, database_url, world):
        # After choosing Week on a link asking for "hour", the page still said "“hour” is not a
        # granularity" for that run; choosing Day on a 26-year link said its sentence twice.
        at = run_page(database_url, "revenue.py", "finance", {"grain": "hour"})
        assert "is not a granularity" in texts(at)
        next(r for r in at.radio if r.label == "Granularity").set_value("week").run()
        assert "is not a granularity" not in texts(at)
        wide = run_page(database_url, "revenue.py", "finance", {"from": "1990-01-01", "grain": "day"})
        next(r for r in wide.radio if r.label == "Granularity").set_value("day").run()
        shown = texts(wide)
        assert shown.count("too many to show by day") == 1, shown
        assert "Ranges start on 2000-01-01 or later" in shown  # the range is still the link's, corrected

    def test_a_link_cannot_ask_for_unbounded_work(self, database_url, world):
        # Every day since the year 1 held the server at 5 GB for minutes: a range starts in 2000 at
        # the earliest, and too many days for a granularity are shown by a longer one.
        at = run_page(database_url, "revenue.py", "finance", {"from": "0001-01-01", "grain": "day"})
        shown = texts(at)
        assert "Ranges start on 2000-01-01 or later; the range starts there." in shown
        assert "days are too many to show by day; the charts show them by month." in shown
        assert next(r for r in at.radio if r.label == "Granularity").value == "month"  # the control says it too
        weeks = texts(run_page(database_url, "revenue.py", "finance", {"from": "2023-01-01", "to": "2025-12-31",
                                                                         "grain": "day"}))
        assert "1,096 days are too many to show by day; the charts show them by week." in weeks
        since = run_page(database_url, "revenue.py", "finance", {"from": "2026-01-01"})
        assert since.date_input[0].value[0] == date(2026, 1, 1) and not since.warning
        assert [t.value for t in at.title] == ["Revenue"]

    def test_controls_are_kept_in_the_link(self, database_url, world):
        at = run_page(database_url, "revenue.py", "finance", {"from": "2026-01-01", "to": "2026-03-31",
                                                              "grain": "week", "tier": "premium"})
        assert at.date_input[0].value == (date(2026, 1, 1), date(2026, 3, 31))
        assert at.radio[0].value == "week"
        assert param(at, "grain") == ["week"] and param(at, "tier") == ["premium"]
        at.radio[0].set_value("day").run()
        assert param(at, "grain") == ["day"]

    def test_a_visit_at_the_defaults_writes_nothing_in_the_link(self, database_url, world):
        # Each write of the link is a history entry: a plain visit must not add one after the
        # navigation's own (Back would then stay on the page at its first press).
        at = run_page(database_url, "churn.py", "manager")
        assert dict(at.query_params) == {}
        at.radio[0].set_value("week").run()  # a choice is written; the default range stays out
        assert dict(at.query_params) == {"grain": "week"}
        at.date_input[0].set_value((date(2026, 1, 1), date(2026, 3, 31))).run()
        assert param(at, "from") == ["2026-01-01"] and param(at, "to") == ["2026-03-31"]
        assert param(at, "grain") == ["week"]

    def test_back_after_a_change_shows_the_view_before_it(self, database_url, world):
        # Back gives the page the address of the view before (Streamlit runs it again with it): the
        # address wins over the widgets' state, instead of the page writing that state back over it.
        at = run_page(database_url, "churn.py", "manager")
        at.radio[0].set_value("week").run()
        at.date_input[0].set_value((date(2026, 1, 1), date(2026, 3, 31))).run()
        for key in list(at.query_params):  # Back: the address of the Week view
            del at.query_params[key]
        at.query_params["grain"] = "week"
        at.run()
        assert at.radio[0].value == "week" and at.date_input[0].value != (date(2026, 1, 1), date(2026, 3, 31))
        assert dict(at.query_params) == {"grain": "week"}
        del at.query_params["grain"]  # Back again: the address the sidebar opened
        at.run()
        assert at.radio[0].value == "month" and dict(at.query_params) == {}


def param(at: Any, name: str) -> list[str]:
    value = at.query_params.get(name)
    return [value] if isinstance(value, str) else list(value or [])


def pick(at: Any, label: str) -> None:
    """Choose ``label`` in whichever "Show ... behind" select box offers it, and rerun."""
    for box in drill_boxes(at):
        options = [str(o) for o in box.options]
        if label in options:
            box.select_index(options.index(label)).run()
            assert not at.exception, [e.value for e in at.exception]
            return
    offered = [str(o) for b in drill_boxes(at) for o in b.options]
    raise AssertionError(f"no drill offers {label!r}; offered: {offered}")


class TestChurn:
    def test_this_month_is_drawn_as_so_far_not_as_a_dip(self, database_url, world):
        import json

        first, today = this_month()
        start = (first - timedelta(days=95)).replace(day=1)
        at = run_page(database_url, "churn.py", "finance", {"from": start.isoformat(), "to": today.isoformat()})
        specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
        lines = [sp for sp in specs if "lost" in json.dumps(sp.get("layout", {}).get("title", ""))]
        assert lines, "the member churn chart"
        traces = lines[0]["data"]
        solid = [t for t in traces if not t["name"].endswith("(so far)")]
        dotted = [t for t in traces if t["name"].endswith("(so far)")]
        assert dotted and all(t["line"]["dash"] == "dot" for t in dotted)
        this_one = first.isoformat()
        assert all(this_one not in t["x"] for t in solid), "this month is not on the solid line"
        assert all(t["x"][-1] == this_one and "so far" in t["customdata"][-1][1] for t in dotted)
        # Written once, above the highest of the lines there (one label each ran together).
        labelled = [t for t in dotted if t["text"][-1] == "so far"]
        drawn = [t["y"][-1] for t in dotted if t["y"][-1] is not None]  # a rate with no one to divide by is a gap
        assert len(labelled) == 1 and labelled[0]["y"][-1] == max(drawn)
        assert any(str(o).endswith("(so far)") for b in drill_boxes(at) for o in b.options)

    def test_cards_match_the_registry(self, database_url, engine, world):
        at = run_page(database_url, "churn.py", "finance", {"from": "2026-01-01", "to": "2026-06-30"})
        cards = {m.label: m.value for m in at.metric}
        for slug, label in (("member_churn_rate", "Member churn"), ("nrr", "NRR"), ("grr", "GRR"),
                            ("trial_conversion", "Trial conversion")):
            r = registry(engine, slug, date(2026, 1, 1), date(2026, 6, 30))
            assert cards[label] == fmt.percent(r.value), slug
        headers = [s.value for s in at.subheader]
        assert headers == ["Member churn", "MRR churn and retention", "Cohort retention", "Trial conversion",
                           "Cancellation reasons"]
        assert not at.error

    def test_rates_by_day_or_week_say_they_are_per_period(self, database_url, world):
        # The same range read 0.1 % by day and 0.9 % by month, and nothing said which.
        by_week = texts(run_page(database_url, "churn.py", "finance", {"from": "2026-01-01", "to": "2026-03-31",
                                                                       "grain": "week"}))
        assert "Churn and retention rates are per week" in by_week
        by_month = texts(run_page(database_url, "churn.py", "finance", {"from": "2026-01-01", "to": "2026-03-31"}))
        assert "rates are per" not in by_month

    def test_mrr_churn_and_retention_are_drawn_on_axes_of_their_own(self, database_url, world):
        # On one axis, churn (a few per cent) lay flat under NRR and GRR (near 100 %).
        at = run_page(database_url, "churn.py", "finance", {"from": "2026-01-01", "to": "2026-06-30"})

        def mrr_chart():
            titles = {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
                      for c in at.get("plotly_chart")}
            found = [t for t in titles if t.startswith(("Share of MRR lost", "Share of MRR kept"))]
            assert len(found) == 1, titles.keys()  # one tab drawn at a time
            return found[0], sorted({t["name"] for t in titles[found[0]]["data"] if t.get("showlegend", True)})

        assert mrr_chart() == ("Share of MRR lost, by month", ["Gross MRR churn", "Net MRR churn"])
        at.session_state["churn_mrr_tabs"] = "NRR and GRR"
        at.run()
        assert mrr_chart() == ("Share of MRR kept, by month", ["GRR", "NRR"])
        assert not at.exception

    def test_member_churn_drill_lists_members(self, database_url, world):
        at = run_page(database_url, "churn.py", "manager", {"from": "2026-01-01", "to": "2026-03-31"})
        pick(at, "Churn: Feb 2026 (All)")  # a month by its name, as the hover says
        assert any(b.label.startswith("Download") for b in at.get("download_button")) or texts(at).count("No rows")


class TestFailedPayments:
    def test_support_sees_rates_and_the_worklist_but_no_revenue_total(self, database_url, engine, world):
        first, today = this_month()
        at = run_page(database_url, "failed_payments.py", "support",
                      {"from": first.isoformat(), "to": today.isoformat()})
        cards = {m.label: m.value for m in at.metric}
        assert set(cards) == {"Failure rate (first attempt)", "Recovery rate"}
        r = registry(engine, "failure_rate", first, today)
        assert cards["Failure rate (first attempt)"] == fmt.percent(r.value)
        # Bob is past due (the small world has no open invoice for him, so his decline code is
        # "unknown"): his group, and his row links to his member page.
        assert [e.label for e in at.expander if "member(s)" in e.label] == ["Unknown — 1 member(s)"]
        worklist = next(d.value for d in at.dataframe if "Email" in d.value.columns
                        and "bob.stone@example.org" in set(d.value["Email"]))
        assert f"members?member={world.bob_id}" in set(worklist["Member page"])
        assert not any(s.label == "Money" for s in at.selectbox), "support gets no money view switch"

    def test_a_long_worklist_lists_its_start_and_offers_the_whole(self, database_url, engine, world):
        from core.metrics.bundles import WORKLIST_ROWS
        from core.models import Tier
        from tests.support.factories import make_member, make_price, make_subscription

        with Session(engine, expire_on_commit=False) as s:
            price = make_price(s, tier=s.query(Tier).first(), unit_amount=900)
            for _ in range(WORKLIST_ROWS + 2):
                make_subscription(s, member=make_member(s), price=price, status="past_due", mrr_minor=900,
                                  past_due_since=utc_now() - timedelta(days=2))
            s.commit()
        first, today = this_month()
        at = run_page(database_url, "failed_payments.py", "manager",
                      {"from": first.isoformat(), "to": today.isoformat()})
        total = WORKLIST_ROWS + 3  # and Bob
        assert (f"The {WORKLIST_ROWS:,} members longest past due of {total:,} are listed, by decline code; "
                f"the download holds all {total:,}.") in [c.value for c in at.caption]
        assert any("of those listed" in e.label for e in at.expander)

    def test_a_closed_group_of_the_worklist_sends_its_table_when_opened(self):
        # Three decline codes: the largest group opens with the page, the others wait to be opened.
        script = f"""
import sys
sys.path.insert(0, {str(ROOT)!r})
import pandas as pd
from dashboard.analytics_ui import worklist
codes = ["card_declined"] * 3 + ["expired_card"] * 2 + ["insufficient_funds"]
worklist(pd.DataFrame({{"member_id": range(1, 7), "email": [f"m{{i}}@example.com" for i in range(1, 7)],
                        "decline_code": codes}}), key="wl")
"""
        at = AppTest.from_string(script, default_timeout=30)
        at.run()
        assert not at.exception, at.exception
        assert [e.label for e in at.expander] == ["Card declined — 3 member(s)", "Card expired — 2 member(s)",
                                                  "Insufficient funds — 1 member(s)"]
        assert [len(d.value) for d in at.dataframe] == [3]  # the closed groups' tables are not sent
        at.session_state["wl_open_expired_card"] = True  # what a click on the group does
        at.run()
        assert sorted(len(d.value) for d in at.dataframe) == [2, 3]
        assert {"m4@example.com", "m5@example.com"} <= set(at.dataframe[1].value["Email"])

    def test_manager_sees_revenue_at_risk_from_the_registry(self, database_url, engine, world):
        first, today = this_month()
        at = run_page(database_url, "failed_payments.py", "manager",
                      {"from": first.isoformat(), "to": today.isoformat()})
        cards = {m.label: m.value for m in at.metric}
        r = registry(engine, "revenue_at_risk", first, today)
        assert cards["Revenue at risk (MRR)"] == fmt.money(r.value, r.currency)

    def test_decline_code_drill_lists_the_failed_payments(self, database_url, world):
        first, today = this_month()
        at = run_page(database_url, "failed_payments.py", "admin",
                      {"from": first.isoformat(), "to": today.isoformat()})
        pick(at, "Decline code: Insufficient funds")
        frame = at.dataframe[-1].value
        assert {"ann.lee@example.com", "bob.stone@example.org"} <= set(frame["Email"])
        assert set(frame["Decline code"]) == {"Insufficient funds"}
        assert all(len(c.dataframe) == 0 for c in at.columns), "drill rows are drawn full width, below the charts"
