"""Churn and retention: member churn (voluntary, involuntary), gross and net MRR churn, NRR,
GRR, cohort retention (members and net MRR), trial conversion, cancellations by reason.

Rates over a range of several periods are the base-weighted average of the per-period rates
(sum of numerators / sum of denominators), so they stay in [0, 1] (net MRR churn may be < 0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, text

from core.db.types import UTCDateTime
from core.metrics import source
from core.metrics.common import (
    attach,
    buckets_before_now,
    labeler,
    movement_sums,
    ratio,
    result,
    sums_by,
    table,
)
from core.metrics.fx import RateTable
from core.metrics.recurring import GRACE, _drill
from core.metrics.registry import register
from core.metrics.types import Columns, ComputeFn, Metric, MetricResult, Query
from core.timeutil import Period, periods, zone

if TYPE_CHECKING:
    import pandas as pd

GROUP = "churn"
WEIGHTED = " Over several periods: the sum of numerators over the sum of denominators."


def _period_sums(engine: Engine, query: Query, money: bool) -> dict[date, dict[str, int]]:
    """Movement columns summed per period (over currencies), once per page for all the rates.
    MRR-weighted rates need one currency: the reporting one (or the setting when per currency)."""
    if money:
        target = query.currency or query.settings.reporting_currency
        sums = movement_sums(engine, replace(query, currency=target), ("period",), converted=True)
    else:
        sums = movement_sums(engine, query, ("period",))
    return {p: v for (p,), v in sums.items()}


def _segment_filter(query: Query) -> bool:
    """A tier, interval or country filter: members can move into and out of what it selects."""
    f = query.filters
    return bool(f.tier or f.interval or f.country)


def _retained(expansion: bool) -> Callable[[dict[str, int], Query], int]:
    """NRR's (``expansion``) or GRR's numerator: the start MRR kept by the members paying at the
    start. Under a tier, interval or country filter a member who moves out of the segment is lost
    to it, as churn is (their start MRR, the transfer out); one who moves in is not counted, like
    a new member, and their price change after it is the segment's expansion or contraction, as
    in the movement identity. Without such a filter a move is internal and loses nothing."""
    def num(r: dict[str, int], query: Query) -> int:
        out = int(r["mrr_start"]) - int(r["contraction"]) - int(r["churn"])
        if expansion:
            out += int(r["expansion"])
        if _segment_filter(query):
            out -= int(r["transfer_out"])
        return out
    return num


def _rate(slug: str, money: bool, num: Callable[[dict[str, Any]], int] | None, den: Callable[[dict[str, Any]], int], *,
          asked: Callable[[dict[str, Any], Query], int] | None = None) -> ComputeFn:
    """A rate per period: ``num(row) / den(row)``, or ``asked(row, query) / den(row)`` for a
    numerator that depends on the question's filters."""
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        values: dict[date, float | None] = {}
        tn = td = 0
        for p, r in sorted(_period_sums(engine, query, money).items()):
            if asked is not None:
                n = asked(r, query)
            else:
                assert num is not None  # one of the two is given
                n = num(r)
            d = den(r)
            values[p] = ratio(n, d)
            tn, td = tn + n, td + d
        out = result(slug, "percent", ratio(tn, td), query, attach(buckets, values, None))
        out.breakdown = {"key": ["numerator", "denominator"], "value": [int(tn), int(td)]}
        return out
    return compute


def _cohorts(money: bool) -> ComputeFn:
    def compute(engine: Engine, query: Query) -> MetricResult:
        tz = zone(query.tz)
        first = query.start.replace(day=1)
        cells = source.cohorts(engine, query, first, query.end)
        cols = ["cohort", "month", "k", "base", "value", "share"]
        slug = f"cohort_{'mrr_' if money else ''}retention"
        if not cells:
            return result(slug, "percent", None, query, attach([], {}), breakdown=table([], cols))
        rates = RateTable.load(engine) if money else None
        target = query.currency or query.settings.reporting_currency
        # (cohort, month) -> [value, size]; in money, one rate per cohort (its first month), so
        # exchange rates never look like retention.
        g: dict[tuple[date, date], list[int]] = {}
        for c in cells:
            value = rates.convert(c["mrr"], c["currency"], target, c["cohort"]) if rates else c["members"]
            acc = g.setdefault((c["cohort"], c["month"]), [0, 0])
            acc[0] += value
            acc[1] += c["size"]
        base: dict[date, int] = {}
        for (co, month), (value, size) in g.items():
            if money:
                base[co] = base.get(co, 0) + (value if month == co else 0)
            else:
                base[co] = base.get(co, 0) + size
        grid = sorted(((co, m, (m.year - co.year) * 12 + m.month - co.month, base[co], value)
                       for (co, m), (value, _) in g.items() if m >= co), key=lambda r: (r[0], r[2]))
        rows = [(*r, ratio(r[4], r[3])) for r in grid]
        one = [r for r in grid if r[2] == 1]
        value = ratio(sum(r[4] for r in one), sum(r[3] for r in one)) if one else None
        month_buckets = [p for p in periods(first, query.end, "month", tz) if query.now and p.start < query.now]
        month_one: dict[date, int] = {}
        for r in one:
            month_one[r[0]] = month_one.get(r[0], 0) + r[4]
        series = attach(month_buckets, {b.label: ratio(month_one[b.label], base.get(b.label, 0))
                                        if b.label in month_one else None for b in month_buckets}, None)
        return result(slug, "percent", value, query, series, breakdown=table(rows, cols),
                      note="value = month-1 retention across the cohorts of the range; the "
                           "breakdown is the cohort table (k = months after the first).")
    return compute


