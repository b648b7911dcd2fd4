"""Move the movement and cohort rollups forward by sweeping only the members that changed.

Every figure in ``metrics_mrr_periods`` and ``metrics_cohorts`` is a sum over units (member,
currency) of what ``core.metrics.sweep`` computes for that unit. So the rows stay exact when we
subtract the old contribution of the members whose figures can move and add their new one,
instead of sweeping every segment again. Two things move a member's figures:

- a write: its segments are rebuilt (the refresh sweeps those members before and after);
- time: the rows were built up to an instant ``old_now`` (the last period ends there) and are
  wanted up to ``new_now``. A member whose segments have no start or end in between is in the
  same state all along: its row of the last period is the same with either end, and every period
  after it adds the member's steady MRR (start = end, no movement). Only the members with a
  segment boundary between the two instants are swept.

So the stored rows plus ``shift`` give what a full sweep up to ``new_now`` gives. The refresh
writes the difference (``prepare`` / ``apply``); a page reading the rollups adds it in memory
(``tail``) to answer up to the present minute without writing. Rows that end all zero are
deleted, as a full rebuild never writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, text

from core.db.types import UTCDateTime
from core.metrics import sweep
from core.metrics.movements import MOVEMENT_COLUMNS
from core.metrics.segments import Touched

MAX_MEMBERS = 20_000  # beyond this a full sweep is about as fast
GRANULARITIES = ("month", "week", "day")
_GROUP = ("currency", "tier_id", "interval", "country")
_CELL = ("members", "mrr", "size")
_START, _END = MOVEMENT_COLUMNS.index("mrr_start"), MOVEMENT_COLUMNS.index("mrr_end")
_M_START, _M_END = MOVEMENT_COLUMNS.index("members_start"), MOVEMENT_COLUMNS.index("members_end")

Bounds = list[tuple[date, datetime]]  # (label, start) of each period, then (date.max, closing instant)
Group = tuple[Any, ...]


def labels_of(bounds: Bounds) -> list[date]:
    return [b[0] for b in bounds[:-1]]


def members_moving(conn: Connection, a: datetime, b: datetime) -> set[int]:
    """Members with a segment starting or ending in ``(min(a, b), max(a, b)]``: the only ones whose
    MRR, tier or churn can differ between the two instants. A UNION: each half reads its index."""
    lo, hi = min(a, b), max(a, b)
    if lo == hi:
        return set()
    ts = UTCDateTime()
    stmt = text("SELECT member_id FROM metrics_mrr_segments WHERE valid_from > :lo AND valid_from <= :hi UNION "
                "SELECT member_id FROM metrics_mrr_segments WHERE valid_to > :lo AND valid_to <= :hi"
                ).bindparams(bindparam("lo", type_=ts), bindparam("hi", type_=ts))
    return {int(m) for m in conn.execute(stmt, {"lo": lo, "hi": hi}).scalars()}


def first_index(bounds: Bounds, label: date) -> int:
    """Index of the last period starting at or before ``label`` (0 when none)."""
    return max((i for i, lab in enumerate(labels_of(bounds)) if lab <= label), default=0)


def sweep_members(conn: Connection, bounds: Bounds, k: int, units: list[sweep.Unit], *,
                  cohorts: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rows of the members whose ``units`` (``sweep.units``) are given."""
    if not units:
        return [], []
    return sweep.run(conn, [b[1] for b in bounds], k, units, cohorts=cohorts)


