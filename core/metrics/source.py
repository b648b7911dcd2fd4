"""Where the numbers come from: the rollup tables when they match the question (business time
zone, grace days and week start they were built with), otherwise the same computation over the
raw rows. The readers return small aggregated rows as dicts; raw payments never reach pandas.
pandas is imported only on the raw-rows path (a question the rollups cannot answer): the rollup
path, and so the command line's export, never loads it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select, text

from core.metrics import memo, rollups
from core.metrics.daily import (
    CHURN_SELECTS,
    KINDS,
    Days,
    attempts_select,
    cash_selects,
    declines_select,
    recovery_select,
    statement,
)
from core.metrics.movements import MOVEMENT_COLUMNS, cohort_sql, movements_sql, run
from core.metrics.types import Query
from core.models import Tier
from core.timeutil import Period, clipped_periods, is_whole, next_period_start, periods, zone

if TYPE_CHECKING:
    import pandas as pd

FILTER_COLUMNS = ("tier_id", "interval", "currency", "country")


_raw_only: ContextVar[bool] = ContextVar("metrics_raw_only", default=False)


@contextlib.contextmanager
def raw_rows() -> Iterator[None]:
    """Within the block, answer from the raw rows even when the rollups match (tests compare the
    two paths; the benchmark measures both)."""
    token = _raw_only.set(True)
    try:
        yield
    finally:
        _raw_only.reset(token)


def memoised(key: tuple, fn):  # type: ignore[no-untyped-def]
    """``memo.memoised`` apart for the raw-rows path (the same question, answered from other rows)."""
    return memo.memoised((*key, _raw_only.get()), fn)


def _state(engine: Engine) -> rollups.State | None:
    return memo.memoised(("rollup state", engine.url), lambda: rollups.state(engine))


def frame(rows, columns: list[str]) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """A DataFrame of result rows, made from plain tuples: handed SQLAlchemy ``Row`` objects,
    pandas probes every row for attributes (more time than the query at a year of days)."""
    import pandas as pd

    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _as_date(value: object) -> date:
    """A day as the driver hands it back: PostgreSQL a date, SQLite text (pandas a Timestamp)."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _sum_rows(rows, days: tuple[str, ...], keys: tuple[str, ...],  # type: ignore[no-untyped-def]
              measures: tuple[str, ...]) -> list[dict]:
    """Aggregate result rows (day columns, keys, measures) as dicts: days become dates and
    measures ints (a SUM over no rows is 0). Readers sum these few hundred rows in plain Python,
    where each pandas step would cost more than the query."""
    n = len(days) + len(keys)
    names = (*days, *keys, *measures)
    return [dict(zip(names, (*(_as_date(x) for x in r[:len(days)]), *r[len(days):n],
                             *(int(x or 0) for x in r[n:])), strict=True)) for r in rows]


def filter_values(engine: Engine, query: Query) -> dict[str, object]:
    """Filter column -> value (tier code resolved to its id; an unknown tier matches nothing)."""
    f = query.filters
    out: dict[str, object] = {}
    if f.tier:
        with engine.connect() as conn:
            tid = conn.execute(select(Tier.id).where(Tier.code == f.tier)).scalar()
        out["tier_id"] = tid if tid is not None else -1
    if f.interval:
        out["interval"] = f.interval
    if f.currency:
        out["currency"] = f.currency.upper()
    if f.country:
        out["country"] = f.country.upper()
    return out


def _where(filters: dict[str, object], alias: str = "") -> str:
    return "".join(f" AND {alias}{col} = :f_{col}" for col in filters)


def _params(filters: dict[str, object]) -> dict[str, object]:
    return {f"f_{col}": v for col, v in filters.items()}


def _pandas_filter(df: pd.DataFrame, filters: dict[str, object]) -> pd.DataFrame:
    for col, value in filters.items():
        df = df[df[col] == value]
    return df


def ensure_built(engine: Engine, query: Query) -> rollups.State:
    """The MRR segments must reflect the grace days in force: build the rollups when they were
    never built or a settings change marked them stale (the first answer after it pays the
    rebuild)."""
    st = _state(engine)
    if st is None or st.grace_days != query.settings.past_due_grace_days:
        rollups.refresh(engine, now=query.now)
        memo.forget(("rollup state", engine.url))
        st = _state(engine)
        assert st is not None
    return st


