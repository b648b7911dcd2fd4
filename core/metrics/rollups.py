"""Keep the metric rollup tables up to date.

``refresh(engine, since=None, now=None)`` recomputes every rollup row for local days (and the
months/weeks containing them) at or after ``since``; ``since=None`` rebuilds everything. It is
idempotent (delete the affected days, insert them again, one transaction) and cheap for a recent
``since``. The money and payment rollups (cash, attempts, recovery, declines) do not depend on
``since``: they move by the rows marked since the last refresh (``core.metrics.flow_delta``). It rebuilds everything by itself when a definition setting (time zone, grace days,
week start) differs from the one the rollups were built with, or when ``mark_stale`` was called:
a settings change takes effect everywhere at the next refresh, and until then queries answer
from the raw rows (``usable`` says so).

Recovery looks 30 days past a first failure, so a refresh from ``since`` also recomputes the
recovery columns of the 31 days before it.
"""

from __future__ import annotations

import bisect
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Select, bindparam, case, func, select, text
from sqlalchemy.orm import Session

from core.db.types import UTCDateTime
from core.metrics import flow_delta, period_delta, segments, standing
from core.metrics.daily import (
    CHURN_SELECTS,
    GROUP_OUT,
    KINDS,
    RECOVERY_WINDOW_DAYS,
    Days,
    attempts_select,
    cash_selects,
    declines_select,
    listed,
    month_of,
    recovery_select,
    statement,
)
from core.metrics.movements import MOVEMENT_COLUMNS
from core.models import Base, MembershipChange, Payment, Subscription
from core.models.rollups import FlowMark, RollupState
from core.settings.business import BusinessSettings, load
from core.timeutil import ensure_aware, next_period_start, periods, utc_now, zone

log = logging.getLogger(__name__)

STATE_KEY = "built"
STALE_KEY = "stale"
# The shape of the stored rows: a build of another version is rebuilt by the next refresh and
# not read meanwhile (2: day movements; cash and payment days cut at the build's ``now``).
VERSION = 2
# The rules of the trial and cancellation rollups, which a refresh rebuilds whole when they changed
# (seconds, where a new VERSION rebuilds everything; 2: a pause is its own reason, and a change's
# churn kind follows the segments' rule).
CHURN_RULES = 2


@dataclass(frozen=True)
class State:
    tz: str
    grace_days: int | None
    week_start: str
    now: datetime
    refreshed_at: datetime
    first_day: date | None
    version: int = VERSION
    marks: bool = False  # built by a refresh that reads the flow marks (each one since is there)
    churn_rules: int = CHURN_RULES

    def matches(self, tz: str, bs: BusinessSettings) -> bool:
        return (self.version == VERSION and self.tz == tz and self.grace_days == bs.past_due_grace_days
                and self.week_start == bs.week_start)


def mark_stale(session: Session) -> None:
    """Called by a settings change: queries use raw rows until the next refresh rebuilds."""
    row = session.get(RollupState, STALE_KEY)
    if row is None:
        session.add(RollupState(key=STALE_KEY, value=True, updated_at=utc_now()))
    else:
        row.value, row.updated_at = True, utc_now()


def state(source: Engine | Connection) -> State | None:
    """The rollups' build state, or None when they are missing or stale."""
    rows = _state_rows(source)
    built = rows.get(STATE_KEY)
    if not built or rows.get(STALE_KEY):
        return None
    return State(built["tz"], built["grace_days"], built["week_start"], datetime.fromisoformat(built["now"]),
                 datetime.fromisoformat(built["refreshed_at"]),
                 date.fromisoformat(built["first_day"]) if built.get("first_day") else None,
                 int(built.get("version", 1)), bool(built.get("marks", False)), int(built.get("churn_rules", 1)))


def segments_grace_days(source: Engine | Connection) -> tuple[bool, int | None]:
    """(built, grace days) of the subscriptions' segments as they stand, stale or not: MRR and
    churn read the segments even while a rebuild is pending, with the grace days they were cut by."""
    built = _state_rows(source).get(STATE_KEY)
    return (bool(built), built.get("grace_days") if built else None)


