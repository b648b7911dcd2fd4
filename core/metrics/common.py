"""Shared steps of the metric computations: buckets, conversion, result assembly, drill rows.

Conversion rule (see ``core.metrics.fx`` and docs/metrics.md, rule 2): the unit converted is a
segment (original currency x tier x interval x country), and every figure is a sum of converted
segment rows. Flows (payments, refunds, disputes, billed) convert each segment's running total
within a local month at the month's rate, a stretch of days being the step of it
(``converted_daily``); stocks (MRR, ARR, ARPU's MRR) convert each segment's MRR at the rate of the
month the bucket ends in, and movements are the steps of each segment's converted running total
(``convert_movements``).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, cast

from sqlalchemy import Engine, text

from core.metrics.fx import RateTable
from core.metrics.types import Columns, MetricResult, Query, Unit
from core.timeutil import Period, zone

SERIES_COLUMNS = ["period", "period_start", "period_end", "value"]


def buckets_before_now(query: Query) -> list[Period]:
    assert query.now is not None
    return [b for b in query.buckets() if b.start < query.now]


def labeler(buckets: list[Period]) -> Callable[[date], date | None]:
    """A function mapping a local date to the label of the bucket containing it (None before the
    first)."""
    labels = [b.label for b in buckets]

    def find(d: date) -> date | None:
        i = bisect.bisect_right(labels, d) - 1
        return labels[i] if i >= 0 else None

    return find


def end_month(b: Period, tz_name: str) -> date:
    """The local month a bucket ends in (its last instant), for stock conversion."""
    return (b.end - timedelta(microseconds=1)).astimezone(zone(tz_name)).date().replace(day=1)


def attach(buckets: list[Period], values: Mapping[date, object], fill: object = 0) -> Columns:
    """A series: one row per bucket (``fill`` where ``values`` has none)."""
    return {"period": [b.label for b in buckets], "period_start": [b.start for b in buckets],
            "period_end": [b.end for b in buckets], "value": [values.get(b.label, fill) for b in buckets]}


def attach_per_currency(buckets: list[Period], values: Mapping[tuple[date, str], object],
                        currencies: list[str], fill: object = 0) -> Columns:
    """A series per original currency: one row per currency and bucket."""
    pairs = [(b, cur) for cur in currencies for b in buckets]
    return {"period": [b.label for b, _ in pairs], "period_start": [b.start for b, _ in pairs],
            "period_end": [b.end for b, _ in pairs], "currency": [cur for _, cur in pairs],
            "value": [values.get((b.label, cur), fill) for b, cur in pairs]}


def table(rows: list[tuple[Any, ...]] | list[dict[str, Any]], names: list[str]) -> Columns:
    """Rows (tuples in ``names`` order, or dicts) as a small table of columns."""
    if rows and isinstance(rows[0], dict):
        return {n: [r[n] for r in rows] for n in names}
    return {n: [r[i] for r in cast("list[tuple[Any, ...]]", rows)] for i, n in enumerate(names)}


GROUP_KEYS = ("tier_id", "interval", "country")
# The money measures of the daily rollups (the others are counts, never converted).
MONEY_MEASURES = frozenset({"gross", "refunds", "disputes_lost", "fees", "billed", "recovered", "amount"})


def converted_daily(engine: Engine, query: Query, kind: str, wanted: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """The rounding rule of every money figure in a reporting currency, in one place, for flows:
    within each local month, each segment's (original currency x tier x interval x country)
    running total of a measure converts at the month's rate, rounded half to even, and a day or
    any stretch of days is the step of that converted running total. So a whole month converts
    its total once (read from the monthly rollup), a day's figure is the same in every range and
    bucket, the buckets add up to the range, day, week and month buckets give the same range
    figure, segments add up to the total to the minor unit, a filtered figure equals its
    segment's row, and every page and the command line agree. Rows as dicts (``day``: the first
    day of a stretch of one bucket and one month, ``currency``, group keys, measures), never
    changed; counts are not converted. With ``wanted``, only those measures are right (see
    ``source.daily``)."""
    from core.metrics import source
    from core.metrics.daily import KINDS

    target = query.currency
    assert target is not None

    def build() -> list[dict[str, Any]]:
        _, first, last = source.span(query)
        rows = source.daily(engine, query, kind, first, last, keys=GROUP_KEYS, wanted=wanted)
        lead = first.replace(day=1)
        # A range starting inside a month: the month's days before it start the running totals.
        before = source.daily(engine, replace(query, start=lead, end=first, granularity="month"), kind, lead, first,
                              keys=GROUP_KEYS, wanted=wanted) if lead < first else []
        rates = RateTable.load(engine)
        money = [m for m in KINDS[kind].measures if m in MONEY_MEASURES and (wanted is None or m in wanted)]
        # Per (month, segment): each measure's running total and its converted value.
        running: dict[tuple[Any, ...], list[list[int]]] = {}

        months: dict[date, date] = {}  # day -> its month, looked up once per day, not per row

        def group(r: dict[str, Any]) -> tuple[Any, ...]:
            month = months.get(r["day"])
            if month is None:
                month = months[r["day"]] = r["day"].replace(day=1)
            return (month, r["currency"], *(r[k] for k in GROUP_KEYS))

        for r in before:
            acc = running.setdefault(group(r), [[0, 0] for _ in money])
            for i, m in enumerate(money):
                acc[i][0] += int(r[m])
        converters: dict[tuple[date, str], Callable[[int], int]] = {}

        def converter(month: date, cur: str) -> Callable[[int], int]:
            c = converters.get((month, cur))
            if c is None:
                c = converters[(month, cur)] = rates.converter(cur, target, month)
            return c

        for (month, cur, *_), acc in running.items():
            for pair in acc:
                pair[1] = converter(month, cur)(pair[0]) if pair[0] else 0
        out = []
        for r in sorted(rows, key=lambda r: r["day"]):
            key = group(r)
            acc = running.setdefault(key, [[0, 0] for _ in money])
            conv = dict(r)  # counts stay as they are; money converts (zero needs no rate)
            c = None
            for i, m in enumerate(money):
                if r[m]:
                    c = c or converter(key[0], key[1])
                    pair = acc[i]
                    pair[0] += int(r[m])
                    was, pair[1] = pair[1], c(pair[0])
                    conv[m] = pair[1] - was
            out.append(conv)
        return out

    return source.memoised_measures(("converted daily", engine.url, query, kind), wanted, build)


def converted_days(engine: Engine, query: Query, kind: str, wanted: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """``converted_daily`` summed per stretch (of one bucket and one month) over the groups: what
    a flow's buckets add up."""
    from core.metrics import source

    def build() -> list[dict[str, Any]]:
        rows = converted_daily(engine, query, kind, wanted)
        if not rows:
            return []
        keep = ("day", "currency", *GROUP_KEYS)
        measures = [m for m in rows[0] if m not in keep]
        days: dict[date, dict[str, Any]] = {}
        for r in rows:
            acc = days.get(r["day"])
            if acc is None:
                days[r["day"]] = dict(r)
                continue
            for m in measures:
                acc[m] += r[m]
        return list(days.values())

    return source.memoised_measures(("converted days", engine.url, query, kind), wanted, build)


