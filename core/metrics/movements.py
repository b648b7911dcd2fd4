"""MRR movements per member between consecutive boundaries, in SQL over the segments.

For boundaries ``b_0 < b_1 < ... < b_n`` the MRR of each unit (a member in one currency) is taken
at every boundary; period i compares ``b_i`` with ``b_{i+1}``: new (0 -> >0, never paid before),
reactivation (0 -> >0, paid before), expansion (increase), contraction (decrease, still > 0),
churn (>0 -> 0, voluntary or involuntary by the change that ended it). A unit is counted in the
tier, interval and country it ends the period in (or started it in, if it churned); a unit paying
at both ends in different groups is a transfer out of its start group (its start MRR) and a
transfer in to its end group (the same amount, then its expansion or contraction there). So for
every group and period: ``mrr_end = mrr_start + new + reactivation + expansion - contraction -
churn + transfer_in - transfer_out``, and over all groups the transfers cancel.

The same SQL fills the rollup table ``metrics_mrr_periods`` (business-zone months and weeks) and
answers any other question (days, another time zone) from the segments directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, text

from core.db.types import UTCDateTime

GROUP_COLUMNS = ("currency", "tier_id", "interval", "country")
MOVEMENT_COLUMNS = ("mrr_start", "mrr_end", "new", "reactivation", "expansion", "contraction", "churn",
                    "churn_voluntary", "churn_involuntary", "members_start", "members_end", "members_new",
                    "members_reactivated", "members_churned", "members_churned_voluntary",
                    "members_churned_involuntary", "transfer_in", "transfer_out", "members_transferred_in",
                    "members_transferred_out")


def bounds_cte(dialect: str, bounds: list[datetime]) -> tuple[str, list[Any]]:
    cast = "CAST(:b{i} AS TIMESTAMP WITH TIME ZONE)" if dialect == "postgresql" else ":b{i}"
    parts = [f"SELECT {i} AS i, {cast.format(i=i)} AS b" for i in range(len(bounds))]
    params = [bindparam(f"b{i}", value=b, type_=UTCDateTime()) for i, b in enumerate(bounds)]
    return " UNION ALL ".join(parts), params


def _snap_sql(unit_filter: str = "") -> str:
    # MRR of each unit at each boundary; only units paying there have a row.
    return f"""
snap AS (
    SELECT s.member_id, s.currency, bd.i, SUM(s.mrr_minor) AS mrr,
           MAX(s.tier_id) AS tier_id, MAX(s.interval) AS interval, MAX(s.country) AS country
    FROM metrics_mrr_segments s
    JOIN bounds bd ON s.valid_from <= bd.b AND (s.valid_to IS NULL OR s.valid_to > bd.b)
    WHERE s.mrr_minor > 0 {unit_filter}
    GROUP BY s.member_id, s.currency, bd.i
)"""


def movements_sql(dialect: str, bounds: list[datetime], *, member_id: int | None = None) -> tuple[str, list[Any]]:
    """SQL returning one row per (period index p, group) with MOVEMENT_COLUMNS."""
    cte, params = bounds_cte(dialect, bounds)
    n = len(bounds) - 1
    unit_filter = "AND s.member_id = :member_id" if member_id is not None else ""
    sql = f"""