def usable_state(engine: Engine, query: Query) -> rollups.State | None:
    if _raw_only.get():
        return None
    st = _state(engine)
    if st is None or not st.matches(query.tz, query.settings):
        return None
    return st


def span(query: Query) -> tuple[list[Period], date, date]:
    """The buckets of the query and the local days they cover (the range: buckets are cut to it)."""
    buckets = query.buckets()
    return buckets, buckets[0].label, buckets[-1].end.astimezone(zone(query.tz)).date()


# ------------------------------------------------------------------------------------- daily

def daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date,
          keys: tuple[str, ...] = ()) -> list[dict]:
    """Daily sums (``day``, ``currency``, keys..., measures...) of ``kind`` (cash, payments,
    declines) over local days ``[first, last_exclusive)``, filters applied. Rows as dicts, shared
    by the metrics of a page: read them, never change them."""
    return memoised(("daily", engine.url, query, kind, first, last_exclusive, keys),
                     lambda: _daily(engine, query, kind, first, last_exclusive, keys))


def _daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date,
           keys: tuple[str, ...] = ()) -> list[dict]:
    measures = KINDS[kind].measures
    filters = filter_values(engine, query)
    group = ("day", "currency", *keys)
    if usable_state(engine, query) is not None:
        sql, params = _rollup_sql(engine.dialect.name, query, kind, first, last_exclusive, keys, filters)
        with engine.connect() as conn:
            rows = conn.execute(text(sql), params).all()
        return _sum_rows(rows, ("day",), group[1:], measures)
    df = _raw_daily(engine, query, kind, first, last_exclusive)
    df = _pandas_filter(df, filters)
    if df.empty:
        return []
    df = df.groupby(list(group), dropna=False, as_index=False)[list(measures)].sum()
    return _sum_rows(df[[*group, *measures]].itertuples(index=False, name=None), ("day",), group[1:], measures)


def _rollup_sql(dialect: str, query: Query, kind: str, first: date, last_exclusive: date,
                keys: tuple[str, ...], filters: dict[str, object]) -> tuple[str, dict]:
    """The rollup read of ``_daily`` and ``_bounded_daily``: whole months from the monthly sums,
    the other days (a partial month, week buckets, day granularity) from the daily rows."""
    k = KINDS[kind]
    cols = ("currency", *keys)
    params: dict = _params(filters)
    if query.granularity == "day":
        return _days_sql(dialect, query, k.daily, cols, k.measures, [(first, last_exclusive)], [], filters,
                         params), params
    starts = _slices(query, first, last_exclusive)
    stretches = list(zip(starts, [*starts[1:], last_exclusive], strict=True))
    whole = [a for a, b in stretches if a.day == 1 and b == next_period_start(a, "month")]
    rest: list[tuple[date, date]] = []
    for a, b in stretches:
        if a in whole:
            continue
        if rest and rest[-1][1] == a:  # adjacent stretches read as one range
            rest[-1] = (rest[-1][0], b)
        else:
            rest.append((a, b))
    parts = []
    if whole:
        params.update({f"w{i}": m for i, m in enumerate(whole)})
        marks = ", ".join(f":w{i}" for i in range(len(whole)))
        sums = ", ".join(f"SUM({m}) AS {m}" for m in k.measures)
        parts.append(f"SELECT month AS day, {', '.join(cols)}, {sums} FROM {k.monthly} WHERE month IN ({marks})"
                     f"{_where(filters)} GROUP BY {', '.join(str(i + 1) for i in range(1 + len(cols)))}")
    if rest:
        parts.append(_days_sql(dialect, query, k.daily, cols, k.measures, rest, starts, filters, params))
    return " UNION ALL ".join(parts), params


