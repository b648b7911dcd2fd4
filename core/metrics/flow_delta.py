"""Move the money and payment rollups on by what was written since the last refresh.

The daily cash, attempt, recovery and decline rows count the rows counted before the last
refresh's ``now`` (a reader adds the rows after it). Triggers mark every payment, refund,
dispute and invoice written since (``metrics_flow_marks``, migration 0023), with the instant the
row is counted at as it was (``old``) and as it is (``new``). From those marks a refresh:

- adds the rows counted in ``[old now, new now)``, read through the time indexes (what the
  readers' tail held);
- adds the rows written late, counted before the old ``now`` but inserted since (one by one,
  by id);
- redoes whole the few days where a row already counted changed or went away (its old
  contribution is not known any more): the day it was counted on, and for a payment on an
  invoice, the days of that invoice's failures (recovery looks at every payment of the invoice);
- moves recovery per invoice: for each invoice with a payment new since the last refresh, its
  first failure's figures as they were (without the new payments, before the old ``now``) are
  taken away and as they are now are added. Recovery counts a failure recovered when any
  payment of its invoice succeeded within the window, whenever that payment was written.

What a row is filed under (tier, interval, country) is fixed when it is billed
(``core.metrics.daily``), so a mark on the row itself is all that can move it. The added rows go
in as extra rows of their day and month, which are then summed back to one row per group.

The refresh reads the marks and the rows in one snapshot (``core.metrics.rollups``), and
deletes exactly the marks it read.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import Connection, bindparam, select, text

from core.metrics.daily import (
    _GROUP,
    _JOINS,
    GROUP_OUT,
    KINDS,
    RECOVERY_WINDOW_DAYS,
    Days,
    attempts_select,
    cash_selects,
    declines_select,
    listed,
    month_of,
    statement,
)
from core.models.rollups import FlowMark

log = logging.getLogger(__name__)

# More marks than this (a bulk sync, a refresher stopped for long): the caller redoes every day
# from the earliest one instead, one grouped read per day rather than one row at a time.
MAX_MARKS = 20_000
ALIASES = {"payments": "p", "refunds": "r", "disputes": "d", "invoices": "i"}
_CHUNK = 1_000
RECOVERY = ("failed_invoices", "recovered_invoices", "recovered")


@dataclass
class Marks:
    """What the marks read say: the days to redo, the rows to add one by one (by table alias),
    and the invoices whose recovery may have moved."""

    ids: list[int]
    redo: set[date] = field(default_factory=set)
    late: dict[str, set[int]] = field(default_factory=lambda: defaultdict(set))
    inserted: set[int] = field(default_factory=set)  # payments inserted since (not there before)
    invoices: set[int] = field(default_factory=set)  # recovery moved invoice by invoice
    dirty: set[int] = field(default_factory=set)  # a payment changed: its failures' days are redone


def read(conn: Connection, tz: tzinfo, old_now: datetime) -> Marks | None:
    """The marks written since the last refresh, or None when there are too many."""
    rows = conn.execute(select(FlowMark.id, FlowMark.source, FlowMark.row_id, FlowMark.side, FlowMark.at,
                               FlowMark.invoice_id).order_by(FlowMark.id).limit(MAX_MARKS + 1)).all()
    if len(rows) > MAX_MARKS:
        return None
    out = Marks([r.id for r in rows])
    updated: set[int] = set()  # payments changed or deleted (not only inserted)
    new_payments: set[int] = set()
    invoices_of: dict[int, set[int]] = defaultdict(set)
    for r in rows:
        if r.source == "payments" and r.invoice_id is not None:
            invoices_of[r.row_id].add(r.invoice_id)
        if r.side == "old":
            if r.at is not None and r.at < old_now:  # it was counted: its day is redone
                out.redo.add(r.at.astimezone(tz).date())
            if r.source == "payments":
                updated.add(r.row_id)
        else:
            if r.at is not None and r.at < old_now:
                out.late[ALIASES[r.source]].add(r.row_id)
            if r.source == "payments":
                new_payments.add(r.row_id)
    out.inserted = new_payments - updated
    # An invoice whose payments were changed: its recovery before is not known, so the days of
    # its failures are redone (below, in ``apply``); the others move invoice by invoice.
    out.dirty = {i for p in updated for i in invoices_of[p]}
    out.invoices = {i for p in out.inserted for i in invoices_of[p]} - out.dirty
    return out


def forget(conn: Connection, ids: Sequence[int] | None) -> None:
    """Delete the marks applied (None: all of them, after a full build or a day-by-day redo)."""
    if ids is None:
        conn.execute(text("DELETE FROM metrics_flow_marks"))
        return
    for i in range(0, len(ids), _CHUNK):
        conn.execute(text("DELETE FROM metrics_flow_marks WHERE id IN :ids")
                     .bindparams(bindparam("ids", expanding=True)), {"ids": list(ids[i:i + _CHUNK])})


def apply(conn: Connection, marks: Marks, tz: tzinfo, first_day: date, old_now: datetime, new_now: datetime,
          redo_days: Any) -> dict[str, int]:
    """Move the cash, payments and declines rollups from ``old_now`` to ``new_now``.
    ``redo_days(days)`` redoes whole days (the refresh's own day-by-day code)."""
    dialect = conn.dialect.name
    dirty = marks.dirty
    redo = set(marks.redo)
    if dirty:
        redo |= _failure_days(conn, dirty, tz, new_now)
    if redo:
        redo_days(sorted(redo))

    deltas: dict[str, dict[tuple[Any, ...], list[int]]] = defaultdict(dict)

    def add(kind: str, names: tuple[str, ...], rows: Iterable[Sequence[Any]], sign: int = 1) -> None:
        k = KINDS[kind]
        width = len(GROUP_OUT) + len(k.keys)
        index = {m: i for i, m in enumerate(k.measures)}
        for row in rows:
            values = dict(zip(names, row[len(GROUP_OUT):], strict=True))
            day = _as_date(row[0])
            if day in redo:
                continue
            key = (day, *row[1:len(GROUP_OUT)], *(values[c] for c in k.keys))
            acc = deltas[kind].setdefault(key, [0] * len(k.measures))
            for name, v in values.items():
                if name in index:
                    acc[index[name]] += sign * int(v or 0)
            assert len(key) == width

    # The rows counted in [old now, new now), and the rows written late (counted before old now).
    spans = [Days(dialect, tz, old_now.astimezone(tz).date(), new_now.astimezone(tz).date() + timedelta(days=1),
                  from_=old_now, before=new_now)]
    late = {a: tuple(sorted(ids)) for a, ids in marks.late.items() if ids}
    if late:
        spans.append(Days(dialect, tz, first_day, new_now.astimezone(tz).date() + timedelta(days=1),
                          before=old_now, ids=tuple(sorted(late.items()))))
    for days in spans:
        selects = [("cash", *s) for s in cash_selects(days)] + [
            ("payments", *attempts_select(days)), ("declines", *declines_select(days))]
        for kind, names, sql in selects:  # (with ids, a table none of them is in gives no row)
            add(kind, names, conn.execute(statement(sql), days.params()).all())

    # Recovery, invoice by invoice: before (without the payments inserted since, before old now)
    # and now. Invoices with a payment counted in the span are affected too.
    invoices = set(marks.invoices) | _invoices_paid_in(conn, old_now, new_now)
    invoices -= dirty
    for chunk in _chunks(sorted(invoices)):
        by_invoice: dict[int, list[_Attempt]] = defaultdict(list)
        for r in conn.execute(statement(_RECOVERY_ROWS.format(ids=listed(chunk))), {}).all():
            by_invoice[int(r[1])].append(_Attempt(int(r[0]), str(r[2]), _aware(r[3]), int(r[4]), tuple(r[5:])))
        for rows in by_invoice.values():
            before = _recovery([r for r in rows if r.id not in marks.inserted], old_now, tz)
            after = _recovery(rows, new_now, tz)
            for sign, got in ((-1, before), (1, after)):
                if got is not None:
                    add("payments", RECOVERY, [got], sign)

    written = _write(conn, deltas, redo)
    return {"redone_days": len(redo), "delta_rows": written, "invoices": len(invoices)}


# A failed or succeeded payment of the listed invoices, and the group its failure is filed under.
_RECOVERY_ROWS = f"""
SELECT p.id, p.invoice_id, p.status, p.created_at, p.amount, {_GROUP}
FROM payments p {_JOINS}
WHERE p.invoice_id IN ({{ids}}) AND p.status IN ('failed', 'succeeded')"""


@dataclass(frozen=True)
class _Attempt:
    id: int
    status: str
    created_at: datetime
    amount: int
    group: tuple[Any, ...]  # currency, tier, interval, country: as the rollups file it


def _recovery(rows: list[_Attempt], cut: datetime, tz: tzinfo) -> tuple[Any, ...] | None:
    """One invoice's recovery row (day, group, 1, recovered, amount recovered), as
    ``recovery_select`` counts it from ``rows``: its first failure before ``cut``, recovered when
    one of ``rows`` succeeded after it within the window; None without a failure."""
    mine = sorted(rows, key=lambda r: (r.created_at, r.id))
    first = next((r for r in mine if r.status == "failed"), None)
    if first is None or first.created_at >= cut:
        return None
    deadline = first.created_at + timedelta(days=RECOVERY_WINDOW_DAYS)
    recovered = any(r.status == "succeeded" and first.created_at < r.created_at <= deadline for r in mine)
    return (_local_day(first.created_at, tz), *first.group, 1, int(recovered), first.amount if recovered else 0)


def _local_day(moment: datetime, tz: tzinfo) -> date:
    return moment.astimezone(tz).date()


def _invoices_paid_in(conn: Connection, old_now: datetime, new_now: datetime) -> set[int]:
    rows = conn.execute(statement("SELECT DISTINCT invoice_id FROM payments WHERE created_at >= :cut_from "
                                  "AND created_at < :cut_before AND invoice_id IS NOT NULL "
                                  "AND status IN ('failed', 'succeeded')"),
                        {"cut_from": old_now, "cut_before": new_now}).scalars()
    return {int(i) for i in rows}


def _failure_days(conn: Connection, invoices: set[int], tz: tzinfo, new_now: datetime) -> set[date]:
    """The local days of the failed payments of ``invoices`` (where their first failure is, before
    and after the change): the days whose recovery is redone."""
    out: set[date] = set()
    for chunk in _chunks(sorted(invoices)):
        rows = conn.execute(statement(f"SELECT created_at FROM payments WHERE invoice_id IN ({listed(chunk)}) "
                                      "AND status = 'failed' AND created_at < :cut_before"), {"cut_before": new_now})
        out |= {_local_day(_aware(at), tz) for at in rows.scalars()}
    return out


def _write(conn: Connection, deltas: dict[str, dict[tuple[Any, ...], list[int]]], redo: set[date]) -> int:
    """Insert the deltas as extra rows of their days and months, then sum each touched day and
    month back to one row per group (dropping groups that came to nothing). The months of redone
    days are summed again from their days."""
    written = 0
    redo_months = {d.replace(day=1) for d in redo}
    for kind, rows in deltas.items():
        k = KINDS[kind]
        days = {key: vec for key, vec in rows.items() if any(vec)}
        months: dict[tuple[Any, ...], list[int]] = {}
        for key, vec in days.items():
            month = key[0].replace(day=1)
            if month not in redo_months:  # (those are summed again from their days below)
                acc = months.setdefault((month, *key[1:]), [0] * len(vec))
                for i, v in enumerate(vec):
                    acc[i] += v
        for table, period, moved in ((k.daily, "day", days), (k.monthly, "month", months)):
            moved = {key: vec for key, vec in moved.items() if any(vec)}
            if moved:
                cols = (period, *GROUP_OUT[1:], *k.keys, *k.measures)
                conn.execute(text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(f':c{i}' for i in range(len(cols)))})"),
                             [{f"c{i}": v for i, v in enumerate((*key, *vec))} for key, vec in moved.items()])
                written += len(moved)
                _compact(conn, table, period, sorted({key[0] for key in moved}), k.keys, k.measures)
    if redo:
        for kind in ("cash", "payments", "declines"):
            _resum_months(conn, kind, sorted(redo_months))
    return written


