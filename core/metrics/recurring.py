"""Recurring revenue: MRR, ARR, paying members, ARPU, LTV and the MRR movements."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine

from core.metrics import source
from core.metrics.common import (
    attach,
    attach_per_currency,
    buckets_before_now,
    div_money,
    emails,
    movement_sums,
    result,
    sums_by,
    table,
)
from core.metrics.movements import unit_rows_sql
from core.metrics.registry import register
from core.metrics.types import ComputeFn, DrillFn, Metric, MetricResult, Query, Unit

if TYPE_CHECKING:
    import pandas as pd

GROUP = "recurring"
KINDS = ("new", "reactivation", "expansion", "contraction", "churn", "transfer_in", "transfer_out")
GRACE = ("A past_due subscription counts until Stripe ends it, or until the past-due grace days setting "
         "expires, after which it counts as churned (involuntary).")


PERIOD_CURRENCY = ("period", "currency")


def _stock(slug: str, column: str, factor: int = 1, unit: Unit = "money") -> ComputeFn:
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        last = buckets[-1].label
        per_cur = movement_sums(engine, query, PERIOD_CURRENCY)
        by_cur = {c: v[column] * factor for (p, c), v in per_cur.items() if p == last}
        if unit == "count" or query.currency is not None:
            per = movement_sums(engine, query, ("period",), converted=unit == "money")
            values = {p: v[column] * factor for (p,), v in per.items()}
            return result(slug, unit, values.get(last, 0), query, attach(buckets, values),
                          by_currency=by_cur)
        values2 = {(p, c): v[column] * factor for (p, c), v in per_cur.items()}
        series = attach_per_currency(buckets, values2, sorted(by_cur))
        return result(slug, unit, None, query, series, by_currency=by_cur)
    return compute


def _arpu(engine: Engine, query: Query) -> MetricResult:
    buckets = buckets_before_now(query) or query.buckets()[:1]
    last = buckets[-1].label
    per_cur = movement_sums(engine, query, PERIOD_CURRENCY)
    by_cur: dict[str, int | float | None] = {
        c: div_money(v["mrr_end"], v["members_end"]) for (p, c), v in per_cur.items() if p == last}
    if query.currency is None:
        vals = {(p, c): div_money(v["mrr_end"], v["members_end"]) for (p, c), v in per_cur.items()}
        return result("arpu", "money", None, query, attach_per_currency(buckets, vals, sorted(by_cur), None),
                      by_currency=by_cur)
    per = movement_sums(engine, query, ("period",), converted=True)
    values = {p: div_money(v["mrr_end"], v["members_end"]) for (p,), v in per.items()}
    return result("arpu", "money", values.get(last), query, attach(buckets, values, None), by_currency=by_cur)


def _ltv(engine: Engine, query: Query) -> MetricResult:
    """Each bucket's ARPU over the mean member churn of the 6 complete months before that bucket
    (the months before the one it starts in); the range's value: ARPU at its end over the churn
    of the 6 months before the range."""
    arpu = _arpu(engine, query)
    series = dict(arpu.columns("series") or {})
    months = sorted({p.replace(day=1) for p in series["period"]} | {query.buckets()[0].label.replace(day=1)})
    history = source.movements(engine, query, "month", _months_back(months[0], 6), months[-1])
    sums = sums_by(history, ("period",), ("members_churned", "members_start"))
    # A month without paying members counts as 0.
    rate = {p: v["members_churned"] / v["members_start"] for (p,), v in sums.items() if v["members_start"] > 0}

    def mean_churn(month: date) -> float:
        return sum(rate.get(_months_back(month, k), 0.0) for k in range(1, 7)) / 6

    def ltv(v: int | float | None, churn: float) -> int | None:
        if v is None or churn == 0 or v != v:  # no ARPU (None, or NaN)
            return None
        return int(round(int(v) / churn))

    range_churn = mean_churn(query.buckets()[0].label.replace(day=1))
    note = ("LTV is n/a: no member churn in the 6 complete months before the period." if range_churn == 0
            else None)
    series["value"] = [ltv(v, mean_churn(p.replace(day=1)))
                       for p, v in zip(series["period"], series["value"], strict=True)]
    out = result("ltv", "money", ltv(arpu.value, range_churn), query, series,
                 by_currency={c: ltv(v, range_churn) for c, v in arpu.by_currency.items()}, note=note)
    out.breakdown = {"key": ["arpu", "mean_monthly_churn"], "value": [arpu.value, range_churn]}
    return out


def _months_back(month: date, n: int) -> date:
    idx = month.year * 12 + month.month - 1 - n
    return date(idx // 12, idx % 12 + 1, 1)


def _by_currency(per_cur: dict[tuple[Any, ...], dict[str, int]], value: Callable[[dict[str, int]], int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for (_, c), v in per_cur.items():
        out[c] = out.get(c, 0) + value(v)
    return dict(sorted(out.items()))


def _movement(slug: str, column: str) -> ComputeFn:
    def compute(engine: Engine, query: Query) -> MetricResult:
        buckets = buckets_before_now(query) or query.buckets()[:1]
        per_cur = movement_sums(engine, query, PERIOD_CURRENCY)
        by_cur = _by_currency(per_cur, lambda v: v[column])
        if query.currency is None:
            vals = {(p, c): v[column] for (p, c), v in per_cur.items()}
            return result(slug, "money", None, query, attach_per_currency(buckets, vals, sorted(by_cur)),
                          by_currency=by_cur)
        per = movement_sums(engine, query, ("period",), converted=True)
        values = {p: v[column] for (p,), v in per.items()}
        return result(slug, "money", sum(values.values()), query, attach(buckets, values), by_currency=by_cur)
    return compute


def _net(v: dict[str, int]) -> int:
    return (v["new"] + v["reactivation"] + v["expansion"] - v["contraction"] - v["churn"]
            + v["transfer_in"] - v["transfer_out"])


def _shown(kind: str, query: Query) -> bool:
    """Transfers are waterfall steps only under a tier, interval or country filter: without one,
    every transfer out of a group is a transfer in to another, and the two cancel."""
    f = query.filters
    return not kind.startswith("transfer") or bool(f.tier or f.interval or f.country)


def _waterfall(engine: Engine, query: Query) -> MetricResult:
    """Net MRR change; the breakdown is the waterfall start, movements, (fx), end."""
    buckets = buckets_before_now(query) or query.buckets()[:1]
    keys = ["start", *KINDS, "end"]
    per_cur = movement_sums(engine, query, PERIOD_CURRENCY)
    by_cur: dict[str, int | float | None] = dict(_by_currency(per_cur, _net))
    if query.currency is None:
        periods: dict[str, list[dict[str, int]]] = {}
        for (_, c), v in per_cur.items():  # in period order
            periods.setdefault(c, []).append(v)
        rows = []
        for cur, parts in sorted(periods.items()):
            vals = [parts[0]["mrr_start"], *(sum(v[k] for v in parts) for k in KINDS), parts[-1]["mrr_end"]]
            rows += [{"key": k, "currency": cur, "value": v} for k, v in zip(keys, vals, strict=True)
                     if _shown(k, query)]
        breakdown = table(rows, ["key", "currency", "value"])
        vals2 = {(p, c): _net(v) for (p, c), v in per_cur.items()}
        return result("mrr_movements", "money", None, query, attach_per_currency(buckets, vals2, sorted(by_cur)),
                      by_currency=by_cur, breakdown=breakdown)
    per = movement_sums(engine, query, ("period",), converted=True)
    if not per:
        breakdown = {"key": keys, "value": [0] * len(keys)}
        return result("mrr_movements", "money", 0, query, attach(buckets, {}), breakdown=breakdown)
    ordered = list(per.values())
    start, end = ordered[0]["mrr_start"], ordered[-1]["mrr_end"]
    moves = {k: sum(v[k] for v in ordered) for k in KINDS}
    net = _net(moves)
    rows2: list[tuple[str, int]] = [("start", start), *((k, v) for k, v in moves.items()
                                                         if _shown(k, query))]
    rounding = moves["transfer_in"] - moves["transfer_out"]
    if rounding and not _shown("transfer_in", query):
        # Every segment converts on its own: the transfers between segments, equal in the
        # original currencies, can differ by a minor unit once converted.
        rows2.append(("rounding", rounding))
    fx = end - start - net
    if fx:
        rows2.append(("fx", fx))  # rates differ between the months of the range
    rows2.append(("end", end))
    breakdown = table(rows2, ["key", "value"])
    values = {p: _net(v) for (p,), v in per.items()}
    return result("mrr_movements", "money", net, query, attach(buckets, values), breakdown=breakdown,
                  by_currency=by_cur)


# ------------------------------------------------------------------------------------ drills

def unit_rows(engine: Engine, query: Query, period: date | None) -> pd.DataFrame:
    """Per member and currency, per bucket: MRR at start and end and the movement."""
    import pandas as pd

    buckets = buckets_before_now(query)
    if period is not None:
        buckets = [b for b in buckets if b.label == period]
    cols = ["period", "member_id", "email", "currency", "tier", "interval", "country", "mrr_start_minor",
            "mrr_end_minor", "transfer_minor", "movement", "price_change_with_move", "churn_kind"]
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
    filters = source.filter_values(engine, query)
    df = source._pandas_filter(df, filters)
    if not set(filters) & {"tier_id", "interval", "country"}:
        df = _moves_as_one_row(df)
    with engine.connect() as conn:
        from sqlalchemy import text

        tiers: dict[int, str] = dict(conn.execute(text("SELECT id, code FROM tiers")).all())
    df["tier"] = df["tier_id"].map(tiers)
    df["email"] = df["member_id"].map(emails(engine, [int(m) for m in df["member_id"].unique()]))
    return df[cols].sort_values(["period", "member_id"]).reset_index(drop=True)


def _moves_as_one_row(df: pd.DataFrame) -> pd.DataFrame:
    """Without a tier, interval or country filter a move between groups is internal (its transfers
    cancel, docs/metrics.md): one row per member, from their start MRR to their end MRR, moved to
    the group they entered. The drill listed both legs, so an upgrade read "MRR start 0.00,
    transfer in" beside a chart that counted it as an expansion."""
    import pandas as pd

    legs = df["movement"].isin(("transfer_in", "transfer_out"))
    if not legs.any():
        return df
    key = ["period", "member_id", "currency"]
    out_legs = df[df["movement"] == "transfer_out"].set_index(key)
    merged = df[df["movement"] == "transfer_in"].set_index(key)
    merged["mrr_start_minor"] = out_legs["mrr_start_minor"].reindex(merged.index)
    merged["transfer_minor"] = 0
    merged["movement"] = merged["price_change_with_move"].fillna("unchanged")
    merged["price_change_with_move"] = None
    return pd.concat([df[~legs], merged.reset_index()], ignore_index=True)


