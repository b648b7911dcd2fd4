"""Payment health: first-attempt failure rate, recovery rate, failed attempts by decline code,
card brand and card country, revenue at risk."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from core.metrics import drills, source, worklists
from core.metrics.churn import ratio_series
from core.metrics.common import attach, buckets_before_now, end_month, labeler, ratio, result
from core.metrics.daily import RECOVERY_WINDOW_DAYS
from core.metrics.fx import RateTable
from core.metrics.registry import register
from core.metrics.types import Metric, MetricResult, Query

if TYPE_CHECKING:
    import pandas as pd

GROUP = "health"


def _rate(slug: str, num: str, den: str, note: str | None = None):  # type: ignore[no-untyped-def]
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        _, first, last = source.span(query)
        rows = source.daily(engine, query, "payments", first, last)
        series, total_n, total_d = ratio_series(rows, buckets, num, den)
        out = result(slug, "percent", ratio(total_n, total_d), query, series, note=note)
        out.breakdown = {"key": ["numerator", "denominator"], "value": [total_n, total_d]}
        return out
    return compute


def _failures(slug: str, dim: str):  # type: ignore[no-untyped-def]
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        _, first, last = source.span(query)
        # Grouped by this metric's key in the database: the rows by every key at once (code x
        # brand x card country x group) run to hundreds of thousands a year at a million members.
        rows = source.daily(engine, query, "declines", first, last, keys=(dim,))
        label = labeler(buckets)
        values: dict[date, int] = {}
        by_key: dict[object, int] = {}
        total = 0
        for r in rows:
            n = int(r["failures"])
            total += n
            p = label(r["day"])
            if p is not None:
                values[p] = values.get(p, 0) + n
            if r[dim] is not None and r[dim] == r[dim]:  # not a missing key (None or NaN)
                by_key[r[dim]] = by_key.get(r[dim], 0) + n
        ranked = sorted(by_key.items(), key=lambda kv: (-kv[1], str(kv[0])))
        breakdown = {"key": [str(k) for k, _ in ranked], "value": [v for _, v in ranked],
                     "share": [ratio(v, total) for _, v in ranked]}
        return result(slug, "count", total, query, attach(buckets, values), breakdown=breakdown)
    return compute


def _at_risk(engine: Engine, query: Query) -> MetricResult:
    # Summed in the database over the at-risk subscriptions only (no member rows read).
    totals = worklists.at_risk_totals(engine, query)
    by_cur: dict[str, int] = {}
    for (_, c), v in totals.items():
        by_cur[c] = by_cur.get(c, 0) + v
    buckets = query.buckets()
    last = buckets[-1]
    month = end_month(last, query.tz)
    if query.currency is None:
        value = None
        keys = sorted(totals)
        breakdown = ({"key": [r for r, _ in keys], "currency": [c for _, c in keys],
                      "value": [totals[k] for k in keys]} if totals else None)
    else:
        rates = RateTable.load(engine)
        conv = {(r, c): rates.convert(v, c, query.currency, month) for (r, c), v in totals.items()}
        value = sum(conv.values())
        per_reason: dict[str, int] = {}
        for (r, _), v in sorted(conv.items()):
            per_reason[r] = per_reason.get(r, 0) + v
        breakdown = {"key": list(per_reason), "value": list(per_reason.values())}
    series = attach([last], {last.label: value})
    out = result("revenue_at_risk", "money", value, query, series, breakdown=breakdown, by_currency=by_cur,
                 note="As of now; not a time series.")
    return out


def _drill_payments(where: str):  # type: ignore[no-untyped-def]
    def drill(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        return drills.rows(engine, query, period=period, limit=limit, source="payments", where=where)
    return drill


def _drill_dim(dim_sql: str):  # type: ignore[no-untyped-def]
    def drill(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        where = "AND p.status = 'failed'"
        params = {}
        if key is not None:
            where += f" AND {dim_sql} = :key"
            params["key"] = key
        return drills.rows(engine, query, period=period, limit=limit, source="payments", where=where, params=params)
    return drill


def _drill_recovery(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
                    limit: int | None = 10_000) -> pd.DataFrame:
    from core.metrics.daily import FIRST_FAILURE, recovered_sql

    df = drills.rows(engine, query, period=period, limit=limit, source="payments", where=f"AND {FIRST_FAILURE}")
    if df.empty:
        return df
    recovered = drills.rows(engine, query, period=period, limit=limit, source="payments",
                            where=f"AND {FIRST_FAILURE} AND {recovered_sql(engine.dialect.name)}")
    df["recovered"] = df["payment_id"].isin(set(recovered["payment_id"]))
    if key in ("recovered", "not_recovered"):
        df = df[df["recovered"] == (key == "recovered")]
    return df.reset_index(drop=True)


def _drill_at_risk(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
                   limit: int | None = 10_000) -> pd.DataFrame:
    df = worklists.at_risk(engine, query)
    if key is not None:
        df = df[df["reason"] == key]
    return df.head(limit).reset_index(drop=True) if limit else df.reset_index(drop=True)


register(Metric("failure_rate", "Failure rate (first attempt)", "percent",
                "Renewal invoices whose first payment attempt failed, divided by renewal invoices whose first "
                "attempt was made in the period (by the time of that attempt).",
                _rate("failure_rate", "renewal_first_failed", "renewal_invoices"),
                _drill_payments("AND p.is_renewal = TRUE AND p.attempt_number = 1"), GROUP))
register(Metric("recovery_rate", "Recovery rate", "percent",
                f"Invoices whose first failed attempt fell in the period and that were paid within "
                f"{RECOVERY_WINDOW_DAYS} days after it, divided by all invoices whose first failed attempt fell in "
                f"the period (failures of the last {RECOVERY_WINDOW_DAYS} days can still recover).",
                _rate("recovery_rate", "recovered_invoices", "failed_invoices",
                      note=f"Recovery window: {RECOVERY_WINDOW_DAYS} days after the first failure."),
                _drill_recovery, GROUP))
register(Metric("failed_payments", "Failed payment attempts", "count",
                "Payment attempts that failed, by the time of the attempt (every retry counts).",
                _failures("failed_payments", "decline_code"), _drill_payments("AND p.status = 'failed'"), GROUP))
register(Metric("decline_codes", "Failures by decline code", "count",
                "Failed payment attempts grouped by Stripe's decline_code (its failure code when there is none).",
                _failures("decline_codes", "decline_code"),
                _drill_dim("COALESCE(p.decline_code, p.failure_code, 'unknown')"), GROUP))
register(Metric("card_brands", "Failures by card brand", "count",
                "Failed payment attempts grouped by the card brand used.",
                _failures("card_brands", "brand"), _drill_dim("COALESCE(p.card_brand, 'unknown')"), GROUP))
register(Metric("card_countries", "Failures by card country", "count",
                "Failed payment attempts grouped by the country that issued the card.",
                _failures("card_countries", "card_country"), _drill_dim("COALESCE(p.card_country, '??')"), GROUP))
register(Metric("revenue_at_risk", "Revenue at risk", "money",
                "MRR now of subscriptions that are past due (within the grace days), set to cancel at period end, "
                "or whose default card expires before the next renewal; each subscription counted once.",
                _at_risk, _drill_at_risk, GROUP, granularities=("month",)))