_FILTER_SQL = {"tier_id": "s.tier_id", "interval": "pr.interval", "currency": "s.currency", "country": "m.country"}


def _trials_sql(engine: Engine, query: Query) -> tuple[str, dict[str, Any]]:
    f = source.filter_values(engine, query)
    where = "".join(f" AND {_FILTER_SQL[c]} = :f_{c}" for c in f)
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, s.currency, t.code AS tier, pr.interval, m.country,
       s.trial_start, s.trial_end,
       (SELECT i.status FROM invoices i WHERE i.subscription_id = s.id AND i.total > 0
          AND i.created_at >= COALESCE(s.trial_start, s.trial_end)
        ORDER BY i.created_at, i.id LIMIT 1) AS first_invoice_status
FROM subscriptions s
JOIN members m ON m.id = s.member_id
LEFT JOIN prices pr ON pr.id = s.price_id
LEFT JOIN tiers t ON t.id = s.tier_id
WHERE s.trial_end >= :start AND s.trial_end < :end AND s.trial_end <= :now{where}
ORDER BY s.trial_end"""
    return sql, {f"f_{c}": v for c, v in f.items()}


def trials(engine: Engine, query: Query, period: date | None = None) -> pd.DataFrame:
    import pandas as pd

    from core.metrics.common import range_bounds

    start, end = range_bounds(query, period)
    sql, params = _trials_sql(engine, query)
    stmt = text(sql).bindparams(*[bindparam(n, type_=UTCDateTime()) for n in ("start", "end", "now")])
    with engine.connect() as conn:
        res = conn.execute(stmt, {"start": start, "end": end, "now": query.now, **params})
        df = source.frame(res.all(), list(res.keys()))
    if not df.empty:
        df["trial_end"] = pd.to_datetime(df["trial_end"], utc=True)
        df["trial_start"] = pd.to_datetime(df["trial_start"], utc=True)
    df["converted"] = (df["first_invoice_status"] == "paid") if not df.empty else pd.Series(dtype=bool)
    return df


def ratio_series(rows: list[dict[str, Any]], buckets: list[Period], num: str, den: str) -> tuple[Columns, int, int]:
    """``num / den`` of daily rows per bucket (None where nothing was counted), and the two totals."""
    label = labeler(buckets)
    per = sums_by([{**r, "period": p} for r in rows if (p := label(r["day"])) is not None], ("period",), (num, den))
    values: dict[date, float | None] = {p: ratio(v[num], v[den]) for (p,), v in per.items()}
    return (attach(buckets, values, fill=None), sum(int(r[num]) for r in rows),
            sum(int(r[den]) for r in rows))


def _trial_conversion(engine: Engine, query: Query) -> MetricResult:
    buckets = buckets_before_now(query) or query.buckets()[:1]
    _, first, last = source.span(query)
    rows = source.bounded_daily(engine, query, "trials", first, last)
    series, converted, trials = ratio_series(rows, buckets, "converted", "trials")
    out = result("trial_conversion", "percent", ratio(converted, trials), query, series)
    out.breakdown = {"key": ["converted", "not_converted"], "value": [converted, trials - converted]}
    return out


def _drill_cohort(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
                  limit: int | None = 10_000) -> pd.DataFrame:
    """A cohort cell's members: those paying at the end of ``period`` whose first paid month is
    ``key`` (the cohort, ``YYYY-MM-DD``); without ``key``, every member paying then. A cell's
    click listed every cohort's members of that calendar month (666 rows for a cohort of 40)."""
    df = _drill(None, True)(engine, query, period=period, limit=None)
    if key and not df.empty:
        cohort = date.fromisoformat(key)
        firsts = first_paid_months(engine, query.tz, [int(m) for m in df["member_id"].unique()])
        df = df[[firsts.get((int(m), c)) == cohort for m, c in zip(df["member_id"], df["currency"], strict=True)]]
        df = df.reset_index(drop=True)
    return df.head(limit) if limit else df