def flow_result(engine: Engine, query: Query, slug: str, kind: str,
                amount: Callable[[dict[str, Any]], int], wanted: tuple[str, ...] | None = None) -> MetricResult:
    """A money flow: ``amount`` of each rollup row of ``kind`` summed per bucket (per original
    currency, or converted by ``converted_daily``'s rule). ``amount`` is a sum of measures with
    signs (the flows of ``core.metrics.cash``): summing rows first and taking ``amount`` after
    gives the same figure, which lets a page's flows share one sum of the rows per currency.
    ``wanted``: the measures ``amount`` reads (the others' reads are skipped where they cost,
    see ``source.daily``)."""
    buckets = buckets_before_now(query) or query.buckets()[:1]
    label = labeler(buckets)
    by_cur: dict[str, int] = {}
    per_cur: dict[tuple[date, str], int] = {}
    for row in daily_by_currency(engine, query, kind, wanted):
        period = label(row["day"])
        if period is None:
            continue
        cur, value = row["currency"], amount(row)
        by_cur[cur] = by_cur.get(cur, 0) + value
        per_cur[(period, cur)] = per_cur.get((period, cur), 0) + value
    by_cur = dict(sorted(by_cur.items()))
    if query.currency is None:
        series = attach_per_currency(buckets, per_cur, list(by_cur))
        return MetricResult(slug, "money", None, None, series, by_currency=by_cur,
                            settings_used=query.settings_used())
    per: dict[date, int] = {}
    for row in converted_days(engine, query, kind, wanted):
        period = label(row["day"])
        if period is not None:
            per[period] = per.get(period, 0) + amount(row)
    series = attach(buckets, per)
    return MetricResult(slug, "money", sum(per.values()), query.currency, series, by_currency=by_cur,
                        settings_used=query.settings_used())