def _days_sql(dialect: str, query: Query, table: str, cols: tuple[str, ...], measures: tuple[str, ...],
              ranges: list[tuple[date, date]], starts: list[date], filters: dict[str, object],
              params: dict) -> str:
    """SELECT day, cols..., SUM(measures)... of a daily rollup over day ranges ``[a, b)``, each day
    summed up to the stretch of ``starts`` it falls in (one bucket and one month: every reader
    groups by bucket and converts by month), or kept per day at day granularity. Adds its
    parameters to ``params``."""
    day = "day" if query.granularity == "day" else _slice_sql(dialect, starts)
    conds = []
    for a, b in ranges:
        n = len(params)
        params[f"d{n}"], params[f"d{n + 1}"] = a, b
        conds.append(f"(day >= :d{n} AND day < :d{n + 1})")
    sums = ", ".join(f"SUM({m}) AS {m}" for m in measures)
    return (f"SELECT {day} AS day, {', '.join(cols)}, {sums} FROM {table} WHERE ({' OR '.join(conds)})"
            f"{_where(filters)} GROUP BY {', '.join(str(i + 1) for i in range(1 + len(cols)))}")


def _slices(query: Query, first: date, last_exclusive: date) -> list[date]:
    """Start days of the stretches in which every day has the same bucket and the same month:
    every reader of the daily frames groups by bucket and converts by month, so the rollup's
    days are summed up to these stretches in the database (a dozen rows a year instead of 365)."""
    starts = {first} | {b.label for b in query.buckets() if first <= b.label < last_exclusive}
    month = first.replace(day=1)
    while month < last_exclusive:
        if month >= first:
            starts.add(month)
        month = next_period_start(month, "month")
    return sorted(starts)


def _slice_sql(dialect: str, starts: list[date]) -> str:
    """SQL mapping ``day`` to the start of its stretch (dates we computed, spelled inline)."""
    spell = "DATE '{}'" if dialect == "postgresql" else "'{}'"
    if len(starts) == 1:
        return spell.format(starts[0].isoformat())
    whens = " ".join(f"WHEN day < {spell.format(nxt.isoformat())} THEN {spell.format(cur.isoformat())}"
                     for cur, nxt in zip(starts, starts[1:], strict=False))
    return f"CASE {whens} ELSE {spell.format(starts[-1].isoformat())} END"


def _raw_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> pd.DataFrame:
    import pandas as pd

    days = Days(engine.dialect.name, zone(query.tz), first, last_exclusive)
    if kind == "cash":
        selects = cash_selects(days)
    elif kind == "payments":
        selects = [attempts_select(days), recovery_select(days)]
    else:
        selects = [declines_select(days)]
    frames = []
    with engine.connect() as conn:
        for measures, sql in selects:
            rows = conn.execute(statement(sql), days.params()).all()
            frames.append(frame(rows, ["day", "currency", "tier_id", "interval", "country", *measures]))
    measures = [c for f in frames for c in f.columns[5:]]
    nonempty = [f for f in frames if not f.empty]
    df = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=[*frames[0].columns[:5]])
    for c in measures:
        df[c] = df[c].fillna(0) if c in df.columns else 0
    return df


# ------------------------------------------------------------------- trials and cancellations

def bounded_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> list[dict]:
    """Daily sums (``day``, ``currency``, keys..., measures...) of trials that ended at or before
    ``now`` (``trials``, ``converted``) or of cancellations effective before it (``reason``,
    ``churn_kind``, ``changes``) over local days ``[first, last_exclusive)``, filters applied.
    Whole days before the one containing ``now`` come from the rollup when it matches the
    question; that day (and every day of any other question) from the rows."""
    return memoised(("bounded", engine.url, query, kind, first, last_exclusive),
                     lambda: _bounded_daily(engine, query, kind, first, last_exclusive))


