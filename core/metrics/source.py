"""Where the numbers come from: the rollup tables when they match the question (business time
zone, grace days and week start they were built with), otherwise the same computation over the
raw rows. The readers return small aggregated rows as dicts; raw payments never reach pandas.
pandas is imported only on the raw-rows path (a question the rollups cannot answer): the rollup
path, and so the command line's export, never loads it.

Reads never write. The rollups hold everything up to their last refresh's ``now``; a question
asked at any other instant (the present minute, a pinned past) adds the tail: the payments,
refunds and disputes since that instant, read through their time indexes, and the MRR movements
of the few members whose segments start or end in between (``core.metrics.period_delta``). The
sync, the change service and the command line bring the rollups up to date (the background
``core.metrics.refresher``); a reader that finds them behind or missing says so (``status``) and
answers from what is there, or from the raw rows when they were never built for its question.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sqlalchemy import Connection, Engine, select, text

from core.metrics import memo, period_delta, rollups, sweep
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
from core.timeutil import (
    Period,
    clipped_periods,
    is_whole,
    local_midnight,
    next_period_start,
    period_start,
    periods,
    zone,
)

T = TypeVar("T")

if TYPE_CHECKING:
    import pandas as pd

FILTER_COLUMNS = ("tier_id", "interval", "currency", "country")
# A segment: the finest group every figure is a sum of (and the unit a reporting currency converts).
SEGMENT = ("currency", "tier_id", "interval", "country")


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


def memoised(key: tuple[Any, ...], fn: Callable[[], T]) -> T:
    """``memo.memoised`` apart for the raw-rows path (the same question, answered from other rows)."""
    return memo.memoised((*key, _raw_only.get()), fn)


def memoised_measures(key: tuple[Any, ...], wanted: tuple[str, ...] | None, fn: Callable[[], T]) -> T:
    """``memoised`` for a read whose ``wanted`` measures alone are right (``daily``): when the page
    has already read every measure of the same rows, that answer serves (Revenue's net revenue
    asked again for the gross, refunds and disputes its other flows had read and converted)."""
    if wanted is not None:
        found = memo.held((*key, None, _raw_only.get()))
        if found is not memo.MISSING:
            return cast(T, found)
    return memoised((*key, wanted), fn)


def fetched(conn: Connection, sql: str, params: dict[str, Any], *, raw: bool = False) -> list[tuple[Any, ...]]:
    """The rows of one read, read once per page: the same rollup or tail read feeds readers that
    group or pick its rows differently (a page's per-currency and per-segment figures, a metric
    asking for some measures only). ``raw``: ``sql`` is a ``daily.statement`` (raw rows' SQL)."""
    key = ("rows", conn.engine.url, sql, tuple(sorted(params.items())))
    # ``all()``: one fetch of every row, where iterating the result fetched them one call each.
    return memoised(key, lambda: [tuple(r) for r in conn.execute(statement(sql) if raw else text(sql), params).all()])


def _state(engine: Engine) -> rollups.State | None:
    return memo.memoised(("rollup state", engine.url), lambda: rollups.state(engine))


def frame(rows: Iterable[Sequence[Any]], columns: list[str]) -> pd.DataFrame:
    """A DataFrame of result rows, made from plain tuples: handed SQLAlchemy ``Row`` objects,
    pandas probes every row for attributes (more time than the query at a year of days)."""
    import pandas as pd

    return pd.DataFrame([tuple(r) for r in rows], columns=columns)


def _as_date(value: object) -> date:
    """A day as the driver hands it back: PostgreSQL a date, SQLite text (pandas a Timestamp)."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _sum_rows(rows: Iterable[Sequence[Any]], days: tuple[str, ...], keys: tuple[str, ...],
              measures: tuple[str, ...]) -> list[dict[str, Any]]:
    """Aggregate result rows (day columns, keys, measures) as dicts: days become dates and
    measures ints (a SUM over no rows is 0). Readers sum these few hundred rows in plain Python,
    where each pandas step would cost more than the query. A plain loop, without two generators
    per row: a Revenue visit turns its rollup rows into dicts several times."""
    nd, n = len(days), len(days) + len(keys)
    names = (*days, *keys, *measures)
    out = []
    for r in rows:
        vals = list(r)
        for i in range(nd):
            if type(vals[i]) is not date:  # PostgreSQL hands dates back; SQLite text
                vals[i] = _as_date(vals[i])
        for i in range(n, len(vals)):
            vals[i] = int(vals[i]) if vals[i] else 0
        out.append(dict(zip(names, vals, strict=True)))
    return out


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


@dataclass(frozen=True)
class Freshness:
    """What a page can say about the numbers it shows: from the rollups refreshed up to
    ``through`` (``behind`` before the question's ``now``; the tail since then is read from the
    rows), or from the raw rows because the rollups are missing, stale after a settings change,
    or built for another time zone (``reason``)."""

    from_rollups: bool
    through: datetime | None
    behind: timedelta | None
    reason: str | None = None

    def sentence(self, tz: str = "UTC") -> str:
        """The sentence a page shows, its time in ``tz`` (the business time zone, as every other
        time on the page)."""
        if self.from_rollups:
            assert self.through is not None and self.behind is not None
            minutes = max(0, int(self.behind.total_seconds() // 60))
            lag = "up to date" if minutes < 1 else f"{_span(minutes)} behind"
            return (f"Numbers from the metric rollups, refreshed {self.through.astimezone(zone(tz)):%Y-%m-%d %H:%M} "
                    f"{tz} ({lag}), plus the rows written since.")
        return f"Numbers computed from the raw rows: {self.reason}"


def _span(minutes: int) -> str:
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} days"


def status(engine: Engine, query: Query) -> Freshness:
    """How the numbers of ``query`` are answered and how far behind the rollups are (a read)."""
    st = _state(engine)
    assert query.now is not None
    if st is None:
        built, grace = rollups.segments_grace_days(engine)
        if built and grace != query.settings.past_due_grace_days:
            # The segments MRR and churn read are cut by the grace days they were built with: until
            # the rebuild, those figures are the previous setting's (a page said "a settings change
            # is being applied" over the old figures, and nothing said which).
            was = "until Stripe ends them" if grace is None else f"after {grace} days"
            return Freshness(False, None, None, "a settings change is being applied; they are rebuilt in the "
                                                "background (minutes at a million members). Until then MRR, churn "
                                                f"and retention still count past-due members as the previous grace "
                                                f"days did (lost {was}).")
        return Freshness(False, None, None, "the metric rollups are not built yet, or a settings change is being "
                                            "applied; they are rebuilt in the background.")
    if not st.matches(query.tz, query.settings):
        why = ("they are being rebuilt in the background." if st.tz == query.tz and st.version == rollups.VERSION
               else f"they are kept for {st.tz}.")
        return Freshness(False, st.now, None, f"the metric rollups do not match this question ({why})")
    return Freshness(True, st.now, query.now - st.now)


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
          keys: tuple[str, ...] = (), *, wanted: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """Daily sums (``day``, ``currency``, keys..., measures...) of ``kind`` (cash, payments,
    declines) over local days ``[first, last_exclusive)``, filters applied. Rows as dicts, shared
    by the metrics of a page: read them, never change them. With ``wanted``, only those measures
    are right (the others may lack the tail): the tail skips the reads that feed none of them
    (billed, by invoice finalization time, has no index to read a few minutes through)."""
    return memoised_measures(("daily", engine.url, query, kind, first, last_exclusive, keys), wanted,
                             lambda: _daily(engine, query, kind, first, last_exclusive, keys, wanted))


def _daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date,
           keys: tuple[str, ...] = (), wanted: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    measures = KINDS[kind].measures
    filters = filter_values(engine, query)
    group = ("day", "currency", *keys)
    st = usable_state(engine, query)
    now = query.now
    assert now is not None
    tz = zone(query.tz)
    # Nothing at or after ``now`` counts: a question pinned in the past (the same part of a
    # previous period) reads the day containing it from the rows before it.
    last_exclusive = max(first, min(last_exclusive, now.astimezone(tz).date() + timedelta(days=1)))
    if st is not None:
        # The rollup's days, up to the one containing the earlier of its ``now`` and the question's,
        # plus the rows since then.
        upto, since, sign = last_exclusive, st.now, 1
        tail_query = query
        if now < st.now:
            # A question about an earlier moment (the previous period of a card): the stored days
            # before the one containing it, plus that day's rows up to it; or, nearer the day's
            # end, the stored days through it less its rows from ``now`` on (half a day at most).
            now_day = now.astimezone(tz).date()
            upto, since = min(last_exclusive, now_day), local_midnight(min(last_exclusive, now_day), tz)
            day_end = local_midnight(now_day + timedelta(days=1), tz)
            if last_exclusive > now_day and day_end <= st.now and day_end - now < now - since:
                upto, since, sign = last_exclusive, now, -1
                tail_query = replace(query, now=day_end)
        rows: Sequence[Any] = []
        with engine.connect() as conn:
            if upto > first:
                sql, params = _rollup_sql(engine.dialect.name, query, kind, first, upto, keys, filters)
                rows = fetched(conn, sql, params)
            tail = _tail_daily(conn, tail_query, kind, first, last_exclusive, keys, filters, since, wanted)
        if sign < 0:
            tail = {k: [-v for v in vec] for k, vec in tail.items()}
        if not tail:
            return _sum_rows(rows, ("day",), group[1:], measures)
        # Rollup rows and the tail summed per (day or stretch, group) in plain Python.
        sums: dict[tuple[Any, ...], list[int]] = {}
        n = len(group)
        for r in rows:  # one row per (day or stretch, group): the database summed them
            sums[(_as_date(r[0]), *r[1:n])] = [int(v) if v else 0 for v in r[n:]]
        for k, vec in tail.items():
            acc = sums.setdefault(k, [0] * len(measures))
            for i, v in enumerate(vec):
                acc[i] += v
        return _sum_rows([(*k, *v) for k, v in sorted(sums.items(), key=lambda kv: tuple(map(str, kv[0])))],
                         ("day",), group[1:], measures)
    df = _raw_daily(engine, query, kind, first, last_exclusive)
    df = _pandas_filter(df, filters)
    if df.empty:
        return []
    df = df.groupby(list(group), dropna=False, as_index=False)[list(measures)].sum()
    return _sum_rows(df[[*group, *measures]].itertuples(index=False, name=None), ("day",), group[1:], measures)


def _tail_daily(conn: Connection, query: Query, kind: str, first: date, last_exclusive: date,
                keys: tuple[str, ...], filters: dict[str, object], since: datetime,
                wanted: tuple[str, ...] | None = None) -> dict[tuple[Any, ...], list[int]]:
    """The rows of ``kind`` at or after ``since`` (the rollups' ``now``) in local days
    ``[first, last_exclusive)``, summed per (day, or the stretch the rollup read sums it into,
    currency, keys...): what happened after the last refresh. Read through the time indexes."""
    tz = zone(query.tz)
    tail_first = max(first, since.astimezone(tz).date())
    if tail_first >= last_exclusive or (query.now is not None and query.now <= since):
        return {}
    days = Days(conn.dialect.name, tz, tail_first, last_exclusive, from_=since, before=query.now)
    selects = [(names, sql) for names, sql in _selects(kind, days) if wanted is None or set(names) & set(wanted)]
    measures = KINDS[kind].measures
    starts = None if query.granularity == "day" else _slices(query, first, last_exclusive)
    out: dict[tuple[Any, ...], list[int]] = {}
    for names, sql in selects:
        cols = ("day", "currency", "tier_id", "interval", "country", *names)
        for row in fetched(conn, sql, days.params(), raw=True):
            r = dict(zip(cols, row, strict=True))
            if any(r[c] != v for c, v in filters.items()):
                continue
            day = _as_date(r["day"])
            if starts is not None:
                day = starts[max(0, bisect.bisect_right(starts, day) - 1)]
            acc = out.setdefault((day, r["currency"], *(r[k] for k in keys)), [0] * len(measures))
            for i, m in enumerate(measures):
                if m in names:
                    acc[i] += int(r[m] or 0)
    return out


def _rollup_sql(dialect: str, query: Query, kind: str, first: date, last_exclusive: date,
                keys: tuple[str, ...], filters: dict[str, object]) -> tuple[str, dict[str, Any]]:
    """The rollup read of ``_daily`` and ``_bounded_daily``: whole months from the monthly sums,
    the other days (a partial month, week buckets, day granularity) from the daily rows."""
    k = KINDS[kind]
    cols = ("currency", *keys)
    params: dict[str, Any] = _params(filters)
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
        sums = ", ".join(f"{summed(m)} AS {m}" for m in k.measures)
        parts.append(f"SELECT month AS day, {', '.join(cols)}, {sums} FROM {k.monthly} WHERE month IN ({marks})"
                     f"{_where(filters)} GROUP BY {', '.join(str(i + 1) for i in range(1 + len(cols)))}")
    if rest:
        parts.append(_days_sql(dialect, query, k.daily, cols, k.measures, rest, starts, filters, params))
    return " UNION ALL ".join(parts), params


def summed(column: str) -> str:
    """``SUM(column)`` of a whole-number column, as a whole number: PostgreSQL sums a BIGINT as
    NUMERIC, which psycopg reads into a ``Decimal`` (a quarter of the fetch of a Revenue page's
    movements: 624 rows x 20 sums, 4.3 ms -> 3.3 ms at a million members)."""
    return f"CAST(SUM({column}) AS BIGINT)"


def _days_sql(dialect: str, query: Query, table: str, cols: tuple[str, ...], measures: tuple[str, ...],
              ranges: list[tuple[date, date]], starts: list[date], filters: dict[str, object],
              params: dict[str, Any]) -> str:
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
    sums = ", ".join(f"{summed(m)} AS {m}" for m in measures)
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


def _selects(kind: str, days: Days) -> list[tuple[tuple[str, ...], str]]:
    """The (measure names, SQL) reads of raw rows behind one rollup kind over ``days``."""
    if kind == "cash":
        return cash_selects(days)
    if kind == "payments":
        return [attempts_select(days), recovery_select(days)]
    return [declines_select(days)]


def _raw_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> pd.DataFrame:
    import pandas as pd

    days = Days(engine.dialect.name, zone(query.tz), first, last_exclusive, before=query.now)
    selects = _selects(kind, days)
    frames = []
    with engine.connect() as conn:
        for measures, sql in selects:
            rows = conn.execute(statement(sql), days.params()).all()
            frames.append(frame(rows, ["day", "currency", "tier_id", "interval", "country", *measures]))
    measure_cols = [c for f in frames for c in f.columns[5:]]
    nonempty = [f for f in frames if not f.empty]
    df = pd.concat(nonempty, ignore_index=True) if nonempty else pd.DataFrame(columns=[*frames[0].columns[:5]])
    for c in measure_cols:
        df[c] = df[c].fillna(0) if c in df.columns else 0
    return df


# ------------------------------------------------------------------- trials and cancellations

def bounded_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> list[dict[str, Any]]:
    """Daily sums (``day``, ``currency``, keys..., measures...) of trials that ended at or before
    ``now`` (``trials``, ``converted``) or of cancellations effective before it (``reason``,
    ``churn_kind``, ``changes``) over local days ``[first, last_exclusive)``, filters applied.
    Whole days before the one containing ``now`` come from the rollup when it matches the
    question; that day (and every day of any other question) from the rows."""
    return memoised(("bounded", engine.url, query, kind, first, last_exclusive),
                     lambda: _bounded_daily(engine, query, kind, first, last_exclusive))


def _bounded_daily(engine: Engine, query: Query, kind: str, first: date, last_exclusive: date) -> list[dict[str, Any]]:
    keys, measures, select_fn = KINDS[kind].keys, KINDS[kind].measures, CHURN_SELECTS[kind]
    filters = filter_values(engine, query)
    group = ["day", "currency", *keys]
    tz = zone(query.tz)
    assert query.now is not None
    now_day = query.now.astimezone(tz).date()
    rows: list[tuple[Any, ...]] = []
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
            for hit in conn.execute(statement(sql), {**days.params(), "until": query.now}):
                if all(hit[i] == v for i, v in wanted):
                    rows.append(tuple(hit[i] for i in pick))
    # The rollup's days and today's rows summed per (day, group) in plain Python.
    sums: dict[tuple[Any, ...], list[int]] = {}
    for r in rows:
        k = (_as_date(r[0]), *r[1:len(group)])
        acc = sums.setdefault(k, [0] * len(measures))
        for i, v in enumerate(r[len(group):]):
            acc[i] += int(v or 0)
    return _sum_rows([(*k, *v) for k, v in sorted(sums.items(), key=lambda kv: tuple(map(str, kv[0])))],
                     ("day",), tuple(group[1:]), measures)


# --------------------------------------------------------------------------------- movements

def movements(engine: Engine, query: Query, granularity: str | None = None,
              first: date | None = None, last_exclusive: date | None = None, *,
              segments: bool = False) -> list[dict[str, Any]]:
    """MRR movements per bucket and original currency: ``period``, ``period_start``,
    ``period_end``, ``end_instant`` (the boundary used: period end or ``now``), ``currency`` and
    MOVEMENT_COLUMNS, as dicts shared by the metrics of a page (never change them); with
    ``segments``, one row per segment (original currency x tier x interval x country, with
    ``tier_id``, ``interval`` and ``country``): a reporting currency converts each segment's row
    (``common.convert_movements``), so segments add up to the total. Buckets starting at or
    after ``now`` are left out."""
    # Keyed without the reporting currency: the frame is per original currency.
    return memoised(("movements", engine.url, replace(query, currency=None), granularity, first, last_exclusive,
                     segments),
                    lambda: _movements(engine, query, granularity, first, last_exclusive, segments))


def _movements(engine: Engine, query: Query, granularity: str | None = None,
               first: date | None = None, last_exclusive: date | None = None, segments: bool = False) -> list[dict[str, Any]]:
    gran = granularity or query.granularity
    buckets = clipped_periods(first or query.start, last_exclusive or query.end, gran, zone(query.tz),
                              query.settings.week_start_index)
    now = query.now
    assert now is not None
    buckets = [b for b in buckets if b.start < now]
    group = SEGMENT if segments else SEGMENT[:1]
    cols = ["period", "period_start", "period_end", "end_instant", *group, *MOVEMENT_COLUMNS]
    if not buckets:
        return []
    filters = filter_values(engine, query)
    st = usable_state(engine, query)
    tz, week_start = zone(query.tz), query.settings.week_start_index
    from_rollup: list[Period] = []
    raw: list[Period] = []
    for b in buckets:
        # A bucket cut by a range end is not a row of the rollup, unless the cut is still in the
        # future (this month of a range that ends later): up to now it is the whole bucket.
        aligned = period_start(b.start, gran, tz, week_start) == b.label
        whole = is_whole(b, gran, tz, week_start) or (aligned and b.end >= now)
        (from_rollup if st is not None and st.first_day is not None and whole else raw).append(b)
    # Plain tuples, one frame at the end: a dozen rows per currency, where pandas column steps
    # would cost more than the query.
    meta = {b.label: b for b in buckets}
    sums: dict[tuple[Any, ...], list[int]] = {}

    def add(period: date, segment: tuple[Any, ...], values: list[Any]) -> None:
        key = (period, *segment)
        acc = sums.get(key)
        if acc is None:  # the usual case: the database already summed the group
            sums[key] = [int(v) if v else 0 for v in values]
            return
        for i, v in enumerate(values):
            if v:
                acc[i] += int(v)

    if from_rollup:
        assert st is not None
        _rollup_movements(engine, query, gran, from_rollup, st, filters, add, group)
    for run_ in _contiguous(raw):
        bounds = [min(b.start, now) for b in run_] + [min(run_[-1].end, now)]
        sql, params = movements_sql(engine.dialect.name, bounds)
        with engine.connect() as conn:
            rows = run(conn, sql, params)
        for row in rows:  # mappings: p, currency, tier_id, interval, country, movements
            if all(row[col] == value for col, value in filters.items()):
                add(run_[int(row["p"])].label, tuple(row[c] for c in group),
                    [row[c] for c in MOVEMENT_COLUMNS])
    return [dict(zip(cols, (period, meta[period].start, meta[period].end, min(meta[period].end, now), *segment,
                            *values), strict=True))
            # In period and currency order; segments in the order read (every figure is a sum).
            for (period, *segment), values in sorted(sums.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))
            if any(values)]


def _rollup_movements(engine: Engine, query: Query, gran: str, buckets: list[Period], st: rollups.State,
                      filters: dict[str, object], add: Callable[[date, tuple[Any, ...], list[Any]], None],
                      group: tuple[str, ...]) -> None:
    """The buckets' movements from ``metrics_mrr_periods`` (built up to ``st.now``), moved to the
    question's ``now`` by sweeping the members whose segments start or end in between."""
    now = query.now
    assert now is not None and st.first_day is not None
    built, moves = _moves_to(engine, query, gran, st)
    old_labels = period_delta.labels_of(
        rollups.period_bounds(st.first_day, built, gran, zone(query.tz), query.settings.week_start_index))
    wanted = {b.label for b in buckets}
    last_stored = min(buckets[-1].label, old_labels[-1]) if old_labels else None
    cols_sql = ", ".join(f"{summed(c)} AS {c}" for c in MOVEMENT_COLUMNS)
    if last_stored is not None and last_stored >= buckets[0].label:
        sql = (f"SELECT period, {', '.join(group)}, {cols_sql} FROM metrics_mrr_periods WHERE granularity = :g "
               f"AND period >= :a AND period <= :b{_where(filters)} GROUP BY period, {', '.join(group)}")
        with engine.connect() as conn:
            for period, *rest in conn.execute(text(sql), {"g": gran, "a": buckets[0].label,
                                                          "b": last_stored, **_params(filters)}).all():
                label = _as_date(period)
                if label in wanted:
                    add(label, tuple(rest[:len(group)]), rest[len(group):])
    for (label, currency, tier_id, interval, country), vec in moves.items():
        if label not in wanted:
            continue
        row = {"tier_id": tier_id, "interval": interval, "country": country, "currency": currency}
        if all(row[col] == value for col, value in filters.items()):
            add(label, tuple(row[c] for c in group), vec)


def _moves_to(engine: Engine, query: Query, gran: str, st: rollups.State
              ) -> tuple[datetime, dict[tuple[Any, ...], list[int]]]:
    """The stored rows to start from (those of a build ending at the returned instant) and what to
    add to them, per (period, segment), to answer at the question's ``now``. Worked out once per
    page and instant: the per-currency and per-segment reads of a page share the sweep."""
    now = query.now
    assert now is not None and st.first_day is not None
    tz, week_start = zone(query.tz), query.settings.week_start_index
    return memoised(("moves to", engine.url, gran, query.tz, week_start, st.first_day, st.now, now),
                    lambda: _sweep_to(engine, gran, st, now, tz, week_start))


def _sweep_to(engine: Engine, gran: str, st: rollups.State, now: datetime, tz: Any, week_start: int
              ) -> tuple[datetime, dict[tuple[Any, ...], list[int]]]:
    assert st.first_day is not None
    new_b = rollups.period_bounds(st.first_day, now, gran, tz, week_start)
    new_labels = period_delta.labels_of(new_b)
    built = st.now
    if now < st.now and new_labels:
        # A question about an earlier moment (the previous period of a card). The stored rows of
        # the periods before the one containing it, or up to its end, are what a build ending
        # there would hold; start from the nearer of the two edges, so only the members moving
        # between it and ``now`` are swept (half a day's at most, at day granularity).
        begins = new_b[-2][1]
        ends = min(st.now, local_midnight(next_period_start(new_labels[-1], gran), tz))
        built = begins if len(new_labels) > 1 and now - begins < ends - now else ends
    if now == built:
        return built, {}
    old_b = rollups.period_bounds(st.first_day, built, gran, tz, week_start)
    old_labels = period_delta.labels_of(old_b)
    if not old_labels or not new_labels:
        return built, {}  # (no period yet at a ``now`` before the first one: nothing moved)
    with engine.connect() as conn:
        moving = sorted(period_delta.members_moving(conn, built, now))
        # From the last stored period when time moved on; from the period containing ``now``
        # when the stored rows run past it.
        k_label = old_labels[-1] if now > built else new_labels[-1]
        k = period_delta.first_index(old_b, k_label)
        units = sweep.units(conn, moving)
        old = period_delta.sweep_members(conn, old_b, k, units, cohorts=False)
        new = period_delta.sweep_members(conn, new_b, k, units, cohorts=False)
        stored = [dict(r) for r in conn.execute(text(
            "SELECT * FROM metrics_mrr_periods WHERE granularity = :g AND period = :p"),
            {"g": gran, "p": old_labels[-1]}).mappings()] if len(new_b) > len(old_b) else []
    moves, _ = period_delta.shift(old_b, old, new_b, new, stored, [])
    return built, moves


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

def cohorts(engine: Engine, query: Query, first: date, last_exclusive: date) -> list[dict[str, Any]]:
    """Cohort cells for cohorts whose month is in ``[first, last_exclusive)``, observed through
    ``now``: ``cohort``, ``month``, ``currency``, ``members``, ``mrr``, ``size``, as dicts shared
    by the metrics of a page (both cohort metrics read them; never change them)."""
    # Keyed without the reporting currency: the cells are per original currency.
    return memoised(("cohorts", engine.url, replace(query, currency=None), first, last_exclusive),
                    lambda: _cohorts(engine, query, first, last_exclusive))


def _cohorts(engine: Engine, query: Query, first: date, last_exclusive: date) -> list[dict[str, Any]]:
    filters = filter_values(engine, query)
    cols = ["cohort", "month", "currency", "members", "mrr", "size"]
    now = query.now
    assert now is not None
    st = usable_state(engine, query)
    if st is not None and st.first_day is not None:
        return _rollup_cohorts(engine, query, st, filters, first, last_exclusive)
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


def _rollup_cohorts(engine: Engine, query: Query, st: rollups.State, filters: dict[str, object], first: date,
                    last_exclusive: date) -> list[dict[str, Any]]:
    """Cohort cells from ``metrics_cohorts`` (built up to ``st.now``), moved to the question's
    ``now`` as the movements are (``_rollup_movements``)."""
    now = query.now
    assert now is not None and st.first_day is not None
    tz, week_start = zone(query.tz), query.settings.week_start_index
    old_b = rollups.period_bounds(st.first_day, st.now, "month", tz, week_start)
    new_b = rollups.period_bounds(st.first_day, now, "month", tz, week_start)
    old_labels, new_labels = period_delta.labels_of(old_b), period_delta.labels_of(new_b)
    if not new_labels:
        return []
    last_month = new_labels[-1]  # no cell after the month containing ``now``
    sums: dict[tuple[Any, ...], list[int]] = {}
    sql = (f"SELECT cohort, month, currency, {summed('members')}, {summed('mrr')}, {summed('size')} FROM metrics_cohorts "
           f"WHERE cohort >= :a AND cohort < :b AND month <= :m{_where(filters)} GROUP BY cohort, month, currency")
    with engine.connect() as conn:
        for r in _sum_rows(conn.execute(text(sql), {"a": first, "b": last_exclusive, "m": last_month,
                                                    **_params(filters)}).all(),
                           ("cohort", "month"), ("currency",), ("members", "mrr", "size")):
            sums[(r["cohort"], r["month"], r["currency"])] = [r["members"], r["mrr"], r["size"]]
        if now != st.now and old_labels:
            moving = sorted(period_delta.members_moving(conn, st.now, now))
            k_label = old_labels[-1] if now > st.now else last_month
            k = period_delta.first_index(old_b, k_label)
            units = sweep.units(conn, moving)
            old = period_delta.sweep_members(conn, old_b, k, units)
            new = period_delta.sweep_members(conn, new_b, k, units)
            later = len(new_b) > len(old_b)
            cells = [dict(r) | {"cohort": _as_date(r["cohort"])} for r in conn.execute(text(
                "SELECT * FROM metrics_cohorts WHERE month = :p"), {"p": old_labels[-1]}).mappings()] if later else []
            _, moves = period_delta.shift(old_b, old, new_b, new, [], cells)
            for (cohort, month, currency, tier_id, interval, country), vec in moves.items():
                row = {"tier_id": tier_id, "interval": interval, "country": country, "currency": currency}
                if first <= cohort < last_exclusive and month <= last_month and all(
                        row[col] == value for col, value in filters.items()):
                    acc = sums.setdefault((cohort, month, currency), [0, 0, 0])
                    for i, v in enumerate(vec):
                        acc[i] += v
    return [{"cohort": c, "month": m, "currency": cur, "members": v[0], "mrr": v[1], "size": v[2]}
            for (c, m, cur), v in sorted(sums.items()) if any(v)]

