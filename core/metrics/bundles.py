"""Every number one dashboard page needs, in one call: ``page_bundle(engine, page, query)``.

Pages: ``overview`` (KPI cards with the previous period), ``revenue``, ``churn``,
``failed_payments`` (with the past-due worklist and cards expiring before renewal). Identical
aggregate queries inside one bundle run once.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from sqlalchemy import Engine, text

from core.metrics import memo, source, worklists
from core.metrics.cash import net_amount
from core.metrics.common import GROUP_KEYS, converted_daily
from core.metrics.registry import get
from core.metrics.types import MetricError, MetricResult, Query, Unit
from core.timeutil import local_midnight, next_period_start, zone

PAGES: dict[str, tuple[str, ...]] = {
    "overview": ("mrr", "paying_members", "member_churn_rate", "failure_rate", "net_revenue"),
    "revenue": ("mrr", "arr", "paying_members", "arpu", "ltv", "mrr_movements", "mrr_new", "mrr_reactivation",
                "mrr_expansion", "mrr_contraction", "mrr_churn", "billed", "gross_revenue", "refunds", "disputes_lost",
                "net_revenue", "stripe_fees"),
    "churn": ("member_churn_rate", "voluntary_churn_rate", "involuntary_churn_rate", "gross_mrr_churn",
              "net_mrr_churn", "nrr", "grr", "cohort_retention", "cohort_mrr_retention", "trial_conversion",
              "cancellations"),
    "failed_payments": ("failure_rate", "recovery_rate", "failed_payments", "decline_codes", "card_brands",
                        "card_countries", "revenue_at_risk"),
}
KPIS = {"overview": PAGES["overview"]}
# A page lists the first rows of each worklist (longest past due, soonest renewal); the whole list
# is a download (``worklists.past_due`` / ``expiring_cards`` without a limit). At a million
# members the lists run to thousands of rows, each a few row reads in large tables: more time
# than every number on the page, for rows nobody reads on screen.
WORKLIST_ROWS = 100


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
    compared: str = ""  # what the change compares with, as a phrase ("vs 1 Nov - 14 Nov 15:30")


@dataclass
class PageBundle:
    page: str
    query: Query
    metrics: dict[str, MetricResult]
    kpis: list[Kpi] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    settings_used: dict[str, Any] = field(default_factory=dict)
    data_through: datetime | None = None  # when the rollups were last refreshed (None: raw rows)
    freshness: source.Freshness | None = None  # how far behind the rollups are, as a sentence
    # Rows in the whole of each table when the page holds only the first WORKLIST_ROWS of it.
    row_counts: dict[str, int] = field(default_factory=dict)
    # Revenue: the chain MRR -> billed -> collected -> refunded -> disputed -> net of one month
    # (``chain_query``: the range's last month), so MRR stands beside one month of cash.
    chain: dict[str, MetricResult] = field(default_factory=dict)
    chain_query: Query | None = None


CHAIN = ("mrr", "billed", "gross_revenue", "refunds", "disputes_lost", "net_revenue", "stripe_fees")


def chain_query(query: Query) -> Query:
    """The last month of the range that has begun by ``now``, cut to the range, as a one-month
    question: MRR is a monthly rate, so the cash beside it is one month's."""
    assert query.now is not None
    tz = zone(query.tz)
    last_day = min(query.end - timedelta(days=1), query.now.astimezone(tz).date())
    last_day = max(last_day, query.start)
    month = last_day.replace(day=1)
    start = max(month, query.start)
    end = min(next_period_start(month, "month"), query.end)
    return replace(query, start=start, end=end, granularity="month")