def first_paid_months(engine: Engine, tz: str, member_ids: list[int]) -> dict[tuple[int, str], date]:
    """Each (member, currency)'s cohort: the local month of its first change to a paying MRR, as
    the cohort rollups define it (a member who comes back stays in that cohort)."""
    from core.metrics.daily import listed

    if not member_ids:
        return {}
    out: dict[tuple[int, str], date] = {}
    with engine.connect() as conn:
        for member, currency, first in conn.execute(text(
                "SELECT member_id, currency, MIN(effective_at) FROM membership_changes "
                f"WHERE member_id IN ({listed(sorted(member_ids))}) AND mrr_after_minor > 0 "
                "GROUP BY member_id, currency")).all():
            moment = first if isinstance(first, datetime) else datetime.fromisoformat(str(first))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            out[(int(member), currency)] = moment.astimezone(zone(tz)).date().replace(day=1)
    return out


def _drill_trials(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
                  limit: int | None = 10_000) -> pd.DataFrame:
    df = trials(engine, query, period)
    if key in ("converted", "not_converted") and not df.empty:
        df = df[df["converted"] == (key == "converted")]
    return df.head(limit).reset_index(drop=True) if limit else df.reset_index(drop=True)


def _cancellations(engine: Engine, query: Query) -> MetricResult:
    """Members who stopped paying in each period (from the movements); the breakdown counts the
    changes that ended payment in the range by reason and churn kind."""
    buckets = buckets_before_now(query) or query.buckets()[:1]
    values = {p: v["members_churned"] for (p,), v in movement_sums(engine, query, ("period",)).items()}
    return result("cancellations", "count", sum(values.values()), query, attach(buckets, values),
                  breakdown=_reasons(engine, query))


def _reasons(engine: Engine, query: Query) -> Columns:
    _, first, last = source.span(query)
    rows = source.bounded_daily(engine, query, "cancellations", first, last)
    sums = sums_by(rows, ("reason", "churn_kind"), ("changes",))
    out = sorted(((k[0], k[1], v["changes"]) for k, v in sums.items()),
                 key=lambda r: (-r[2], str(r[0]), str(r[1])))
    return table(out, ["key", "churn_kind", "value"])


# The cancellation rollup's dimensions (``daily.cancellations_select``), for a filter on its drill.
_CANCEL_FILTER_SQL = {"tier_id": "COALESCE(c.to_tier_id, c.from_tier_id)", "interval": "pr.interval",
                      "currency": "c.currency", "country": "COALESCE(c.country, m.country)"}


def cancellation_rows(engine: Engine, query: Query, period: date | None = None,
                      reason: str | None = None, limit: int | None = None) -> pd.DataFrame:
    """The changes that took a member's MRR to zero in the range (or one bucket), each with the
    reason and churn kind the "Members lost, by reason" bars count it under (the rollup's own
    expressions), optionally of one ``reason``; the first ``limit`` by time (the database stops
    there: a year of "Payment failed" at a million members is tens of thousands of rows)."""
    from core.metrics.common import range_bounds
    from core.metrics.daily import CANCELLATION_REASON, CHURN_KIND

    start, end = range_bounds(query, period)
    f = source.filter_values(engine, query)
    where = "".join(f" AND {_CANCEL_FILTER_SQL[c]} = :f_{c}" for c in f)
    sql = f"""
SELECT * FROM (
SELECT c.effective_at, c.member_id, m.email, c.subscription_id, c.currency,
       t.code AS tier, pr.interval, COALESCE(c.country, m.country) AS country, c.mrr_before_minor,
       {CANCELLATION_REASON} AS reason, {CHURN_KIND} AS churn_kind
FROM membership_changes c
JOIN members m ON m.id = c.member_id
LEFT JOIN subscriptions s ON s.id = c.subscription_id
LEFT JOIN prices pr ON pr.id = s.price_id
LEFT JOIN tiers t ON t.id = COALESCE(c.to_tier_id, c.from_tier_id)
WHERE c.effective_at >= :start AND c.effective_at < :end AND c.effective_at <= :now
  AND c.mrr_before_minor > 0 AND c.mrr_after_minor = 0{where}
) x {"WHERE reason = :reason" if reason else ""}
ORDER BY effective_at, member_id{" LIMIT :limit" if limit else ""}"""
    stmt = text(sql).bindparams(*[bindparam(n, type_=UTCDateTime()) for n in ("start", "end", "now")])
    params: dict[str, Any] = {"start": start, "end": end, "now": query.now, **{f"f_{c}": v for c, v in f.items()}}
    if reason:
        params["reason"] = reason
    if limit:
        params["limit"] = limit
    with engine.connect() as conn:
        res = conn.execute(stmt, params)
        return source.frame(res.all(), list(res.keys()))