def daily_by_currency(engine: Engine, query: Query, kind: str, wanted: tuple[str, ...] | None = None
                      ) -> list[dict[str, Any]]:
    """The query's daily rows of ``kind`` summed per (day or stretch, original currency): what a
    flow's figures per currency add up. Worked out once per page: Revenue's six flows each summed
    the same 600 segment rows (a fifth of the page's CPU)."""
    from core.metrics import source
    from core.metrics.daily import KINDS

    def build() -> list[dict[str, Any]]:
        _, first, last = source.span(query)
        # Converting reads the segments' rows anyway: their sums per currency are the same
        # figures, without a second read of the rollup grouped by currency alone.
        keys = GROUP_KEYS if query.currency is not None else ()
        measures = KINDS[kind].measures
        out: dict[tuple[date, str], dict[str, Any]] = {}
        for r in source.daily(engine, query, kind, first, last, keys=keys, wanted=wanted):
            acc = out.get((r["day"], r["currency"]))
            if acc is None:
                out[(r["day"], r["currency"])] = {"day": r["day"], "currency": r["currency"],
                                                  **{m: r[m] for m in measures}}
            else:
                for m in measures:
                    acc[m] += r[m]
        return list(out.values())

    return source.memoised_measures(("daily by currency", engine.url, query, kind), wanted, build)


def sums_by(rows: list[dict[str, Any]], keys: tuple[str, ...], columns: tuple[str, ...]) -> dict[tuple[Any, ...], dict[str, int]]:
    """``columns`` summed per value of ``keys``, in key order."""
    sums: dict[tuple[Any, ...], list[int]] = {}
    for row in rows:
        k = tuple([row[x] for x in keys])
        vals = [int(row[c]) for c in columns]
        acc = sums.get(k)
        if acc is None:
            sums[k] = vals
        else:
            sums[k] = [a + b for a, b in zip(acc, vals, strict=True)]
    out = {k: dict(zip(columns, v, strict=True)) for k, v in sums.items()}
    return dict(sorted(out.items(), key=lambda kv: tuple((x is None, x) for x in kv[0])))  # None last


def movement_sums(engine: Engine, query: Query, keys: tuple[str, ...],
                  converted: bool = False) -> dict[tuple[Any, ...], dict[str, int]]:
    """The movement columns summed per ``keys`` (of ``period``, ``currency``): per original
    currency, or ``converted`` to the reporting currency. Worked out once per page: a dozen
    metrics read the same sums, and plain Python over a few dozen rows costs less than pandas
    grouping each time."""
    from core.metrics import source
    from core.metrics.movements import MOVEMENT_COLUMNS

    def build() -> dict[tuple[Any, ...], dict[str, int]]:
        if converted:
            return sums_by(converted_movements(engine, query), keys, MOVEMENT_COLUMNS)
        # A page with a reporting currency reads the segments' rows to convert them: their sums
        # per currency are the same figures, without a second read grouped by currency alone
        # (a currency whose segments add up to nothing is left out, as that read leaves it out).
        segments = query.currency is not None
        sums = sums_by(source.movements(engine, query, segments=segments), keys, MOVEMENT_COLUMNS)
        return {k: v for k, v in sums.items() if any(v.values())} if segments else sums

    q = query if converted else replace(query, currency=None)
    return source.memoised(("movement sums", engine.url, q, keys, converted), build)


def converted_movements(engine: Engine, query: Query, rates: RateTable | None = None) -> list[dict[str, Any]]:
    """The query's movements in its reporting currency (``convert_movements``), worked out once
    per page: several metrics of a page read the same converted frame."""
    from core.metrics import source

    return source.memoised(("converted", engine.url, query),
                           lambda: convert_movements(engine, query, source.movements(engine, query, segments=True),
                                                     rates))


