"""One pass over the MRR segments, member by member, that fills the movement and cohort rollups.

It computes exactly what ``core.metrics.movements`` computes in SQL (the property tests compare
the two), but in time linear in the number of segments: between two change points a member's MRR
and tier are constant, so every period entirely inside such a stretch is added to the group's
totals with a range update; only the periods in which a change point falls are classified one by
one (new, reactivation, expansion, contraction, churn). A SQL join of every segment with every
period boundary grows with members x periods instead.

Times are compared as the database returns them (SQLite: the stored text; PostgreSQL: aware
datetimes); the boundaries are spelled the same way.
"""

from __future__ import annotations

import bisect
import functools
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection

from core.metrics.daily import listed
from core.metrics.movements import MOVEMENT_COLUMNS

Group = tuple[str, Any, Any, Any]  # currency, tier_id, interval, country
_IDX = {c: i for i, c in enumerate(MOVEMENT_COLUMNS)}


def spell(conn: Connection, moment: datetime) -> Any:
    """A boundary spelled like the segment times the driver returns."""
    if conn.dialect.name == "sqlite":
        return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")
    return moment


@functools.lru_cache(maxsize=32)
def _spelled(dialect: str, bounds: tuple[datetime, ...]) -> list[Any]:
    """The bounds spelled once: six years of days are 2,200 ``strftime`` calls, asked for again by
    every tail read and refresh (never changed by callers)."""
    if dialect == "sqlite":
        return [b.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f") for b in bounds]
    return list(bounds)


_NO_STATE = (0, None, None, None)


class Unit:
    """One (member, currency)'s segment rows, in order, with what every sweep of them asks first,
    worked out once: a refresh or a page's tail sweeps the same units with several bounds (month,
    week and day), and these were a third of each sweep's CPU."""

    __slots__ = ("rows", "currency", "points", "paying", "first_paid", "first_dims", "_states")

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows
        self.currency = rows[0][1]
        # Change points: every start and end. Between two of them the unit's state is constant.
        self.points = sorted({r[5] for r in rows} | {r[6] for r in rows if r[6] is not None})
        self.paying = [r for r in rows if r[7] > 0 and (r[6] is None or r[6] > r[5])]
        self.first_paid = min((r[5] for r in self.paying), default=None)
        dims = [r for r in self.paying if r[5] == self.first_paid]
        self.first_dims = (max((r[2] for r in dims if r[2] is not None), default=None),
                           max((r[3] for r in dims if r[3] is not None), default=None),
                           max((r[4] for r in dims if r[4] is not None), default=None))
        self._states: dict[int, tuple[int, Any, Any, Any]] = {}

    def stretch_state(self, j: int) -> tuple[int, Any, Any, Any]:
        """The state in stretch ``j``, ``[points[j - 1], points[j])`` (0: before the first point)."""
        found = self._states.get(j)
        if found is None:
            found = self._states[j] = _state(self.rows, self.points[j - 1]) if j > 0 else _NO_STATE
        return found

    def state_at(self, b: Any) -> tuple[int, Any, Any, Any]:
        """``_state(rows, b)``: the state of the stretch holding ``b``."""
        return self.stretch_state(bisect.bisect_right(self.points, b))


def units(conn: Connection, members: list[int]) -> list[Unit]:
    """The units of ``members``, read once: a refresh or a page's tail sweeps the same members with
    several bounds (before and after, month, week and day), and reading their segments cost more
    than sweeping them (a hundred milliseconds for two thousand members at a million)."""
    return [Unit(rows) for rows in _units(conn, members)] if members else []


def _units(conn: Connection, members: list[int] | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Segments grouped by unit (member, currency), streamed in order; only ``members`` when given."""
    raw = conn.connection.driver_connection
    assert raw is not None  # an open connection has its driver's
    cur = raw.cursor()
    # Member ids are integers read from the database, spelled inline (no driver-specific paramstyle).
    where = "" if members is None else f"WHERE member_id IN ({listed(members)}) "
    cur.execute("SELECT member_id, currency, tier_id, interval, country, valid_from, valid_to, mrr_minor, churn_kind "
                f"FROM metrics_mrr_segments {where}ORDER BY member_id, currency, valid_from, id")
    unit: list[tuple[Any, ...]] = []
    key = None
    # PostgreSQL's times come back in the server's zone object (Etc/UTC); compared with bounds in
    # ``datetime.UTC`` each comparison asks both for their offset, 18 times slower than between
    # two times of one zone object. The sweep makes hundreds of thousands of them (bisect, state).
    aware = conn.dialect.name == "postgresql"
    while True:
        rows = cur.fetchmany(20000)
        if not rows:
            break
        if aware:
            rows = [(*r[:5], r[5].astimezone(UTC), None if r[6] is None else r[6].astimezone(UTC), *r[7:])
                    for r in rows]
        for r in rows:
            k = (r[0], r[1])
            if k != key and unit:
                yield unit
                unit = []
            key = k
            unit.append(r)
    if unit:
        yield unit
    cur.close()


def _state(unit: list[tuple[Any, ...]], b: Any) -> tuple[int, Any, Any, Any]:
    """MRR of the unit at instant b and its tier/interval/country (max over paying segments)."""
    mrr = 0
    tier = interval = country = None
    for r in unit:
        if r[7] > 0 and r[5] <= b and (r[6] is None or r[6] > b):
            mrr += r[7]
            tier = r[2] if tier is None or (r[2] is not None and r[2] > tier) else tier
            interval = r[3] if interval is None or (r[3] is not None and r[3] > interval) else interval
            country = r[4] if country is None or (r[4] is not None and r[4] > country) else country
    return mrr, tier, interval, country


def run(conn: Connection, bounds: list[datetime], k: int = 0,
        swept: list[Unit] | None = None, *, cohorts: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(movement rows for periods >= k, cohort rows for periods >= k); ``p``/``cohort`` are
    period indexes into ``bounds`` (period p = [bounds[p], bounds[p+1])). With ``swept`` (from
    ``units``) only those units are swept, else every one: every figure is a sum over units, so
    the rows are their contribution.
    ``cohorts=False`` skips the cohort cells (kept by month only: by day they would be a table of
    first days x days)."""
    B = _spelled(conn.dialect.name, tuple(bounds))
    n = len(B) - 1
    k = max(k, 0)
    explicit: dict[tuple[int, Group], list[int]] = defaultdict(lambda: [0] * len(MOVEMENT_COLUMNS))
    # Range updates of stable stretches: diff[group][p - k] for mrr (start = end) and members.
    # Indexed from k: a refresh sweeps from the last few periods of thousands (six years of days).
    diff_mrr: dict[Group, list[int]] = defaultdict(lambda: [0] * (n + 1 - k))
    diff_cnt: dict[Group, list[int]] = defaultdict(lambda: [0] * (n + 1 - k))
    cohort_cells: dict[tuple[int, int, Group], list[int]] = defaultdict(lambda: [0, 0, 0])  # members, mrr, size
    cdiff: dict[tuple[int, Group], tuple[list[int], list[int]]] = {}

    for u in (Unit(rows) for rows in _units(conn)) if swept is None else swept:
        unit, cur, points, paying, first_paid = u.rows, u.currency, u.points, u.paying, u.first_paid
        cohort = bisect.bisect_right(B, first_paid) - 1 if first_paid is not None and cohorts else -1
        if not 0 <= cohort < n:
            cohort = -1
        elif cohort >= k:
            cohort_cells[(cohort, cohort, (cur, *u.first_dims))][2] += 1
        # Stretches between change points: [points[j], points[j+1]) has constant state. Those
        # ending at or before B[k + 1] add to no period from k on: skipped without a look (a
        # member's history is years of stretches; a refresh sweeps the last period or two).
        edges = [None, *points, None]
        from_j = bisect.bisect_right(points, B[k + 1]) if k + 1 <= n else len(edges)
        for j in range(from_j, len(edges) - 1):
            lo = 0 if edges[j] is None else bisect.bisect_left(B, edges[j])
            hi = n + 1 if edges[j + 1] is None else bisect.bisect_left(B, edges[j + 1])
            if hi - lo < 1 or hi < k + 2:
                continue  # (hi < k + 2: every period this stretch could add to is before k)
            mrr, tier, interval, country = u.stretch_state(j)  # B[lo] lies in stretch j
            if mrr <= 0:
                continue
            g = (cur, tier, interval, country)
            if hi - lo >= 2:  # periods lo .. hi-2 have both ends inside the stretch
                a = max(lo, k)
                if a <= hi - 2:
                    diff_mrr[g][a - k] += mrr
                    diff_mrr[g][hi - 1 - k] -= mrr
                    diff_cnt[g][a - k] += 1
                    diff_cnt[g][hi - 1 - k] -= 1
            if cohort >= 0:
                # Cohort cells: unit paying at boundary i > cohort is cell p = i - 1.
                a, z = max(lo, cohort + 1, k + 1), hi - 1
                if a <= z:
                    key = (cohort, g)
                    if key not in cdiff:
                        cdiff[key] = ([0] * (n + 2 - k), [0] * (n + 2 - k))
                    dm, dc = cdiff[key]
                    dm[a - 1 - k] += mrr
                    dm[z - k] -= mrr
                    dc[a - 1 - k] += 1
                    dc[z - k] -= 1
        # Periods in which a change point falls, from k on (points after B[k]): one by one.
        affected = sorted({bisect.bisect_left(B, c) - 1 for c in points[bisect.bisect_right(points, B[k]):]}) if k <= n else []
        for p in affected:
            if p >= n:
                continue
            s, st, si, sc = u.state_at(B[p])
            e, et, ei, ec = u.state_at(B[p + 1])
            if s == 0 and e == 0:
                continue
            g = (cur, et, ei, ec) if e > 0 else (cur, st, si, sc)
            if s > 0 and e > 0 and (st, si, sc) != (et, ei, ec):
                # Moved between groups: out of the start group with its start MRR, into the end
                # group with the same amount (then its expansion or contraction there).
                out = explicit[(p, (cur, st, si, sc))]
                out[_IDX["mrr_start"]] += s
                out[_IDX["members_start"]] += 1
                out[_IDX["transfer_out"]] += s
                out[_IDX["members_transferred_out"]] += 1
                row = explicit[(p, g)]
                row[_IDX["mrr_end"]] += e
                row[_IDX["members_end"]] += 1
                row[_IDX["transfer_in"]] += s
                row[_IDX["members_transferred_in"]] += 1
                if e > s:
                    row[_IDX["expansion"]] += e - s
                elif e < s:
                    row[_IDX["contraction"]] += s - e
                continue
            row = explicit[(p, g)]
            row[_IDX["mrr_start"]] += s
            row[_IDX["mrr_end"]] += e
            if s > 0:
                row[_IDX["members_start"]] += 1
            if e > 0:
                row[_IDX["members_end"]] += 1
            if s == 0 and e > 0:
                returning = any(r[5] < B[p] for r in paying)
                row[_IDX["reactivation" if returning else "new"]] += e
                row[_IDX["members_reactivated" if returning else "members_new"]] += 1
            elif s > 0 and e == 0:
                kinds = [r[8] for r in unit if r[7] == 0 and B[p] < r[5] <= B[p + 1] and r[8] is not None]
                kind = max(kinds) if kinds else "voluntary"
                row[_IDX["churn"]] += s
                row[_IDX[f"churn_{kind}"]] += s
                row[_IDX["members_churned"]] += 1
                row[_IDX[f"members_churned_{kind}"]] += 1
            elif e > s:
                row[_IDX["expansion"]] += e - s
            elif e < s:
                row[_IDX["contraction"]] += s - e

    for g in set(diff_mrr):
        run_mrr = run_cnt = 0
        dm, dc = diff_mrr[g], diff_cnt[g]
        for p in range(k, n):  # the range updates above never start before k
            run_mrr += dm[p - k]
            run_cnt += dc[p - k]
            if run_mrr or run_cnt:
                row = explicit[(p, g)]
                row[_IDX["mrr_start"]] += run_mrr
                row[_IDX["mrr_end"]] += run_mrr
                row[_IDX["members_start"]] += run_cnt
                row[_IDX["members_end"]] += run_cnt
    movements = [{"p": p, "currency": g[0], "tier_id": g[1], "interval": g[2], "country": g[3],
                  **dict(zip(MOVEMENT_COLUMNS, vals, strict=True))}
                 for (p, g), vals in explicit.items() if p >= k and any(vals)]
    for (cohort, g), (dm, dc) in cdiff.items():
        run_mrr = run_cnt = 0
        for p in range(k, n):
            run_mrr += dm[p - k]
            run_cnt += dc[p - k]
            if run_cnt:
                cell = cohort_cells[(cohort, p, g)]
                cell[0] += run_cnt
                cell[1] += run_mrr
    cohort_rows = [{"cohort": c, "p": p, "currency": g[0], "tier_id": g[1], "interval": g[2], "country": g[3],
                "members": v[0], "mrr": v[1], "size": v[2]}
               for (c, p, g), v in cohort_cells.items() if p >= k and any(v)]
    return movements, cohort_rows