def _state_rows(source: Engine | Connection) -> dict[str, Any]:
    """The rollup state table as {key: value}, on the connection given or a new one."""
    conn_ctx = source.connect() if isinstance(source, Engine) else None
    conn = conn_ctx if conn_ctx is not None else source
    try:
        assert isinstance(conn, Connection)  # the connection given, or the one opened above
        return dict(conn.execute(select(RollupState.key, RollupState.value)).all())
    finally:
        if conn_ctx is not None:
            conn_ctx.close()


def refresh(engine: Engine, since: datetime | None = None, *, now: datetime | None = None) -> dict[str, Any]:
    """Bring every rollup up to date for days >= ``since`` (None = full rebuild). Returns a summary."""
    # Stripe's times are whole seconds, floored: a row written just after this refresh can carry a
    # time up to a second before it. Counting up to a second before the present second leaves
    # such a row to the readers' tail instead of to neither.
    now = ensure_aware(now) if now is not None else utc_now().replace(microsecond=0) - timedelta(seconds=1)
    bs = load(engine)
    tz_name = bs.business_timezone
    tz = zone(tz_name)
    started = utc_now()
    with _exclusive(engine) as conn:
        old = state(conn)
        full = since is None or old is None or not old.matches(tz_name, bs)
        if not full and conn.dialect.name == "postgresql":
            # PostgreSQL compiles a plan whose estimated cost passes jit_above_cost: at a million
            # members the moved-trials read of a one-day refresh spent 49 of its 97 ms compiling.
            # An incremental refresh reads thousands of rows, never enough to repay it.
            conn.execute(text("SET LOCAL jit = off"))
        if not full and since is not None and old is not None:  # (both set when not full)
            # Never after the last build's ``now``: what was written since then is what is new.
            since = min(ensure_aware(since), old.now)
            late = conn.execute(_earliest_recorded_since(since)).scalar()
            if late is not None and late < since:
                since = late
        first = _first_instant(conn)
        if first is None:
            first_day = now.astimezone(tz).date()
        else:
            first_day = min(first, now).astimezone(tz).date() - timedelta(days=1)
        last_day = now.astimezone(tz).date() + timedelta(days=2)
        since_day = first_day if full or since is None else max(since.astimezone(tz).date(), first_day)
        days = Days(conn.dialect.name, tz, since_day, last_day + timedelta(days=1))
        # Cash and payments count what happened before ``now``; a reader adds what came after
        # (the tail). Trials and cancellations keep every known row (their readers bound by time).
        flows = replace(days, before=now)

        def bounds_for(granularity: str, moment: datetime) -> list[tuple[date, datetime]]:
            return period_bounds(first_day, moment, granularity, tz, bs.week_start_index)

        # Incremental: sweep only the touched members, before and after their segments change.
        delta = None
        touched = None if full or since is None else segments.Touched.read(conn, since)
        if touched is not None and old is not None and old.first_day == first_day:
            t = time.perf_counter()
            delta = period_delta.prepare(conn, touched, since_day, old.now, now, bounds_for)
            log.info("metrics rollups: delta prepare took %.2fs (%s)", time.perf_counter() - t,
                     "full sweep" if delta is None else f"{len(delta.members)} members")
        # Money and payments: by the rows marked since the last refresh when it read them too;
        # else every day from ``since`` (and from the earliest marked row).
        marks = None
        if not full and old is not None and old.marks and old.first_day == first_day:
            marks = flow_delta.read(conn, tz, old.now)
        if marks is None and not full:
            earliest = conn.execute(select(func.min(FlowMark.at))).scalar()
            if earliest is not None and earliest.astimezone(tz).date() < flows.first:
                flows = replace(flows, first=max(first_day, earliest.astimezone(tz).date()))

        def redo_days(redone: list[date]) -> None:
            redo = Days.listed(days.dialect, tz, redone, before=now)
            for table in ("metrics_daily_cash", "metrics_daily_payments", "metrics_daily_declines"):
                conn.execute(text(f"DELETE FROM {table} WHERE day IN ({', '.join(f':rd{i}' for i in range(len(redone)))})"),
                             {f"rd{i}": d for i, d in enumerate(redone)})
            for measures, sql in cash_selects(redo):
                _insert(conn, "metrics_daily_cash", measures, sql, redo.params())
            for table, (measures, sql) in (("metrics_daily_payments", attempts_select(redo)),
                                           ("metrics_daily_payments", recovery_select(redo)),
                                           ("metrics_daily_declines", declines_select(redo))):
                _insert(conn, table, measures, sql, redo.params())

        def flow_steps() -> None:
            if marks is not None:
                assert old is not None
                moved = flow_delta.apply(conn, marks, tz, first_day, old.now, now, redo_days)
                flow_delta.forget(conn, marks.ids)
                log.info("metrics rollups: flows moved by %d marks (%s)", len(marks.ids), moved)
            else:
                _cash(conn, flows)
                _payments(conn, flows)
                flow_delta.forget(conn, None)

        # Trials and cancellations under older rules: every day again (a GROUP BY of each).
        churn_days = days if old is None or old.churn_rules == CHURN_RULES else replace(days, first=first_day)
        steps: tuple[tuple[str, Callable[[], object]], ...] = (("segments", lambda: segments.build(conn, grace_days=bs.past_due_grace_days,
                                                     touched=touched)),
                 ("flows", flow_steps),
                 ("churn", lambda: _churn(conn, churn_days, first_day, None if full else since)),
                 ("periods", lambda: _periods(conn, bs, tz_name, first_day, now, since_day) if delta is None
                  else period_delta.apply(conn, delta, bounds_for, now)),
                 # Who each member is now (the Overview's counts): the members marked since the last refresh.
                 ("standing", lambda: standing.refresh(conn, full=full)))
        for name, step in steps:
            t = time.perf_counter()
            step()
            if full and name == "segments":
                # A fresh table: give the planner its size before the joins that use it.
                conn.execute(text("ANALYZE metrics_mrr_segments"))
            log.info("metrics rollups: %s took %.2fs", name, time.perf_counter() - t)
        if full:
            # Rebuilt tables: the planner's row estimates were of the old contents (at a million
            # members a year of cancellation rows was estimated at 236 rows and read as 34,000).
            for table in _rollup_tables():
                conn.execute(text(f"ANALYZE {table}"))
        _save_state(conn, tz_name, bs, now, first_day)
    if engine.dialect.name == "postgresql" and _vacuum_due(engine, full):
        _vacuum(engine)
    took = (utc_now() - started).total_seconds()
    log.info("metrics rollups refreshed full=%s since=%s took=%.2fs", full, since_day, took)
    return {"full": full, "since_day": since_day.isoformat(), "seconds": took}