def _compact(conn: Connection, table: str, period: str, periods: list[date], keys: tuple[str, ...],
             measures: tuple[str, ...]) -> None:
    """Sum the rows of ``periods`` to one per group; a group whose sums are all zero goes."""
    group = ", ".join((*GROUP_OUT[1:], *keys))
    marks = ", ".join(f":p{i}" for i in range(len(periods)))
    params: dict[str, Any] = {f"p{i}": p for i, p in enumerate(periods)}
    top = conn.execute(text(f"SELECT MAX(id) FROM {table} WHERE {period} IN ({marks})"), params).scalar()
    if top is None:
        return
    params["top"] = top
    sums = ", ".join(f"SUM({m})" for m in measures)
    nonzero = " OR ".join(f"SUM({m}) <> 0" for m in measures)
    conn.execute(text(f"INSERT INTO {table} ({period}, {group}, {', '.join(measures)}) "
                      f"SELECT {period}, {group}, {sums} FROM {table} WHERE {period} IN ({marks}) AND id <= :top "
                      f"GROUP BY {period}, {group} HAVING {nonzero}"), params)
    conn.execute(text(f"DELETE FROM {table} WHERE {period} IN ({marks}) AND id <= :top"), params)


def _resum_months(conn: Connection, kind: str, months: list[date]) -> None:
    """Sum the daily rows of ``months`` again into their monthly rows."""
    k = KINDS[kind]
    group = ", ".join((*GROUP_OUT[1:], *k.keys))
    sums = ", ".join(f"SUM({m})" for m in k.measures)
    for month in months:
        end = (month + timedelta(days=32)).replace(day=1)
        conn.execute(text(f"DELETE FROM {k.monthly} WHERE month = :m"), {"m": month})
        conn.execute(text(f"INSERT INTO {k.monthly} (month, {group}, {', '.join(k.measures)}) "
                          f"SELECT {month_of(conn.dialect.name, 'day')}, {group}, {sums} FROM {k.daily} "
                          f"WHERE day >= :m AND day < :n GROUP BY 1, {group}"), {"m": month, "n": end})


def _chunks(values: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _aware(value: str | datetime) -> datetime:
    """A time read by a plain SQL statement: SQLite gives its stored naive-UTC spelling."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