WITH bounds AS ({cte}),
{_snap_sql(unit_filter)},
pairs AS (
    SELECT member_id, currency, i AS p, mrr AS s_mrr, 0 AS e_mrr,
           tier_id AS s_tier, interval AS s_interval, country AS s_country,
           NULL AS e_tier, NULL AS e_interval, NULL AS e_country
    FROM snap WHERE i < {n}
    UNION ALL
    SELECT member_id, currency, i - 1, 0, mrr, NULL, NULL, NULL, tier_id, interval, country
    FROM snap WHERE i > 0
),
units AS (
    SELECT member_id, currency, p, SUM(s_mrr) AS s, SUM(e_mrr) AS e,
           MAX(s_tier) AS s_tier, MAX(s_interval) AS s_interval, MAX(s_country) AS s_country,
           MAX(e_tier) AS e_tier, MAX(e_interval) AS e_interval, MAX(e_country) AS e_country
    FROM pairs GROUP BY member_id, currency, p
),
classified AS (
    SELECT u.*,
           CASE WHEN u.s = 0 AND u.e > 0 THEN
                CASE WHEN EXISTS (SELECT 1 FROM metrics_mrr_segments f
                                  WHERE f.member_id = u.member_id AND f.currency = u.currency AND f.mrr_minor > 0
                                    AND f.valid_from < (SELECT b FROM bounds WHERE i = u.p)
                                    AND (f.valid_to IS NULL OR f.valid_to > f.valid_from))
                     THEN 'reactivation' ELSE 'new' END
                WHEN u.s > 0 AND u.e = 0 THEN
                COALESCE((SELECT MAX(z.churn_kind) FROM metrics_mrr_segments z
                          WHERE z.member_id = u.member_id AND z.currency = u.currency AND z.mrr_minor = 0
                            AND z.valid_from > (SELECT b FROM bounds WHERE i = u.p)
                            AND z.valid_from <= (SELECT b FROM bounds WHERE i = u.p + 1)), 'voluntary')
           END AS kind,
           CASE WHEN u.s > 0 AND u.e > 0 AND (COALESCE(u.s_tier, -1) <> COALESCE(u.e_tier, -1)
                     OR COALESCE(u.s_interval, '') <> COALESCE(u.e_interval, '')
                     OR COALESCE(u.s_country, '') <> COALESCE(u.e_country, '')) THEN 1 ELSE 0 END AS moved
    FROM units u
),
legs AS (
    -- One row per unit and period in the group it ends in (or started in, if it churned); a unit
    -- that moved between groups instead leaves its start group (transfer out of its start MRR)
    -- and enters its end group (transfer in of that MRR, then its expansion or contraction).
    SELECT member_id, currency, p, s, e, kind,
           CASE WHEN e > 0 THEN e_tier ELSE s_tier END AS tier_id,
           CASE WHEN e > 0 THEN e_interval ELSE s_interval END AS interval,
           CASE WHEN e > 0 THEN e_country ELSE s_country END AS country,
           s AS ls, e AS le, 0 AS tin, 0 AS tout
    FROM classified WHERE moved = 0
    UNION ALL
    SELECT member_id, currency, p, s, e, 'transfer_out', s_tier, s_interval, s_country, s, 0, 0, s
    FROM classified WHERE moved = 1
    UNION ALL
    SELECT member_id, currency, p, s, e, 'transfer_in', e_tier, e_interval, e_country, 0, e, s, 0
    FROM classified WHERE moved = 1
)
SELECT p, currency, tier_id, interval, country,
       SUM(ls) AS mrr_start, SUM(le) AS mrr_end,
       SUM(CASE WHEN kind = 'new' THEN e ELSE 0 END) AS new,
       SUM(CASE WHEN kind = 'reactivation' THEN e ELSE 0 END) AS reactivation,
       SUM(CASE WHEN s > 0 AND le > 0 AND e > s THEN e - s ELSE 0 END) AS expansion,
       SUM(CASE WHEN s > 0 AND le > 0 AND e < s THEN s - e ELSE 0 END) AS contraction,
       SUM(CASE WHEN s > 0 AND e = 0 THEN s ELSE 0 END) AS churn,
       SUM(CASE WHEN s > 0 AND e = 0 AND kind = 'voluntary' THEN s ELSE 0 END) AS churn_voluntary,
       SUM(CASE WHEN s > 0 AND e = 0 AND kind = 'involuntary' THEN s ELSE 0 END) AS churn_involuntary,
       SUM(CASE WHEN ls > 0 THEN 1 ELSE 0 END) AS members_start,
       SUM(CASE WHEN le > 0 THEN 1 ELSE 0 END) AS members_end,
       SUM(CASE WHEN kind = 'new' THEN 1 ELSE 0 END) AS members_new,
       SUM(CASE WHEN kind = 'reactivation' THEN 1 ELSE 0 END) AS members_reactivated,
       SUM(CASE WHEN s > 0 AND e = 0 THEN 1 ELSE 0 END) AS members_churned,
       SUM(CASE WHEN s > 0 AND e = 0 AND kind = 'voluntary' THEN 1 ELSE 0 END) AS members_churned_voluntary,
       SUM(CASE WHEN s > 0 AND e = 0 AND kind = 'involuntary' THEN 1 ELSE 0 END) AS members_churned_involuntary,
       SUM(tin) AS transfer_in, SUM(tout) AS transfer_out,
       SUM(CASE WHEN tin > 0 THEN 1 ELSE 0 END) AS members_transferred_in,
       SUM(CASE WHEN tout > 0 THEN 1 ELSE 0 END) AS members_transferred_out