def _rollup_tables() -> list[str]:
    return sorted(name for name in Base.metadata.tables if name.startswith("metrics_") and name != "metrics_rollup_state")


def _vacuum(engine: Engine) -> None:
    """After a refresh commits, VACUUM the rollup tables on PostgreSQL: a few seconds after a full
    build at a million members, 0.2 s after a one-day refresh (it visits only the changed pages).
    An index-only scan, such as the failure breakdowns' covering indexes, reads the table for every
    row on a page not marked all-visible, and each refresh rewrites this month's rows: at a million
    members, after five one-day refreshes, the three failure breakdowns took 47 ms instead of 16
    (autovacuum waits for a fifth of a table to change). A failure is logged; autovacuum catches up."""
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text(f"VACUUM {', '.join(_rollup_tables())}"))
    except Exception:
        log.exception("metrics rollups: VACUUM after the refresh failed (autovacuum will catch up)")


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """One transaction that sees one state of the database, one refresh at a time.

    Refreshes run one after another: an incremental refresh moves stored rows by a difference
    it computed from what it read, so two at once would both apply theirs to the same rows. And
    a refresh must read the marks and the rows they mark as of one moment: a row committed
    between the two reads would be counted now and again by the next refresh, through its mark.

    PostgreSQL: a session advisory lock taken before the transaction, then a REPEATABLE READ
    transaction (one snapshot, taken after the lock, so it sees the previous refresh's work).
    SQLite: a first statement that writes, which takes the database's write lock before
    anything is read (writers wait for the refresh; its reads see one state)."""
    with engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            with conn.begin():
                conn.execute(text("UPDATE metrics_rollup_state SET key = key WHERE key = :k"), {"k": STATE_KEY})
                yield conn
            return
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        conn.commit()
        try:
            conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()