def shift(old_bounds: Bounds, old: tuple[list[dict[str, Any]], list[dict[str, Any]]], new_bounds: Bounds,
          new: tuple[list[dict[str, Any]], list[dict[str, Any]]], stored_last: Iterable[dict[str, Any]], stored_cells: Iterable[dict[str, Any]],
          ) -> tuple[dict[tuple[Any, ...], list[int]], dict[tuple[Any, ...], list[int]]]:
    """What to add to rows built with ``old_bounds`` to get rows built with ``new_bounds``:
    (movements keyed (period, *group), cohort cells keyed (cohort, month, *group)).

    ``old`` / ``new``: the sweep of the moving members with each bounds (from the same first
    period). ``stored_last`` / ``stored_cells``: the stored movement rows and cohort cells of the
    old bounds' last period (all groups), used only when the new bounds have periods after it:
    the steady members' MRR carried into them."""
    old_labels, new_labels = labels_of(old_bounds), labels_of(new_bounds)
    moves = _diff(old[0], new[0], lambda r: (old_labels[r["p"]], *(r[c] for c in _GROUP)),
                  lambda r: (new_labels[r["p"]], *(r[c] for c in _GROUP)), MOVEMENT_COLUMNS)
    cells = _diff(old[1], new[1], lambda r: (old_labels[r["cohort"]], old_labels[r["p"]], *(r[c] for c in _GROUP)),
                  lambda r: (new_labels[r["cohort"]], new_labels[r["p"]], *(r[c] for c in _GROUP)), _CELL)
    later = [lab for lab in new_labels if old_labels and lab > old_labels[-1]]
    if not later:
        return moves, cells
    last = old_labels[-1]
    # The steady members at the old closing instant, per group: stored minus the moving members.
    base: dict[Group, list[int]] = {}
    for r in stored_last:
        acc = base.setdefault(tuple(r[c] for c in _GROUP), [0, 0])
        acc[0] += int(r["mrr_end"])
        acc[1] += int(r["members_end"])
    for r in old[0]:
        if old_labels[r["p"]] == last:
            acc = base.setdefault(tuple(r[c] for c in _GROUP), [0, 0])
            acc[0] -= int(r["mrr_end"])
            acc[1] -= int(r["members_end"])
    for g, (mrr, count) in base.items():
        if not (mrr or count):
            continue
        for lab in later:
            vec = moves.setdefault((lab, *g), [0] * len(MOVEMENT_COLUMNS))
            vec[_START] += mrr
            vec[_END] += mrr
            vec[_M_START] += count
            vec[_M_END] += count
    cbase: dict[tuple[Any, ...], list[int]] = {}
    for r in stored_cells:
        acc = cbase.setdefault((r["cohort"], *(r[c] for c in _GROUP)), [0, 0])
        acc[0] += int(r["members"])
        acc[1] += int(r["mrr"])
    for r in old[1]:
        if old_labels[r["p"]] == last:
            acc = cbase.setdefault((old_labels[r["cohort"]], *(r[c] for c in _GROUP)), [0, 0])
            acc[0] -= int(r["members"])
            acc[1] -= int(r["mrr"])
    for (cohort, *group), (count, mrr) in cbase.items():
        if not (count or mrr):
            continue
        for lab in later:
            vec = cells.setdefault((cohort, lab, *group), [0] * len(_CELL))
            vec[0] += count
            vec[1] += mrr
    return {k: v for k, v in moves.items() if any(v)}, {k: v for k, v in cells.items() if any(v)}


def _diff(old: list[dict[str, Any]], new: list[dict[str, Any]], old_key: Callable[[dict[str, Any]], tuple[Any, ...]], new_key: Callable[[dict[str, Any]], tuple[Any, ...]],
          cols: tuple[str, ...]) -> dict[tuple[Any, ...], list[int]]:
    out: dict[tuple[Any, ...], list[int]] = {}
    for sign, rows, key in ((-1, old, old_key), (1, new, new_key)):
        for r in rows:
            vec = out.setdefault(key(r), [0] * len(cols))
            for i, c in enumerate(cols):
                vec[i] += sign * int(r[c])
    return {k: v for k, v in out.items() if any(v)}


# ------------------------------------------------------------------------ the incremental refresh

@dataclass
class Delta:
    members: list[int]
    first: dict[str, int]  # first period touched: earlier periods of these members did not change
    old_bounds: dict[str, Bounds]
    old: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]


