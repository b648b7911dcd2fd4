"""Every number one dashboard page needs, in one call: ``page_bundle(engine, page, query)``.

Pages: ``overview`` (KPI cards with the previous period), ``revenue``, ``churn``,
``failed_payments`` (with the past-due worklist and cards expiring before renewal). Identical
aggregate queries inside one bundle run once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine

from core.metrics import rollups, source, worklists
from core.metrics.fx import RateTable
from core.metrics.registry import get
from core.metrics.types import MetricError, MetricResult, Query, Unit

PAGES: dict[str, tuple[str, ...]] = {
    "overview": ("mrr", "paying_members", "member_churn_rate", "failure_rate", "net_revenue"),
    "revenue": ("mrr", "arr", "paying_members", "arpu", "ltv", "mrr_movements", "mrr_new", "mrr_reactivation",
                "mrr_expansion", "mrr_contraction", "mrr_churn", "gross_revenue", "refunds", "disputes_lost",
                "net_revenue", "stripe_fees"),
    "churn": ("member_churn_rate", "voluntary_churn_rate", "involuntary_churn_rate", "gross_mrr_churn",
              "net_mrr_churn", "nrr", "grr", "cohort_retention", "cohort_mrr_retention", "trial_conversion",
              "cancellations"),
    "failed_payments": ("failure_rate", "recovery_rate", "failed_payments", "decline_codes", "card_brands",
                        "card_countries", "revenue_at_risk"),
}
KPIS = {"overview": PAGES["overview"]}


@dataclass
class Kpi:
    slug: str
    title: str
    unit: Unit
    value: int | float | None
    previous: int | float | None
    change: int | float | None  # value - previous (percent: in fraction points)
    change_ratio: float | None  # change / |previous| (None when previous is 0 or missing)
    currency: str | None
    definition: str


@dataclass
class PageBundle:
    page: str
    query: Query
    metrics: dict[str, MetricResult]
    kpis: list[Kpi] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    settings_used: dict[str, Any] = field(default_factory=dict)
    data_through: datetime | None = None  # when the rollups were last refreshed (None: raw rows)


def previous_query(query: Query) -> Query:
    """The same-length range just before the query (whole months when the range is whole months)."""
    s, e = query.start, query.end
    if s.day == 1 and e.day == 1:
        months = (e.year - s.year) * 12 + e.month - s.month
        idx = s.year * 12 + s.month - 1 - months
        start = date(idx // 12, idx % 12 + 1, 1)
    else:
        start = s - (e - s)
    return replace(query, start=start, end=s)


# KPI cards whose rate is defined per month whatever the page's buckets: a month-to-date card
# shows the month's churn rate (compared with last month's), not the average day's.
MONTHLY_KPIS = frozenset({"member_churn_rate"})


def page_bundle(engine: Engine, page: str, query: Query) -> PageBundle:
    if page not in PAGES:
        raise MetricError(f"“{page}” is not a dashboard page; use one of {', '.join(PAGES)}.")
    with source.shared():
        metrics = {slug: get(slug).compute(engine, query) for slug in PAGES[page]}
        bundle = PageBundle(page, query, metrics, settings_used=query.settings_used())
        st = rollups.state(engine)
        bundle.data_through = st.now if st is not None and st.matches(query.tz, query.settings) else None
        if page == "overview":
            prev = previous_query(query)
            for slug in KPIS[page]:
                m = get(slug)
                q, p = query, prev
                if slug in MONTHLY_KPIS and query.granularity != "month":
                    q, p = replace(query, granularity="month"), replace(prev, granularity="month")
                    metrics[slug] = m.compute(engine, q)
                cur = metrics[slug]
                old = m.compute(engine, p)
                bundle.kpis.append(_kpi(m.slug, m.title, m.unit, cur, old, m.definition))
        elif page == "revenue":
            for dim in ("tier", "interval", "currency", "country"):
                bundle.tables[f"revenue_by_{dim}"] = revenue_by(engine, query, dim)
        elif page == "failed_payments":
            bundle.tables["past_due"] = worklists.past_due(engine, query)
            bundle.tables["expiring_cards"] = worklists.expiring_cards(engine, query)
    return bundle


def _kpi(slug: str, title: str, unit: Unit, cur: MetricResult, old: MetricResult, definition: str) -> Kpi:
    value, previous = cur.value, old.value
    change = None if value is None or previous is None else value - previous
    change_ratio = None if change is None or not previous else change / abs(previous)
    if unit == "percent":
        change_ratio = None
    return Kpi(slug, title, unit, value, previous, change, change_ratio, cur.currency, definition)


_DIM_COLUMN = {"tier": "tier_id", "interval": "interval", "currency": "currency", "country": "country"}


def revenue_by(engine: Engine, query: Query, dim: str) -> pd.DataFrame:
    """Gross, refunds, disputes lost and net revenue of the range by tier, interval, currency or
    country (reporting currency, or per original currency with a ``currency`` column)."""
    _, first, last = source.span(query)
    col = _DIM_COLUMN[dim]
    # One read by every group column serves the four breakdowns of the page (summed here).
    df = source.daily(engine, query, "cash", first, last, keys=("tier_id", "interval", "country"))
    cols = ["key", "gross", "refunds", "disputes_lost", "net"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    df = df.groupby(["day", "currency"] + ([] if col == "currency" else [col]), dropna=False,
                    as_index=False)[["gross", "refunds", "disputes_lost"]].sum()
    df = df.assign(net=df["gross"] - df["refunds"] - df["disputes_lost"], month=df["day"].map(lambda d: d.replace(day=1)))
    df["key"] = df[col]
    if dim == "tier":
        from sqlalchemy import text

        with engine.connect() as conn:
            codes = dict(conn.execute(text("SELECT id, code FROM tiers")).all())
        df["key"] = df["key"].map(lambda t: codes.get(t, "none") if pd.notna(t) else "none")
    df["key"] = df["key"].fillna("none").astype(str)
    measures = ["gross", "refunds", "disputes_lost", "net"]
    if query.currency is None:
        out = df.groupby(["key", "currency"], as_index=False)[measures].sum()
        return out.sort_values("gross", ascending=False).reset_index(drop=True)
    rates = RateTable.load(engine)
    sub = df.groupby(["key", "month", "currency"], as_index=False)[measures].sum()
    for m in measures:
        sub[m] = [rates.convert(int(v), c, query.currency, mo)
                  for v, c, mo in zip(sub[m], sub["currency"], sub["month"], strict=True)]
    out = sub.groupby("key", as_index=False)[measures].sum()
    return out.sort_values("gross", ascending=False).reset_index(drop=True)[cols]