_VACUUM_EVERY_S = 600.0
_vacuumed: dict[str, float] = {}
_vacuum_lock = threading.Lock()


def _vacuum_due(engine: Engine, full: bool) -> bool:
    """After a full build, and then at most every ten minutes per process: a refresh that moved
    a few rows leaves a few pages not all-visible, which costs an index-only scan little, while
    the VACUUM itself costs 0.1-0.2 s at a million members."""
    key = engine.url.render_as_string(hide_password=False)
    with _vacuum_lock:
        last = _vacuumed.get(key)
        if full or last is None or time.monotonic() - last >= _VACUUM_EVERY_S:
            _vacuumed[key] = time.monotonic()
            return True
    return False


_LOCK_KEY = 0x6D65747269637331  # "metrics1": any constant shared by every process


def _earliest_recorded_since(since: datetime) -> Select[datetime | None]:
    """The earliest effective time of the changes recorded since ``since`` (a change recorded
    late can take effect before it). The CASE keeps both databases off their "MIN of an indexed
    column" shortcut, which walks the effective_at index from the start of history and filters
    every change; this reads the few changes recorded since ``since`` through their index."""
    c = MembershipChange
    return select(func.min(case((c.recorded_at >= since, c.effective_at)))).where(c.recorded_at >= since)


def _first_instant(conn: Connection) -> datetime | None:
    candidates = [conn.execute(select(func.min(MembershipChange.effective_at))).scalar(),
                  conn.execute(select(func.min(Payment.created_at))).scalar(),
                  conn.execute(select(func.min(Subscription.trial_end))).scalar()]
    found = [c for c in candidates if c is not None]
    return min(found) if found else None


def _save_state(conn: Connection, tz_name: str, bs: BusinessSettings, now: datetime, first_day: date) -> None:
    value = {"tz": tz_name, "grace_days": bs.past_due_grace_days, "week_start": bs.week_start,
             "version": VERSION, "churn_rules": CHURN_RULES, "marks": True, "now": now.isoformat(), "refreshed_at": utc_now().isoformat(), "first_day": first_day.isoformat()}
    table = RollupState.__table__
    conn.execute(table.delete().where(table.c.key.in_([STATE_KEY, STALE_KEY])))
    conn.execute(table.insert().values(key=STATE_KEY, value=value, updated_at=utc_now()))


def _insert(conn: Connection, table: str, measures: tuple[str, ...], select_sql: str, params: dict[str, Any]) -> None:
    cols = ", ".join(GROUP_OUT + measures)
    conn.execute(statement(f"INSERT INTO {table} ({cols}) {select_sql}"), params)


def _cash(conn: Connection, days: Days) -> None:
    conn.execute(text("DELETE FROM metrics_daily_cash WHERE day >= :first"), {"first": days.first})
    for measures, sql in cash_selects(days):
        _insert(conn, "metrics_daily_cash", measures, sql, days.params())
    _monthly(conn, "cash", days.first)