def prepare(conn: Connection, touched: Touched, since_day: date, old_now: datetime, new_now: datetime,
            bounds_for: Any) -> Delta | None:
    """Sweep the members whose figures can move (touched by a write since ``since``, or with a
    segment boundary between the two builds' ``now``) as they are now, before the rebuild; None
    when the incremental update does not apply (time going backwards, a write effective after
    the last build's ``now`` that it could not know of, or very many members).
    ``bounds_for(granularity, now)`` gives the period bounds."""
    if touched.since > old_now or new_now < old_now:
        return None
    old_bounds: dict[str, Bounds] = {}
    for g in GRANULARITIES:
        before, after = bounds_for(g, old_now), bounds_for(g, new_now)
        if len(before) < 2 or labels_of(after)[:len(before) - 1] != labels_of(before):
            return None
        old_bounds[g] = before
    stmt = touched.statement(f"SELECT DISTINCT member_id FROM membership_changes WHERE subscription_id IN "
                             f"({touched.sql()})")
    written = {int(m) for m in conn.execute(stmt, touched.params()).scalars() if m is not None}
    members = sorted(written | members_moving(conn, old_now, new_now))
    if len(members) > MAX_MEMBERS:
        return None
    # Segments before ``since`` are unchanged (a change recorded late moved ``since`` back to it),
    # so only the periods from the one containing since_day on can move (and the one before, which
    # ends at ``since`` when it falls on a boundary: its closing MRR is taken there), and time
    # only moves the last period on.
    edge = since_day - timedelta(days=1)
    first = {g: min(first_index(old_bounds[g], edge), len(old_bounds[g]) - 2) for g in GRANULARITIES}
    units = sweep.units(conn, members)
    old = {g: sweep_members(conn, old_bounds[g], first[g], units, cohorts=g == "month") for g in GRANULARITIES}
    return Delta(members, first, old_bounds, old)


def apply(conn: Connection, delta: Delta, bounds_for: Any, now: datetime) -> None:
    """Sweep the members again over their rebuilt segments and move the rollup rows by the
    difference (and carry the steady members into periods started since the last build)."""
    units = sweep.units(conn, delta.members)  # their rebuilt segments
    for g in GRANULARITIES:
        old_bounds, new_bounds = delta.old_bounds[g], bounds_for(g, now)
        new = sweep_members(conn, new_bounds, delta.first[g], units, cohorts=g == "month")
        last = labels_of(old_bounds)[-1]
        grows = len(new_bounds) > len(old_bounds)
        stored = _rows(conn, "metrics_mrr_periods", "granularity = :g AND period = :p",
                       {"g": g, "p": last}) if grows else []
        cells = _rows(conn, "metrics_cohorts", "month = :p", {"p": last}) if grows and g == "month" else []
        moves, cell_moves = shift(old_bounds, delta.old[g], new_bounds, new, stored, cells)
        _write(conn, "metrics_mrr_periods", ("period",), MOVEMENT_COLUMNS, moves, {"granularity": g})
        if g == "month":
            _write(conn, "metrics_cohorts", ("cohort", "month"), _CELL, cell_moves, {})


def _rows(conn: Connection, table: str, where: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in conn.execute(text(f"SELECT * FROM {table} WHERE {where}"), params).mappings():
        d = dict(r)
        if "cohort" in d:
            d["cohort"] = _as_date(d["cohort"])
        out.append(d)
    return out


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _write(conn: Connection, table: str, dates: tuple[str, ...], cols: tuple[str, ...],
           changes: dict[tuple[Any, ...], list[int]], fixed: dict[str, str]) -> None:
    if not changes:
        return
    first = sorted({k[0] for k in changes})
    cond = "".join(f" AND {c} = :{c}" for c in fixed)
    stmt = text(f"SELECT id, {', '.join(dates + _GROUP + cols)} FROM {table} "
                f"WHERE {dates[0]} IN :firsts{cond}").bindparams(bindparam("firsts", expanding=True))
    existing: dict[tuple[Any, ...], tuple[int, list[int]]] = {}
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
