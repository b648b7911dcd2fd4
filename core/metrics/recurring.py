"""Recurring revenue: MRR, ARR, paying members, ARPU, LTV and the MRR movements."""

from __future__ import annotations

from datetime import date

import pandas as pd
from sqlalchemy import Engine

from core.metrics import source
from core.metrics.common import (
    attach,
    attach_per_currency,
    buckets_before_now,
    converted_movements,
    div_money,
    emails,
    result,
)
from core.metrics.fx import RateTable
from core.metrics.movements import unit_rows_sql
from core.metrics.registry import register
from core.metrics.types import Metric, MetricResult, Query

GROUP = "recurring"
KINDS = ("new", "reactivation", "expansion", "contraction", "churn")
GRACE = ("A past_due subscription counts until Stripe ends it, or until the past-due grace days setting "
         "expires, after which it counts as churned (involuntary).")


def movement_frame(engine: Engine, query: Query, rates: RateTable | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per original currency, converted to the reporting currency or None)."""
    mv = source.movements(engine, query)
    if query.currency is None:
        return mv, None  # type: ignore[return-value]
    return mv, converted_movements(engine, query, rates)


def _stock(slug: str, column: str, factor: int = 1, unit: str = "money"):  # type: ignore[no-untyped-def]
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        mv, conv = movement_frame(engine, query)
        last = buckets[-1].label
        by_cur = ({c: int(v) * factor for c, v in mv[mv["period"] == last].groupby("currency")[column].sum().items()}
                  if not mv.empty else {})
        if unit == "count" or query.currency is not None:
            frame = conv if (unit == "money" and conv is not None) else mv
            values = ({p: int(v) * factor for p, v in frame.groupby("period")[column].sum().items()}
                      if not frame.empty else {})
            series = attach(buckets, values)
            return result(slug, unit, values.get(last, 0), query, series, by_currency=by_cur)  # type: ignore[arg-type]
        values2 = {(p, c): int(v) * factor for (p, c), v in mv.groupby(["period", "currency"])[column].sum().items()} \
            if not mv.empty else {}
        series = attach_per_currency(buckets, values2, sorted(by_cur))
        return result(slug, unit, None, query, series, by_currency=by_cur)  # type: ignore[arg-type]
    return compute


def _arpu(engine: Engine, query: Query) -> MetricResult:
    buckets = buckets_before_now(query) or query.buckets()[:1]
    mv, conv = movement_frame(engine, query)
    last = buckets[-1].label
    by_cur: dict[str, int | float | None] = {}
    if not mv.empty:
        g = mv.groupby(["period", "currency"])[["mrr_end", "members_end"]].sum()
        for (p, c), row in g.iterrows():
            if p == last:
                by_cur[c] = div_money(int(row["mrr_end"]), int(row["members_end"]))
    if query.currency is None:
        vals = {(p, c): div_money(int(r["mrr_end"]), int(r["members_end"])) for (p, c), r in g.iterrows()} \
            if not mv.empty else {}
        return result("arpu", "money", None, query, attach_per_currency(buckets, vals, sorted(by_cur), None),
                      by_currency=by_cur)
    values: dict[date, int | None] = {}
    if conv is not None and not conv.empty:
        for _, r in conv.iterrows():
            values[r["period"]] = div_money(int(r["mrr_end"]), int(r["members_end"]))
    return result("arpu", "money", values.get(last), query, attach(buckets, values, None), by_currency=by_cur)


def _ltv(engine: Engine, query: Query) -> MetricResult:
    arpu = _arpu(engine, query)
    first_month = query.buckets()[0].label.replace(day=1)
    history = source.movements(engine, query, "month", _months_back(first_month, 6), first_month)
    rates: list[float] = []
    if not history.empty:
        g = history.groupby("period")[["members_churned", "members_start"]].sum()
        rates = [int(r["members_churned"]) / int(r["members_start"]) for _, r in g.iterrows()
                 if int(r["members_start"]) > 0]
    mean_churn = sum(rates) / 6

    def ltv(v: object) -> int | None:
        if v is None or mean_churn == 0 or pd.isna(v):  # type: ignore[call-overload]
            return None
        return int(round(int(v) / mean_churn))  # type: ignore[call-overload]

    note = "LTV is n/a: no member churn in the 6 complete months before the period." if mean_churn == 0 else None
    series = arpu.series.copy()
    series["value"] = [ltv(v) for v in series["value"]]
    out = result("ltv", "money", ltv(arpu.value), query, series,
                 by_currency={c: ltv(v) for c, v in arpu.by_currency.items()}, note=note)
    out.breakdown = pd.DataFrame({"key": ["arpu", "mean_monthly_churn"], "value": [arpu.value, mean_churn]})
    return out


def _months_back(month: date, n: int) -> date:
    idx = month.year * 12 + month.month - 1 - n
    return date(idx // 12, idx % 12 + 1, 1)


def _movement(slug: str, column: str):  # type: ignore[no-untyped-def]
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        mv, conv = movement_frame(engine, query)
        by_cur = {c: int(v) for c, v in mv.groupby("currency")[column].sum().items()} if not mv.empty else {}
        if query.currency is None:
            vals = {(p, c): int(v) for (p, c), v in mv.groupby(["period", "currency"])[column].sum().items()} \
                if not mv.empty else {}
            return result(slug, "money", None, query, attach_per_currency(buckets, vals, sorted(by_cur)),
                          by_currency=by_cur)
        values = {p: int(v) for p, v in conv.groupby("period")[column].sum().items()} if not conv.empty else {}
        return result(slug, "money", sum(values.values()), query, attach(buckets, values), by_currency=by_cur)
    return compute


def _waterfall(engine: Engine, query: Query) -> MetricResult:
    """Net MRR change; the breakdown is the waterfall start, movements, (fx), end."""
    buckets = buckets_before_now(query) or query.buckets()[:1]
    mv, conv = movement_frame(engine, query)
    frame = conv if query.currency is not None else mv
    keys = ["start", *KINDS, "end"]
    if query.currency is None:
        rows = []
        for cur, part in (mv.groupby("currency") if not mv.empty else []):
            part = part.sort_values("period")
            vals = [int(part["mrr_start"].iloc[0]), *(int(part[k].sum()) for k in KINDS), int(part["mrr_end"].iloc[-1])]
            rows += [{"key": k, "currency": cur, "value": v} for k, v in zip(keys, vals, strict=True)]
        breakdown = pd.DataFrame(rows, columns=["key", "currency", "value"])
        by_cur: dict[str, int | float | None] = {}
        vals2 = {}
        if not mv.empty:
            net = mv.assign(net=mv["new"] + mv["reactivation"] + mv["expansion"] - mv["contraction"] - mv["churn"])
            vals2 = {(p, c): int(v) for (p, c), v in net.groupby(["period", "currency"])["net"].sum().items()}
            by_cur = {c: int(v) for c, v in net.groupby("currency")["net"].sum().items()}
        return result("mrr_movements", "money", None, query, attach_per_currency(buckets, vals2, sorted(by_cur)),
                      by_currency=by_cur, breakdown=breakdown)
    if frame is None or frame.empty:
        breakdown = pd.DataFrame({"key": keys, "value": [0] * len(keys)})
        return result("mrr_movements", "money", 0, query, attach(buckets, {}), breakdown=breakdown)
    frame = frame.sort_values("period")
    start, end = int(frame["mrr_start"].iloc[0]), int(frame["mrr_end"].iloc[-1])
    moves = {k: int(frame[k].sum()) for k in KINDS}
    net = moves["new"] + moves["reactivation"] + moves["expansion"] - moves["contraction"] - moves["churn"]
    rows = [("start", start), *moves.items()]
    fx = end - start - net
    if fx:
        rows.append(("fx", fx))  # rates differ between the months of the range
    rows.append(("end", end))
    breakdown = pd.DataFrame(rows, columns=["key", "value"])
    per = frame.assign(net=frame["new"] + frame["reactivation"] + frame["expansion"] - frame["contraction"]
                       - frame["churn"])
    values = {p: int(v) for p, v in per.groupby("period")["net"].sum().items()}
    by_cur = {}
    if not mv.empty:
        n2 = mv.assign(net=mv["new"] + mv["reactivation"] + mv["expansion"] - mv["contraction"] - mv["churn"])
        by_cur = {c: int(v) for c, v in n2.groupby("currency")["net"].sum().items()}
    return result("mrr_movements", "money", net, query, attach(buckets, values), breakdown=breakdown,
                  by_currency=by_cur)


# ------------------------------------------------------------------------------------ drills

def unit_rows(engine: Engine, query: Query, period: date | None) -> pd.DataFrame:
    """Per member and currency, per bucket: MRR at start and end and the movement."""
    buckets = buckets_before_now(query)
    if period is not None:
        buckets = [b for b in buckets if b.label == period]
    cols = ["period", "member_id", "email", "currency", "tier", "interval", "country", "mrr_start_minor",
            "mrr_end_minor", "movement", "churn_kind"]
    if not buckets:
        return pd.DataFrame(columns=cols)
    now = query.now
    assert now is not None
    frames = []
    for run_ in source._contiguous(buckets):
        bounds = [min(b.start, now) for b in run_] + [min(run_[-1].end, now)]
        sql, params = unit_rows_sql(engine.dialect.name, bounds)
        from core.metrics.movements import run as run_sql

        with engine.connect() as conn:
            rows = run_sql(conn, sql, params)
        df = pd.DataFrame(rows)
        if not df.empty:
            df["period"] = [run_[int(p)].label for p in df["p"]]
            frames.append(df)
    if not frames:
        return pd.DataFrame(columns=cols)
    df = pd.concat(frames, ignore_index=True)
    df = source._pandas_filter(df, source.filter_values(engine, query))
    with engine.connect() as conn:
        from sqlalchemy import text

        tiers = dict(conn.execute(text("SELECT id, code FROM tiers")).all())
    df["tier"] = df["tier_id"].map(tiers)
    df["email"] = df["member_id"].map(emails(engine, [int(m) for m in df["member_id"].unique()]))
    return df[cols].sort_values(["period", "member_id"]).reset_index(drop=True)


def _drill(movements: tuple[str, ...] | None, paying_end: bool = False):  # type: ignore[no-untyped-def]
    def drill(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        df = unit_rows(engine, query, period)
        if paying_end:
            if period is None and not df.empty:
                df = df[df["period"] == df["period"].max()]
            df = df[df["mrr_end_minor"] > 0]
        wanted = (key,) if key else movements
        if wanted:
            df = df[df["movement"].isin(wanted) | df["churn_kind"].isin(wanted)]
        df = df.reset_index(drop=True)
        return df.head(limit) if limit else df
    return drill


register(Metric("mrr", "MRR", "money",
                "Monthly recurring revenue at the end of each period (or now): every paying subscription's "
                "price normalised to one month (yearly / 12), minus recurring discounts, tax excluded; zero while "
                "trialing, paused, unpaid or canceled. " + GRACE, _stock("mrr", "mrr_end"), _drill(None, True), GROUP))
register(Metric("arr", "ARR", "money", "Annual run rate: 12 x MRR at the end of each period.",
                _stock("arr", "mrr_end", 12), _drill(None, True), GROUP))
register(Metric("paying_members", "Paying members", "count",
                "Members with MRR above zero at the end of each period (a member paying in two currencies counts "
                "once per currency).", _stock("paying_members", "members_end", unit="count"), _drill(None, True),
                GROUP))
register(Metric("arpu", "ARPU", "money", "Average revenue per paying member: MRR / paying members, at the end of "
                "each period.", _arpu, _drill(None, True), GROUP))
register(Metric("ltv", "LTV", "money",
                "Lifetime value: ARPU / mean monthly member churn rate over the 6 complete months before the "
                "period (months without paying members count as 0); n/a when that churn is 0.", _ltv,
                _drill(None, True), GROUP))
register(Metric("mrr_movements", "Net MRR movement", "money",
                "MRR end - MRR start = new + reactivation + expansion - contraction - churn, per member comparing "
                "MRR at the start and end of each period; a range's movements are the sum of its periods'. In a "
                "reporting currency each period converts at its last month's rate (an 'fx' step closes the "
                "waterfall when rates differ).", _waterfall, _drill(KINDS), GROUP))
for _kind, _title, _text in (
        ("new", "New MRR", "MRR of members going from 0 to paying who never paid before."),
        ("reactivation", "Reactivation MRR", "MRR of members going from 0 to paying who had paid before."),
        ("expansion", "Expansion MRR", "MRR increase of members paying at both ends of the period."),
        ("contraction", "Contraction MRR", "MRR decrease of members still paying at the end of the period."),
        ("churn", "Churned MRR", "MRR at period start of members paying nothing at its end (voluntary and "
                                 "involuntary). " + GRACE)):
    register(Metric(f"mrr_{_kind}", _title, "money", _text + " Summed over the periods of the range.",
                    _movement(f"mrr_{_kind}", _kind), _drill((_kind,)), GROUP))