def _monthly(conn: Connection, kind: str, first: date, earlier: list[date] | tuple[date, ...] = ()) -> None:
    """Sum the daily rows of ``kind`` again into the months from the one containing ``first``,
    and into the months of the ``earlier`` days (days redone before ``first``)."""
    k = KINDS[kind]
    months = sorted({first.replace(day=1), *(d.replace(day=1) for d in earlier)})
    params = {f"m{i}": m for i, m in enumerate(months)} | {f"n{i}": next_period_start(m, "month") for i, m in enumerate(months)}
    last = len(months) - 1
    # The last month is open-ended (every month from it on); the others are single months.
    month_cond = " OR ".join([*(f"month = :m{i}" for i in range(last)), f"month >= :m{last}"])
    day_cond = " OR ".join([*(f"(day >= :m{i} AND day < :n{i})" for i in range(last)), f"day >= :m{last}"])
    group = ", ".join(GROUP_OUT[1:] + k.keys)
    sums = ", ".join(f"SUM({m})" for m in k.measures)
    conn.execute(text(f"DELETE FROM {k.monthly} WHERE {month_cond}"), params)
    conn.execute(text(f"INSERT INTO {k.monthly} (month, {group}, {', '.join(k.measures)}) "
                      f"SELECT {month_of(conn.dialect.name, 'day')}, {group}, {sums} FROM {k.daily} "
                      f"WHERE {day_cond} GROUP BY 1, {group}"), params)


def _payments(conn: Connection, days: Days) -> None:
    for table in ("metrics_daily_payments", "metrics_daily_declines"):
        conn.execute(text(f"DELETE FROM {table} WHERE day >= :first"), {"first": days.first})
    _insert(conn, "metrics_daily_payments", *attempts_select(days), days.params())
    _insert(conn, "metrics_daily_payments", *recovery_select(days), days.params())
    _insert(conn, "metrics_daily_declines", *declines_select(days), days.params())
    # Recovery belongs to the day of the first failure and looks 30 days ahead, so a payment from
    # the first day on can recover a failure of the 31 days before: redo those days only, and only
    # the ones with a failed payment on an invoice that has a payment from the first day on.
    earlier = _recovery_days(conn, days)
    if earlier:
        marks = ", ".join(f":rd{i}" for i in range(len(earlier)))
        day_params = {f"rd{i}": d for i, d in enumerate(earlier)}
        conn.execute(text(f"UPDATE metrics_daily_payments SET failed_invoices = 0, recovered_invoices = 0, "
                          f"recovered = 0 WHERE day IN ({marks})"), day_params)
        redo = Days.listed(days.dialect, days.tz, earlier)
        _insert(conn, "metrics_daily_payments", *recovery_select(redo), redo.params())
        conn.execute(text(f"DELETE FROM metrics_daily_payments WHERE day IN ({marks}) AND attempts = 0 "
                          "AND failed_invoices = 0"), day_params)
    _monthly(conn, "payments", days.first, earlier)
    _monthly(conn, "declines", days.first)


def _churn(conn: Connection, days: Days, first_day: date, since: datetime | None) -> None:
    """Trials by the day they ended and cancellations by the day effective: the days from
    ``days.first``, and the earlier days whose rows a write since ``since`` can move: a trial whose
    first invoice got a payment (it converts when that invoice is paid, maybe weeks after the trial
    ended), and the trials and cancellations of subscriptions whose price changed (their rows are
    grouped by the subscription's current price)."""
    for kind, select_fn in CHURN_SELECTS.items():
        table = KINDS[kind].daily
        conn.execute(text(f"DELETE FROM {table} WHERE day >= :first"), {"first": days.first})
        _insert(conn, table, *select_fn(days), days.params())
    moved = _moved_churn_days(conn, days, first_day, since)
    for kind in ("trials", "cancellations"):
        _monthly(conn, kind, days.first, moved[kind])