FROM legs
GROUP BY p, currency, tier_id, interval, country
"""
    return sql, params


def unit_rows_sql(dialect: str, bounds: list[datetime]) -> tuple[str, list[Any]]:
    """Per-unit rows of every period (index ``p``) with the movement kind: the drill-down."""
    full, params = movements_sql(dialect, bounds)
    body = full.split("SELECT p, currency, tier_id, interval, country,\n       SUM(ls)", 1)[0]
    return body + """
SELECT c.p, c.member_id, c.currency, c.tier_id, c.interval, c.country, c.ls AS mrr_start_minor,
       c.le AS mrr_end_minor, c.tin - c.tout AS transfer_minor,
       CASE WHEN c.kind IN ('new', 'reactivation', 'transfer_in', 'transfer_out') THEN c.kind
            WHEN c.s > 0 AND c.e = 0 THEN 'churn'
            WHEN c.e > c.s THEN 'expansion'
            WHEN c.e < c.s THEN 'contraction' ELSE 'unchanged' END AS movement,
       CASE WHEN c.kind = 'transfer_in' AND c.e > c.s THEN 'expansion'
            WHEN c.kind = 'transfer_in' AND c.e < c.s THEN 'contraction' END AS price_change_with_move,
       CASE WHEN c.s > 0 AND c.e = 0 THEN c.kind END AS churn_kind
FROM legs c
""", params


def cohort_sql(dialect: str, bounds: list[datetime], k: int = 0) -> tuple[str, list[Any]]:
    """Cohort cells: cohort index (period of first MRR > 0) x period index p (paying at the end of
    period p), plus size rows (p = cohort, ``size`` = members whose first paid period it is).
    Only periods >= k are produced (incremental refresh)."""
    cte, params = bounds_cte(dialect, bounds)
    n = len(bounds) - 1
    sql = f"""
WITH bounds AS ({cte}),
{_snap_sql(f"AND bd.i > {k}")},
firsts AS (
    SELECT member_id, currency, MIN(valid_from) AS first_paid
    FROM metrics_mrr_segments
    WHERE mrr_minor > 0 AND (valid_to IS NULL OR valid_to > valid_from)
    GROUP BY member_id, currency
),
cohorts AS (
    SELECT f.member_id, f.currency, f.first_paid, bd.i AS cohort
    FROM firsts f JOIN bounds bd ON f.first_paid >= bd.b
    JOIN bounds nx ON nx.i = bd.i + 1 AND f.first_paid < nx.b
    WHERE bd.i < {n}
),
first_dims AS (
    SELECT c.member_id, c.currency, c.cohort, MAX(x.tier_id) AS tier_id, MAX(x.interval) AS interval,
           MAX(x.country) AS country
    FROM cohorts c JOIN metrics_mrr_segments x ON x.member_id = c.member_id AND x.currency = c.currency
         AND x.valid_from = c.first_paid AND x.mrr_minor > 0
    WHERE c.cohort >= {k}
    GROUP BY c.member_id, c.currency, c.cohort
),
cells AS (
    SELECT c.cohort, sn.i - 1 AS p, sn.currency, sn.tier_id, sn.interval, sn.country,
           1 AS members, sn.mrr AS mrr, 0 AS size
    FROM cohorts c JOIN snap sn ON sn.member_id = c.member_id AND sn.currency = c.currency AND sn.i > c.cohort
    UNION ALL
    SELECT cohort, cohort, currency, tier_id, interval, country, 0, 0, 1 FROM first_dims
)
SELECT cohort, p, currency, tier_id, interval, country, SUM(members) AS members, SUM(mrr) AS mrr,
       SUM(size) AS size
FROM cells GROUP BY cohort, p, currency, tier_id, interval, country
"""
    return sql, params


def run(conn: Connection, sql: str, params: list[Any], extra: dict[str, Any] | None = None) -> Sequence[RowMapping]:
    stmt = text(sql).bindparams(*params)
    return conn.execute(stmt, extra or {}).mappings().all()