def _drill_cancellations(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
                         limit: int | None = 10_000) -> pd.DataFrame:
    """A reason's bar: the changes counted under it. A period or the figure: the members lost
    (the movements' churn), as the line counts them. The bar listed no one: its reason was
    looked for among the movement kinds."""
    if key is None:
        return _drill(("churn",))(engine, query, period=period, key=None, limit=limit)
    return cancellation_rows(engine, query, period, key, limit)


def _n(col: str) -> Callable[[dict[str, Any]], int]:
    return lambda r: int(r[col])


_MOVED = (" Under a tier, interval or country filter, a member who moves out of the segment is lost to it "
          "(the transfer out), and one who moves in is not counted, like a new member.")


def _signed(*cols: str) -> Callable[[Mapping[str, Any]], int]:
    """The sum of ``cols`` of a row, a column named with a leading ``-`` subtracted."""
    return lambda r: sum(-int(r[c[1:]]) if c.startswith("-") else int(r[c]) for c in cols)


# slug, title, definition, in money (else members), numerator columns, denominator, drill movements
for _slug, _title, _definition, _money, _num, _den, _kinds in (
    ("member_churn_rate", "Member churn rate",
     "Members paying at the start of the period and not paying at its end, divided by members paying "
     "at its start. " + GRACE, False, ("members_churned",), "members_start", ("churn",)),
    ("voluntary_churn_rate", "Voluntary churn rate",
     "Members who stopped paying because they or staff cancelled, divided by members paying at the "
     "start of the period.", False, ("members_churned_voluntary",), "members_start", ("voluntary",)),
    ("involuntary_churn_rate", "Involuntary churn rate",
     "Members who stopped paying because payment failed (canceled or unpaid after dunning, or past "
     "the grace days), divided by members paying at the start of the period.", False,
     ("members_churned_involuntary",), "members_start", ("involuntary",)),
    ("gross_mrr_churn", "Gross MRR churn",
     "(Churned MRR + contraction) / MRR at period start, in the reporting currency.", True,
     ("churn", "contraction"), "mrr_start", ("churn", "contraction")),
    ("net_mrr_churn", "Net MRR churn",
     "(Churned MRR + contraction - expansion - reactivation) / MRR at period start; below zero when "
     "growth from existing and returning members outweighs losses.", True,
     ("churn", "contraction", "-expansion", "-reactivation"), "mrr_start",
     ("churn", "contraction", "expansion", "reactivation")),
    ("nrr", "Net revenue retention",
     "(MRR at start + expansion - contraction - churn) / MRR at start, members paying at the start "
     "only." + _MOVED, True, _retained(True), "mrr_start",
     ("churn", "contraction", "expansion", "transfer_out", "unchanged")),
    ("grr", "Gross revenue retention",
     "(MRR at start - contraction - churn) / MRR at start, members paying at the start only." + _MOVED, True,
     _retained(False), "mrr_start", ("churn", "contraction", "expansion", "transfer_out", "unchanged")),
):
    # A tuple names the numerator's columns; a function is a numerator that depends on the question.
    if isinstance(_num, tuple):
        _compute = _rate(_slug, _money, _signed(*_num), _n(_den))
    else:
        _compute = _rate(_slug, _money, None, _n(_den), asked=_num)
    register(Metric(_slug, _title, "percent", _definition + WEIGHTED, _compute, _drill(_kinds), GROUP))
register(Metric("cohort_retention", "Cohort retention (members)", "percent",
                "Cohort = month of a member's first MRR > 0 (a returning member stays in it); cell k = share of "
                "the cohort paying at the end of month k.", _cohorts(False), _drill_cohort, GROUP,
                granularities=("month",)))
register(Metric("cohort_mrr_retention", "Cohort net MRR retention", "percent",
                "Cohort MRR at the end of month k / cohort MRR at the end of its first month, each cohort "
                "converted at its first month's rate.", _cohorts(True), _drill_cohort, GROUP,
                granularities=("month",)))
register(Metric("trial_conversion", "Trial conversion", "percent",
                "Trials that ended in the period whose first invoice after the trial was paid, divided by all "
                "trials that ended in the period.", _trial_conversion, _drill_trials, GROUP))
register(Metric("cancellations", "Members lost", "count",
                "Members paying at the start of a period and not at its end, by the reason recorded when their "
                "payment stopped: the member's cancellation feedback or Stripe's cancellation reason; a pause of "
                "collection is its own reason, and a subscription left unpaid is a failed payment.", _cancellations,
                _drill_cancellations, GROUP))