def convert_movements(engine: Engine, query: Query, mv: list[dict[str, Any]], rates: RateTable | None = None) -> list[dict[str, Any]]:
    """Movement rows in the reporting currency, one per period, summed over the segment rows of
    ``mv`` (original currency x tier x interval x country), each converted on its own.

    A segment's start and end convert directly (so a converted MRR is the sum of its segments'
    converted MRRs, and a filtered MRR equals its segments'); each movement is the difference of
    the segment's converted running totals start, +new, +reactivation, +expansion, -contraction,
    -churn, +transfer in, -transfer out (= end), so the identity holds to the minor unit in every
    segment and each movement is within one minor unit of converting it alone. A transfer leaves
    one segment and enters another, each converted in its own running total: across every
    segment the converted transfers in and out can differ by a minor unit (the waterfall without
    a filter shows that difference as its "rounding" step).
    """
    from core.metrics.movements import MOVEMENT_COLUMNS

    if not mv:
        return []
    rates = rates or RateTable.load(engine)
    target = query.currency
    assert target is not None
    tz = zone(query.tz)
    steps = (("new", 1), ("reactivation", 1), ("expansion", 1), ("contraction", -1), ("churn", -1),
             ("transfer_in", 1), ("transfer_out", -1))
    counts = [c for c in MOVEMENT_COLUMNS if c.startswith("members_")]
    # Plain Python over a few rows per period: pandas column updates cost more than the query.
    out: dict[date, dict[str, Any]] = {}
    # One converter per (currency, period): rows of a period share its end's month.
    converters: dict[tuple[str, datetime], Callable[[int], int]] = {}
    for row in mv:
        cur, end = row["currency"], row["period_end"]
        c = converters.get((cur, end))
        if c is None:
            month = (end - timedelta(microseconds=1)).astimezone(tz).date().replace(day=1)
            c = converters[(cur, end)] = rates.converter(cur, target, month)
        acc = out.get(row["period"])
        if acc is None:
            acc = out[row["period"]] = {"period": row["period"], "period_start": row["period_start"],
                                        "period_end": end, "end_instant": row["end_instant"],
                                        **dict.fromkeys(MOVEMENT_COLUMNS, 0)}
        running = int(row["mrr_start"])
        prev = c(running) if running else 0
        acc["mrr_start"] += prev
        churn_c = 0
        for name, sign in steps:
            moved = row[name]
            if not moved:  # no step (most segments on most days): nothing to convert
                continue
            running += sign * int(moved)
            now_c = c(running)
            acc[name] += sign * (now_c - prev)
            if name == "churn":
                churn_c = sign * (now_c - prev)
            prev = now_c
        acc["mrr_end"] += prev
        vol = c(row["churn_voluntary"]) if row["churn_voluntary"] else 0
        acc["churn_voluntary"] += vol
        acc["churn_involuntary"] += churn_c - vol
        for col in counts:
            acc[col] += int(row[col])
    return list(out.values())


def ratio(num: int | float, den: int | float) -> float | None:
    return None if not den else float(num) / float(den)


def div_money(num: int, den: int) -> int | None:
    """Money divided by a count, rounded half to even (ARPU)."""
    if not den:
        return None
    return int((Decimal(num) / Decimal(den)).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def result(slug: str, unit: Unit, value: int | float | None, query: Query, series: Columns, **kw: Any) -> MetricResult:
    return MetricResult(slug, unit, value, query.currency if unit == "money" else None, series,
                        settings_used=query.settings_used(), **kw)


def range_bounds(query: Query, period: date | None) -> tuple[datetime, datetime]:
    """UTC bounds of one bucket (by label) or of all buckets of the query."""
    buckets = query.buckets()
    if period is not None:
        for b in buckets:
            if b.label == period:
                return b.start, b.end
        from core.metrics.types import MetricError

        raise MetricError(f"{period} is not the start of a {query.granularity} in this range.")
    return buckets[0].start, buckets[-1].end


def emails(engine: Engine, member_ids: list[int]) -> dict[int, str]:
    if not member_ids:
        return {}
    out: dict[int, str] = {}
    with engine.connect() as conn:
        for i in range(0, len(member_ids), 500):
            chunk = member_ids[i:i + 500]
            marks = ", ".join(f":m{j}" for j in range(len(chunk)))
            rows = conn.execute(text(f"SELECT id, email FROM members WHERE id IN ({marks})"),
                                {f"m{j}": m for j, m in enumerate(chunk)}).all()
            out.update({int(r[0]): r[1] for r in rows})
    return out