def _drill(movements: tuple[str, ...] | None, paying_end: bool = False) -> DrillFn:
    def drill(engine: Engine, query: Query, *, period: date | None = None, key: str | None = None,
              limit: int | None = 10_000) -> pd.DataFrame:
        df = unit_rows(engine, query, period)
        if paying_end:
            if period is None and not df.empty:
                df = df[df["period"] == df["period"].max()]
            df = df[df["mrr_end_minor"] > 0]
        wanted = (key,) if key else movements
        if wanted:
            # A member who moved between groups and changed price is a transfer in and an
            # expansion or contraction (``price_change_with_move``).
            df = df[df["movement"].isin(wanted) | df["churn_kind"].isin(wanted)
                    | df["price_change_with_move"].isin(wanted)]
        df = df.reset_index(drop=True)
        if not df["price_change_with_move"].notna().any():
            # Filled only for a move into a filtered segment: an empty "Change" column beside every
            # new member and churn read as a difference of MRR that summed to nothing.
            df = df.drop(columns="price_change_with_move")
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
                "period: each point uses the months before its own period, the range's figure those before the "
                "range (months without paying members count as 0); n/a when that churn is 0.", _ltv,
                _drill(None, True), GROUP))
register(Metric("mrr_movements", "Net MRR movement", "money",
                "MRR end - MRR start = new + reactivation + expansion - contraction - churn + transfer in - "
                "transfer out, per member comparing MRR at the start and end of each period (a transfer: a member "
                "moving between the tiers, intervals or countries a filter selects); a range's movements are the "
                "sum of its periods'. In a "
                "reporting currency each period converts at its last month's rate: an 'Exchange rates' step "
                "closes the waterfall when rates differ between its months, and a 'Rounding' step of a few "
                "cents when members' transfers between tiers, intervals or countries, equal in their own "
                "currencies, differ once each side is converted.", _waterfall, _drill(KINDS), GROUP))
for _kind, _title, _text in (
        ("new", "New MRR", "MRR of members going from 0 to paying who never paid before."),
        ("reactivation", "Reactivation MRR", "MRR of members going from 0 to paying who had paid before."),
        ("expansion", "Expansion MRR", "MRR increase of members paying at both ends of the period."),
        ("contraction", "Contraction MRR", "MRR decrease of members still paying at the end of the period."),
        ("churn", "Churned MRR", "MRR at period start of members paying nothing at its end (voluntary and "
                                 "involuntary). " + GRACE),
        ("transfer_in", "Transferred-in MRR", "Start MRR of members paying at both ends of the period who entered "
                                              "the selected tier, interval or country from another (their price "
                                              "change after it is expansion or contraction). Without a tier, "
                                              "interval or country filter it equals transferred-out MRR."),
        ("transfer_out", "Transferred-out MRR", "Start MRR of members paying at both ends of the period who left "
                                                "the selected tier, interval or country for another. Without a tier, "
                                                "interval or country filter it equals transferred-in MRR.")):
    register(Metric(f"mrr_{_kind}", _title, "money", _text + " Summed over the periods of the range.",
                    _movement(f"mrr_{_kind}", _kind), _drill((_kind,)), GROUP))