def _bounded_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> list[dict]:
    keys, measures, select_fn = KINDS[kind].keys, KINDS[kind].measures, CHURN_SELECTS[kind]
    filters = filter_values(engine, query)
    group = ["day", "currency", *keys]
    tz = zone(query.tz)
    assert query.now is not None
    now_day = query.now.astimezone(tz).date()
    rows: list[tuple] = []
    raw_from = first
    if usable_state(engine, query) is not None:
        upto = min(last_exclusive, now_day)
        if upto > first:
            sql, params = _rollup_sql(engine.dialect.name, query, kind, first, upto, keys, filters)
            with engine.connect() as conn:
                rows += [tuple(r) for r in conn.execute(text(sql), params)]
        raw_from = max(first, upto)
    raw_to = min(last_exclusive, now_day + timedelta(days=1))  # nothing counts after now
    if raw_from < raw_to:
        days = Days(engine.dialect.name, tz, raw_from, raw_to)
        _, sql = select_fn(days, bounded=True)
        names = ["day", "currency", "tier_id", "interval", "country", *keys, *measures]
        pick = [names.index(c) for c in (*group, *measures)]
        wanted = [(names.index(c), v) for c, v in filters.items()]
        with engine.connect() as conn:
            for r in conn.execute(statement(sql), {**days.params(), "until": query.now}):
                if all(r[i] == v for i, v in wanted):
                    rows.append(tuple(r[i] for i in pick))
    # The rollup's days and today's rows summed per (day, group) in plain Python.
    sums: dict[tuple, list[int]] = {}
    for r in rows:
        k = (_as_date(r[0]), *r[1:len(group)])
        acc = sums.setdefault(k, [0] * len(measures))
        for i, v in enumerate(r[len(group):]):
            acc[i] += int(v or 0)
    return _sum_rows([(*k, *v) for k, v in sorted(sums.items(), key=lambda kv: tuple(map(str, kv[0])))],
                     ("day",), tuple(group[1:]), measures)


# --------------------------------------------------------------------------------- movements

def movements(engine: Engine, query: Query, granularity: str | None = None,
              first: date | None = None, last_exclusive: date | None = None) -> list[dict]:
    """MRR movements per bucket and original currency: ``period``, ``period_start``,
    ``period_end``, ``end_instant`` (the boundary used: period end or ``now``), ``currency`` and
    MOVEMENT_COLUMNS, as dicts shared by the metrics of a page (never change them). Buckets
    starting at or after ``now`` are left out."""
    # Keyed without the reporting currency: the frame is per original currency.
    return memoised(("movements", engine.url, replace(query, currency=None), granularity, first, last_exclusive),
                     lambda: _movements(engine, query, granularity, first, last_exclusive))


def _movements(engine: Engine, query: Query, granularity: str | None = None,
               first: date | None = None, last_exclusive: date | None = None) -> list[dict]:
    gran = granularity or query.granularity
    buckets = clipped_periods(first or query.start, last_exclusive or query.end, gran, zone(query.tz),
                              query.settings.week_start_index)
    now = query.now
    assert now is not None
    buckets = [b for b in buckets if b.start < now]
    cols = ["period", "period_start", "period_end", "end_instant", "currency", *MOVEMENT_COLUMNS]
    if not buckets:
        return []
    filters = filter_values(engine, query)
    ensure_built(engine, query)
    st = usable_state(engine, query) if gran in ("month", "week") else None
    from_rollup: list[Period] = []
    raw: list[Period] = []
    for b in buckets:
        # A bucket cut by the range ends is not a row of the rollup: it is read from the segments.
        if st is not None and is_whole(b, gran, zone(query.tz), query.settings.week_start_index) and (
                min(b.end, now) == min(b.end, st.now) or now > st.now):
            from_rollup.append(b)
        else:
            raw.append(b)
    # Plain tuples, one frame at the end: a dozen rows per currency, where pandas column steps
    # would cost more than the query.
    meta = {b.label: b for b in buckets}
    sums: dict[tuple[date, str], list[int]] = {}

    def add(period: date, currency: str, values) -> None:  # type: ignore[no-untyped-def]
        acc = sums.setdefault((period, currency), [0] * len(MOVEMENT_COLUMNS))
        for i, v in enumerate(values):
            acc[i] += int(v or 0)

    if from_rollup:
        cols_sql = ", ".join(f"SUM({c}) AS {c}" for c in MOVEMENT_COLUMNS)
        labels = {b.label.isoformat(): b.label for b in from_rollup}
        sql = (f"SELECT period, currency, {cols_sql} FROM metrics_mrr_periods WHERE granularity = :g "
               f"AND period >= :a AND period <= :b{_where(filters)} GROUP BY period, currency")
        with engine.connect() as conn:
            rows = conn.execute(text(sql), {"g": gran, "a": from_rollup[0].label, "b": from_rollup[-1].label,
                                            **_params(filters)}).all()
        for period, currency, *values in rows:
            label = labels.get(str(period)[:10])
            if label is not None:
                add(label, currency, values)
    for run_ in _contiguous(raw):
        bounds = [min(b.start, now) for b in run_] + [min(run_[-1].end, now)]
        sql, params = movements_sql(engine.dialect.name, bounds)
        with engine.connect() as conn:
            rows = run(conn, sql, params)
        for row in rows:  # mappings: p, currency, tier_id, interval, country, movements
            if all(row[col] == value for col, value in filters.items()):
                add(run_[int(row["p"])].label, row["currency"], [row[c] for c in MOVEMENT_COLUMNS])
    return [dict(zip(cols, (period, meta[period].start, meta[period].end, min(meta[period].end, now), currency,
                            *values), strict=True))
            for (period, currency), values in sorted(sums.items())]