def previous_query(query: Query) -> Query:
    """The period a card's change compares with, like with like: for a range starting on the
    first of a month, the same days of the previous month, quarter or year when the range fits in
    one (month, quarter or year to date), else as many months earlier as it spans; otherwise the
    same number of days just before. When the range has not ended at ``now`` (a partial period), the
    previous one is cut at the same elapsed time: ``now`` moves back with it, so month to date on
    the 14th at 15:30 compares with the 1st to the 14th at 15:30 of last month, never with a
    whole month or whole days the current period has not had yet."""
    assert query.now is not None
    tz = zone(query.tz)
    s, e = query.start, query.end
    if s.day == 1:
        span = (e.year - s.year) * 12 + e.month - s.month + (1 if e.day > 1 else 0)
        # Month, quarter or year to date: the same part of the previous month, quarter or year.
        months = next((n for n, starts in ((1, range(1, 13)), (3, (1, 4, 7, 10)), (12, (1,)))
                       if span <= n and s.month in starts), span)
        idx = s.year * 12 + s.month - 1 - months
        start = date(idx // 12, idx % 12 + 1, 1)
    else:
        start = s - (e - s)
    end = start + (e - s)
    begun, ends = local_midnight(s, tz), local_midnight(e, tz)
    if query.now >= ends:
        return replace(query, start=start, end=min(end, s), now=min(query.now, local_midnight(min(end, s), tz)))
    cut = local_midnight(start, tz) + (query.now - begun)
    return replace(query, start=start, end=min(end, s), now=cut)


def compared_phrase(previous: Query) -> str:
    """``vs 1 Nov 2026 - 14 Nov 2026 15:30`` (a cut period) or ``vs 1 Nov 2026 - 30 Nov 2026``."""
    assert previous.now is not None
    tz = zone(previous.tz)
    last = previous.end - timedelta(days=1)
    if previous.now < local_midnight(previous.end, tz):
        return f"vs {previous.start:%Y-%m-%d} – {previous.now.astimezone(tz):%Y-%m-%d %H:%M}"
    return f"vs {previous.start:%Y-%m-%d} – {last:%Y-%m-%d}"


# KPI cards whose rate is defined per month whatever the page's buckets: a month-to-date card
# shows the month's churn rate so far (compared with last month's to the same minute), not the
# average day's.
MONTHLY_KPIS = frozenset({"member_churn_rate"})


def page_bundle(engine: Engine, page: str, query: Query) -> PageBundle:
    if page not in PAGES:
        raise MetricError(f"“{page}” is not a dashboard page; use one of {', '.join(PAGES)}.")
    with memo.shared():
        # Failed payments: the part that reads the subscriptions, on a second connection (``BESIDE``).
        side = _SECOND.submit(_subscriptions_side, engine, query) if page == "failed_payments" else None
        beside = BESIDE if side is not None else ()
        found = {slug: get(slug).compute(engine, query) for slug in PAGES[page] if slug not in beside}
        other = side.result() if side is not None else SubscriptionsSide({}, {}, {})
        found.update(other.metrics)
        metrics = {slug: found[slug] for slug in PAGES[page]}
        bundle = PageBundle(page, query, metrics, settings_used=query.settings_used())
        bundle.tables.update(other.tables)
        bundle.row_counts = other.row_counts
        st = source.usable_state(engine, query)
        bundle.data_through = st.now if st is not None else None
        bundle.freshness = source.status(engine, query)
        if page == "overview":
            prev = previous_query(query)
            for slug in KPIS[page]:
                m = get(slug)
                q, p = query, prev
                if slug in MONTHLY_KPIS:
                    # A monthly rate: this month's so far against last month's over the same part
                    # of it (to the minute). Against the whole of last month, 8 days of December
                    # read "0.8 %, down 2.4 points" from November's 3.2 %: an improvement that was
                    # only a shorter month.
                    q, p = _whole_months(query), _whole_months(prev)
                    metrics[slug] = m.compute(engine, q)
                cur = metrics[slug]
                old = m.compute(engine, p)
                bundle.kpis.append(_kpi(m.slug, m.title, m.unit, cur, old, m.definition, compared_phrase(p)))
        elif page == "revenue":
            bundle.tables.update(revenue_tables(engine, query))
            bundle.chain_query = chain_query(query)
            bundle.chain = {slug: get(slug).compute(engine, bundle.chain_query) for slug in CHAIN}
    return bundle


# Failed payments' numbers read beside the others, with the worklists: they read the subscriptions,
# the rest the payment rollups. Most of either half is the database's time, so at a million members
# on an idle 2-core machine the page took 39-43 ms instead of 52-65. (Revenue was tried the same way
# and gained nothing, 50-56 ms either way: its time is Python's, which a second thread does not
# share out.) Under load both halves wait for the same cores, and nothing is gained or lost.
BESIDE = ("revenue_at_risk",)
_SECOND = ThreadPoolExecutor(max_workers=4, thread_name_prefix="page-beside")


@dataclass
class SubscriptionsSide:
    metrics: dict[str, MetricResult]
    tables: dict[str, pd.DataFrame]
    row_counts: dict[str, int]


def _subscriptions_side(engine: Engine, query: Query) -> SubscriptionsSide:
    with memo.shared():  # this thread's own: its reads are shared among themselves
        return SubscriptionsSide({slug: get(slug).compute(engine, query) for slug in BESIDE},
                                 {"past_due": worklists.past_due(engine, query, limit=WORKLIST_ROWS),
                                  "expiring_cards": worklists.expiring_cards(engine, query, limit=WORKLIST_ROWS)},
                                 worklists.counts(engine, query))


def _whole_months(query: Query) -> Query:
    """The query widened to whole months at month granularity (a monthly rate's card)."""
    end = query.end if query.end.day == 1 else next_period_start(query.end.replace(day=1), "month")
    return replace(query, granularity="month", start=query.start.replace(day=1), end=end)


def _kpi(slug: str, title: str, unit: Unit, cur: MetricResult, old: MetricResult, definition: str,
         compared: str = "") -> Kpi:
    value, previous = cur.value, old.value
    change = None if value is None or previous is None else value - previous
    change_ratio = None if change is None or not previous else change / abs(previous)
    if unit == "percent":
        change_ratio = None
    return Kpi(slug, title, unit, value, previous, change, change_ratio, cur.currency, definition, compared)


REVENUE_DIMENSIONS = ("tier", "interval", "currency", "country")
_REVENUE_MEASURES = ("gross", "refunds", "disputes_lost", "net")


def revenue_tables(engine: Engine, query: Query) -> dict[str, pd.DataFrame]:
    """Gross, refunds, disputes lost and net revenue of the range by tier, interval, currency and
    country (``revenue_by_<dim>``): in the reporting currency, or per original currency with a
    ``currency`` column. In a reporting currency they add up the same converted segment rows as
    the cash metrics (``common.converted_daily``), so each table's rows sum to the metric's value
    to the minor unit. One read serves the four tables, in plain Python."""
    if query.currency is None:
        _, first, last = source.span(query)
        rows = source.daily(engine, query, "cash", first, last, keys=GROUP_KEYS)
    else:
        rows = converted_daily(engine, query, "cash")
    # The days summed per group first (a few hundred groups instead of a row per day and group).
    groups: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        acc = groups.setdefault((r["currency"], r["tier_id"], r["interval"], r["country"]), [0, 0, 0, 0])
        for i, v in enumerate((int(r["gross"]), int(r["refunds"]), int(r["disputes_lost"]), net_amount(r))):
            acc[i] += v
    sums: dict[str, dict[tuple[Any, ...], list[int]]] = {dim: {} for dim in REVENUE_DIMENSIONS}
    if groups:
        with engine.connect() as conn:
            codes: dict[int, str] = dict(conn.execute(text("SELECT id, code FROM tiers")).all())
        for (cur, tier, interval, country), amounts in groups.items():
            keys = (codes.get(tier, "none") if pd.notna(tier) else "none", _label(interval), cur, _label(country))
            for dim, key in zip(REVENUE_DIMENSIONS, keys, strict=True):
                row_key = (key,) if query.currency is not None else (key, cur)
                acc = sums[dim].setdefault(row_key, [0, 0, 0, 0])
                for i, v in enumerate(amounts):
                    acc[i] += v
    return {f"revenue_by_{dim}": _revenue_table(sums[dim], query.currency) for dim in REVENUE_DIMENSIONS}


def _label(value: Any) -> str:
    return "none" if value is None or pd.isna(value) else str(value)


def _revenue_table(sums: dict[tuple[Any, ...], list[int]], currency: str | None) -> pd.DataFrame:
    columns = ["key", *([] if currency is not None else ["currency"]), *_REVENUE_MEASURES]
    rows = sorted((list(k) + v for k, v in sums.items()), key=lambda r: (-r[len(r) - 4], *r[:len(r) - 4]))
    return pd.DataFrame(rows, columns=columns)
