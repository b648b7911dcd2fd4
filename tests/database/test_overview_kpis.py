"""The Overview's cards answer the same questions as the registry and the CLI."""

from __future__ import annotations

from datetime import date

from core.metrics import Query, compute, page_bundle
from core.metrics.rollups import refresh
from demo import load_demo
from tests.support.factories import at

NOW = at("2026-11-27 12:00")


def test_month_to_date_churn_card_is_the_months_rate_not_a_daily_one(engine):
    load_demo(engine, members=300, seed=3, now=NOW)
    refresh(engine, now=NOW)
    # What the Overview asks for "Month to date": daily buckets, so sums stay exact.
    mtd = Query.make(engine, start=date(2026, 11, 1), end=date(2026, 11, 28), now=NOW, granularity="day")
    card = {k.slug: k for k in page_bundle(engine, "overview", mtd).kpis}["member_churn_rate"]

    monthly = Query.make(engine, start=date(2026, 11, 1), end=date(2026, 11, 28), now=NOW, granularity="month")
    assert card.value == compute(engine, "member_churn_rate", monthly).value
    # Against last month to the same minute (26 days and 12 hours in), not against all of October:
    # a month so far loses fewer members than a whole one.
    same_part = Query.make(engine, start=date(2026, 10, 1), end=date(2026, 11, 1), now=at("2026-10-27 12:00"),
                           granularity="month")
    assert card.previous == compute(engine, "member_churn_rate", same_part).value
    whole = Query.make(engine, start=date(2026, 10, 1), end=date(2026, 11, 1), now=NOW, granularity="month")
    assert compute(engine, "member_churn_rate", whole).value != card.previous  # the world churns in the last days too
    assert card.compared == "vs 2026-10-01 – 2026-10-27 12:00"
    # The money cards keep the exact days of the range.
    net = {k.slug: k for k in page_bundle(engine, "overview", mtd).kpis}.get("net_revenue")
    if net is not None:
        assert net.value == compute(engine, "net_revenue", mtd).value
