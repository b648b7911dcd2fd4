"""Incremental update of the movement and cohort rollups: sweep only the members touched.

Every figure in ``metrics_mrr_periods`` and ``metrics_cohorts`` is a sum over units (member,
currency) of what ``core.metrics.sweep`` computes for that unit. So when only some members'
segments change, the rows stay exact if we subtract those members' old contribution (swept
before their segments are rebuilt) and add their new one (swept after), instead of sweeping
every segment again. Rows that end all zero are deleted, as a full rebuild never writes them.

This holds only while the periods are the same ones the rows were built with: ``prepare``
returns None (the caller then sweeps everything from the first touched period) when a new week
or month has started since the last build, when ``since`` is after the last build's ``now``
(a change taking effect in between would be missed), or when very many members are touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text

from core.db.types import UTCDateTime
from core.metrics import sweep
from core.metrics.movements import MOVEMENT_COLUMNS
from core.metrics.segments import affected_subscriptions_sql

MAX_MEMBERS = 20_000  # beyond this a full sweep is about as fast
GRANULARITIES = ("month", "week")
_GROUP = ("currency", "tier_id", "interval", "country")
_CELL = ("members", "mrr", "size")

Bounds = list[tuple[date, datetime]]


@dataclass
class Delta:
    members: list[int]
    labels: dict[str, list[date]]
    first: dict[str, int]  # first period touched: earlier periods of these members did not change
    old: dict[str, tuple[list[dict], list[dict]]]


def prepare(conn: Connection, since: datetime, since_day: date, old_now: datetime, new_now: datetime,
            bounds_for: Any) -> Delta | None:
    """Sweep the touched members' segments as they are now (before the rebuild), or None when the
    incremental update does not apply. ``bounds_for(granularity, now)`` gives the period bounds."""
    if since > old_now or new_now < old_now:
        return None
    labels: dict[str, list[date]] = {}
    old_bounds: dict[str, Bounds] = {}
    for g in GRANULARITIES:
        before, after = bounds_for(g, old_now), bounds_for(g, new_now)
        if [b[0] for b in before] != [b[0] for b in after] or len(before) < 2:
            return None
        labels[g] = [b[0] for b in after]
        old_bounds[g] = before
    stmt = text(f"SELECT DISTINCT member_id FROM membership_changes WHERE subscription_id IN "
                f"({affected_subscriptions_sql()})").bindparams(bindparam("since", type_=UTCDateTime()))
    members = sorted(int(m) for m in conn.execute(stmt, {"since": since}).scalars() if m is not None)
    if len(members) > MAX_MEMBERS:
        return None
    # Segments before ``since`` are unchanged (a change recorded late moved ``since`` back to it),
    # so only the periods from the one containing since_day on can move.
    first = {g: max((i for i, label in enumerate(labels[g][:-1]) if label <= since_day), default=0)
             for g in GRANULARITIES}
    old = {g: sweep.run(conn, [b[1] for b in old_bounds[g]], first[g], members) for g in GRANULARITIES}
    return Delta(members, labels, first, old)


def apply(conn: Connection, delta: Delta, bounds_for: Any, now: datetime) -> None:
    """Sweep the touched members' rebuilt segments and move the rollup rows by the difference."""
    for g in GRANULARITIES:
        if not delta.members:
            continue
        new = sweep.run(conn, [b[1] for b in bounds_for(g, now)], delta.first[g], delta.members)
        labels = delta.labels[g]
        moves = _diff(delta.old[g][0], new[0], lambda r, labels=labels: (labels[r["p"]], *(r[c] for c in _GROUP)),
                      MOVEMENT_COLUMNS)
        _write(conn, "metrics_mrr_periods", ("period",), MOVEMENT_COLUMNS, moves, {"granularity": g})
        if g == "month":
            cells = _diff(delta.old[g][1], new[1],
                          lambda r, labels=labels: (labels[r["cohort"]], labels[r["p"]], *(r[c] for c in _GROUP)), _CELL)
            _write(conn, "metrics_cohorts", ("cohort", "month"), _CELL, cells, {})


def _diff(old: list[dict], new: list[dict], key: Any, cols: tuple[str, ...]) -> dict[tuple, list[int]]:
    out: dict[tuple, list[int]] = {}
    for sign, rows in ((-1, old), (1, new)):
        for r in rows:
            vec = out.setdefault(key(r), [0] * len(cols))
            for i, c in enumerate(cols):
                vec[i] += sign * int(r[c])
    return {k: v for k, v in out.items() if any(v)}


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _write(conn: Connection, table: str, dates: tuple[str, ...], cols: tuple[str, ...],
           changes: dict[tuple, list[int]], fixed: dict[str, str]) -> None:
    if not changes:
        return
    first = sorted({k[0] for k in changes})
    cond = "".join(f" AND {c} = :{c}" for c in fixed)
    stmt = text(f"SELECT id, {', '.join(dates + _GROUP + cols)} FROM {table} "
                f"WHERE {dates[0]} IN :firsts{cond}").bindparams(bindparam("firsts", expanding=True))
    existing: dict[tuple, tuple[int, list[int]]] = {}
    for row in conn.execute(stmt, {"firsts": first, **fixed}):
        nd = len(dates)
        k = (*(_as_date(v) for v in row[1:1 + nd]), *row[1 + nd:1 + nd + len(_GROUP)])
        existing[k] = (row[0], [int(v) for v in row[1 + nd + len(_GROUP):]])
    updates, inserts, deletes = [], [], []
    for k, vec in changes.items():
        if k in existing:
            rid, cur = existing[k]
            total = [a + b for a, b in zip(cur, vec, strict=True)]
            if any(total):
                updates.append({"id": rid, **dict(zip(cols, total, strict=True))})
            else:
                deletes.append({"id": rid})
        else:
            inserts.append({**fixed, **dict(zip(dates + _GROUP, k, strict=True)), **dict(zip(cols, vec, strict=True))})
    if updates:
        conn.execute(text(f"UPDATE {table} SET {', '.join(f'{c} = :{c}' for c in cols)} WHERE id = :id"), updates)
    if deletes:
        conn.execute(text(f"DELETE FROM {table} WHERE id = :id"), deletes)
    if inserts:
        names = list(inserts[0])
        conn.execute(text(f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"),
                     inserts)