def _moved_churn_days(conn: Connection, days: Days, first_day: date, since: datetime | None) -> dict[str, list[date]]:
    """Redo the daily trial and cancellation rows before ``days.first`` that a write since
    ``since`` can move (see ``_churn``); the days redone, per kind.

    The subscriptions are found first, each kind of them by its own statement, and listed in the
    statements that find their days: as one statement of subqueries, PostgreSQL planned the
    trials' half from every trial and every invoice (460 ms for ten days' writes at 100,000
    members)."""
    out: dict[str, list[date]] = {"trials": [], "cancellations": []}
    if since is None or first_day >= days.first:
        return out
    before = Days(days.dialect, days.tz, first_day, days.first)
    ts = UTCDateTime()
    repriced = _ids(conn, text(" UNION ".join(
        f"SELECT subscription_id FROM membership_changes WHERE {col} >= :since AND subscription_id IS NOT NULL "
        "AND COALESCE(from_price_id, -1) <> COALESCE(to_price_id, -1)" for col in ("effective_at", "recorded_at")))
        .bindparams(bindparam("since", type_=ts)), {"since": since})
    # A repriced trial moves only when no change had set its price by its end (it is then filed
    # under the subscription's current price, ``TRIAL_PRICE``).
    trials = _ids(conn, text(f"""SELECT s.id FROM subscriptions s WHERE s.id IN ({listed(sorted(repriced))})
        AND s.trial_end IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM membership_changes c WHERE c.subscription_id = s.id AND c.to_price_id IS NOT NULL
               AND c.effective_at <= s.trial_end)"""), {})
    # The trials whose first invoice got a payment since ``since`` (a trial converts when that
    # invoice is paid, maybe weeks after it ended). From the new payments: first the member's
    # trial subscriptions (a payment, its invoice and the invoice's subscription have one customer,
    # as in Stripe), then the invoice, read only for the third of payments whose member had a
    # trial (at 100,000 members, ten days' 16,000 payments: 42,000 pages read -> 25,000). CROSS
    # JOIN keeps SQLite's join order (the payments first), not every trial's subscription.
    trials |= _ids(conn, statement("""SELECT s.id FROM payments q CROSS JOIN subscriptions s CROSS JOIN invoices i
        WHERE s.member_id = q.member_id AND s.trial_end IS NOT NULL AND i.id = q.invoice_id
          AND i.subscription_id = s.id AND q.created_at >= :since
          AND s.trial_end < :days_to AND i.total > 0 AND i.created_at >= COALESCE(s.trial_start, s.trial_end)
          AND NOT EXISTS (SELECT 1 FROM invoices i2 WHERE i2.subscription_id = s.id AND i2.total > 0
                          AND i2.created_at >= COALESCE(s.trial_start, s.trial_end)
                          AND (i2.created_at < i.created_at OR (i2.created_at = i.created_at AND i2.id < i.id)))"""),
                   {**before.params(), "since": since})
    for kind, column, source_table, ids, where in (
            ("trials", "s.trial_end", "subscriptions s", trials, "s.id IN ({})"),
            ("cancellations", "c.effective_at", "membership_changes c", repriced,
             "c.subscription_id IN ({}) AND c.mrr_before_minor > 0 AND c.mrr_after_minor = 0")):
        if not ids:
            continue
        where = where.format(listed(sorted(ids)))
        moved = [_as_date(d) for d in conn.execute(statement(
            f"SELECT DISTINCT {before.of(column)} FROM {source_table} WHERE {where} AND {before.where(column)} "
            "ORDER BY 1"), before.params()).scalars()]
        _redo_days(conn, KINDS[kind].daily, CHURN_SELECTS[kind],
                   Days.listed(days.dialect, days.tz, moved) if moved else None)
        out[kind] = moved
    return out


def _ids(conn: Connection, stmt: Any, params: dict[str, Any]) -> set[int]:
    return {int(i) for i in conn.execute(stmt, params).scalars() if i is not None}