def _contiguous(buckets: list[Period]) -> list[list[Period]]:
    runs: list[list[Period]] = []
    for b in buckets:
        if runs and runs[-1][-1].end == b.start:
            runs[-1].append(b)
        else:
            runs.append([b])
    return runs


def bucket_labels(query: Query) -> list[Period]:
    return [b for b in query.buckets() if query.now is None or b.start < query.now]


# ----------------------------------------------------------------------------------- cohorts

def cohorts(engine: Engine, query: Query, first: date, last_exclusive: date) -> list[dict]:
    """Cohort cells for cohorts whose month is in ``[first, last_exclusive)``, observed through
    ``now``: ``cohort``, ``month``, ``currency``, ``members``, ``mrr``, ``size``, as dicts shared
    by the metrics of a page (both cohort metrics read them; never change them)."""
    # Keyed without the reporting currency: the cells are per original currency.
    return memoised(("cohorts", engine.url, replace(query, currency=None), first, last_exclusive),
                    lambda: _cohorts(engine, query, first, last_exclusive))


def _cohorts(engine: Engine, query: Query, first: date, last_exclusive: date) -> list[dict]:
    filters = filter_values(engine, query)
    cols = ["cohort", "month", "currency", "members", "mrr", "size"]
    now = query.now
    assert now is not None
    ensure_built(engine, query)
    if usable_state(engine, query) is not None:
        sql = ("SELECT cohort, month, currency, SUM(members), SUM(mrr), SUM(size) FROM metrics_cohorts "
               f"WHERE cohort >= :a AND cohort < :b{_where(filters)} GROUP BY cohort, month, currency")
        with engine.connect() as conn:
            rows = conn.execute(text(sql), {"a": first, "b": last_exclusive, **_params(filters)}).all()
        return _sum_rows(rows, ("cohort", "month"), ("currency",), ("members", "mrr", "size"))
    tz = zone(query.tz)
    last_day = now.astimezone(tz).date() + timedelta(days=1)
    months = [p for p in periods(first, max(last_day, first + timedelta(days=1)), "month", tz) if p.start < now]
    bounds: list[datetime] = [p.start for p in months] + [min(months[-1].end, now)]
    sql, params = cohort_sql(engine.dialect.name, bounds)
    import pandas as pd

    with engine.connect() as conn:
        rows = run(conn, sql, params)
    df = pd.DataFrame(rows, columns=["cohort", "p", "currency", "tier_id", "interval", "country", "members",
                                     "mrr", "size"])
    df = _pandas_filter(df, filters)
    df["month"] = [months[int(p)].label for p in df["p"]]
    df["cohort"] = [months[int(c)].label for c in df["cohort"]]
    df = df[df["cohort"] < last_exclusive]
    if df.empty:
        return []
    df = df.groupby(["cohort", "month", "currency"], as_index=False)[["members", "mrr", "size"]].sum()
    return _sum_rows(df[cols].itertuples(index=False, name=None), ("cohort", "month"), ("currency",),
                     ("members", "mrr", "size"))