def _redo_days(conn: Connection, table: str, select_fn: Callable[[Days], tuple[tuple[str, ...], str]],
               days: Days | None) -> None:
    """Delete and insert again the rows of a handful of scattered days."""
    if days is None:
        return
    marks = ", ".join(f":rd{i}" for i in range(len(days.only)))
    conn.execute(text(f"DELETE FROM {table} WHERE day IN ({marks})"), {f"rd{i}": d for i, d in enumerate(days.only)})
    _insert(conn, table, *select_fn(days), days.params())


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _recovery_days(conn: Connection, days: Days) -> list[date]:
    """Local days before ``days.first`` (within the recovery window) whose recovery figures a
    payment made from ``days.first`` on can change."""
    window = Days(days.dialect, days.tz, days.first - timedelta(days=RECOVERY_WINDOW_DAYS + 1), days.first)
    # The failures are found first (through the invoices of the new payments), then their days.
    rows = conn.execute(statement(f"""
SELECT DISTINCT {window.of('f.created_at')} FROM (
    SELECT DISTINCT p.created_at FROM payments p
    WHERE p.status = 'failed' AND {window.where('p.created_at')}
      AND p.invoice_id IN (SELECT q.invoice_id FROM payments q
                           WHERE q.created_at >= :days_to AND q.invoice_id IS NOT NULL)) f
ORDER BY 1"""), window.params())
    return [_as_date(d) for d in rows.scalars()]


def period_bounds(first_day: date, now: datetime, granularity: str, tz: ZoneInfo,
                  week_start: int) -> list[tuple[date, datetime]]:
    """(label, start instant) of each period from ``first_day`` through the one containing ``now``,
    plus the closing boundary ``now`` itself."""
    last_day = now.astimezone(tz).date() + timedelta(days=1)
    found = _period_starts(first_day, last_day, granularity, tz, week_start)
    out = list(found[:bisect.bisect_left(found, now, key=lambda p: p[1])])
    out.append((date.max, now))
    return out


@functools.lru_cache(maxsize=64)
def _period_starts(first_day: date, last_day: date, granularity: str, tz: ZoneInfo, week_start: int
                   ) -> tuple[tuple[date, datetime], ...]:
    """(label, start instant) of the periods, computed once per day: six years of days are 2,200
    time zone conversions (40 ms on a busy machine), asked for by every refresh and tail read."""
    return tuple((p.label, p.start) for p in periods(first_day, last_day, granularity, tz, week_start))


def _periods(conn: Connection, bs: BusinessSettings, tz_name: str, first_day: date, now: datetime,
             since_day: date) -> None:
    """Month and week movements, and month cohorts, from one pass over the segments each."""
    from core.metrics import sweep

    tz = zone(tz_name)
    for granularity in period_delta.GRANULARITIES:
        bounds = period_bounds(first_day, now, granularity, tz, bs.week_start_index)
        labels = [b[0] for b in bounds]
        # First period touched: the one containing since_day, or the one before it, whose closing
        # MRR is taken at since_day's midnight (a change at that instant moves it).
        k = max((i for i, label in enumerate(labels[:-1]) if label < since_day), default=0)
        conn.execute(text("DELETE FROM metrics_mrr_periods WHERE granularity = :g AND period >= :p"),
                     {"g": granularity, "p": labels[k]})
        if granularity == "month":
            conn.execute(text("DELETE FROM metrics_cohorts WHERE month >= :m"), {"m": labels[k]})
        if len(bounds) < 2:
            continue
        rows, cells = sweep.run(conn, [b[1] for b in bounds], k, cohorts=granularity == "month")
        if rows:
            conn.execute(text(
                f"INSERT INTO metrics_mrr_periods (granularity, period, currency, tier_id, interval, country, "
                f"{', '.join(MOVEMENT_COLUMNS)}) VALUES (:granularity, :period, :currency, :tier_id, :interval, "
                f":country, {', '.join(':' + c for c in MOVEMENT_COLUMNS)})"),
                [{**r, "granularity": granularity, "period": labels[r["p"]]} for r in rows])
        if granularity == "month" and cells:
            conn.execute(text(
                "INSERT INTO metrics_cohorts (cohort, month, currency, tier_id, interval, country, members, mrr, size) "
                "VALUES (:cohort, :month, :currency, :tier_id, :interval, :country, :members, :mrr, :size)"),
                [{**r, "cohort": labels[r["cohort"]], "month": labels[r["p"]]} for r in cells])
