"""Build ``metrics_mrr_segments`` from ``membership_changes``.

A segment is a stretch ``[valid_from, valid_to)`` during which one subscription's MRR is
constant: the MRR of a subscription at instant t is ``mrr_after_minor`` of its last change with
``effective_at <= t`` (zero before its first). Past-due grace days are applied here: a run of
``past_due`` segments that lasts longer than the grace days is cut at ``since + N days`` and
continues with MRR 0 and churn kind ``involuntary``. A change of the grace days rebuilds the
table (see ``core.metrics.rollups``). A segment's country is the member's country when its change
was recorded (``membership_changes.country``), so a member who moves never moves their history.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, TextClause, bindparam, text

from core.db.types import UTCDateTime
from core.metrics.daily import CHURN_KIND, listed

_INSERT = f"""
INSERT INTO metrics_mrr_segments (subscription_id, member_id, currency, tier_id, interval, country,
                                  valid_from, valid_to, mrr_minor, status, churn_kind)
SELECT c.subscription_id, c.member_id, c.currency,
       COALESCE(c.to_tier_id, s.tier_id),
       COALESCE(pc.interval, ps.interval),
       COALESCE(c.country, m.country),
       c.effective_at,
       LEAD(c.effective_at) OVER (PARTITION BY c.subscription_id ORDER BY c.effective_at, c.id),
       c.mrr_after_minor,
       c.to_status,
       CASE WHEN c.mrr_after_minor = 0 THEN {CHURN_KIND} END
FROM membership_changes c
JOIN subscriptions s ON s.id = c.subscription_id
JOIN members m ON m.id = c.member_id
LEFT JOIN prices pc ON pc.id = c.to_price_id
LEFT JOIN prices ps ON ps.id = s.price_id
WHERE c.subscription_id IS NOT NULL {{where}}
"""


def affected_subscriptions_sql() -> str:
    """Subscriptions whose segments may change when data at or after :since arrives.
    A UNION, not an OR: each half reads its own index (with OR, SQLite walks every change)."""
    return ("SELECT subscription_id FROM membership_changes WHERE effective_at >= :since "
            "AND subscription_id IS NOT NULL UNION "
            "SELECT subscription_id FROM membership_changes WHERE recorded_at >= :since "
            "AND subscription_id IS NOT NULL")


LISTED_MAX = 20_000  # more touched subscriptions than this: the statements carry the subquery


@dataclass(frozen=True)
class Touched:
    """The subscriptions whose segments may change from ``since``, found once per refresh.

    Each step of an incremental refresh asks for them (the members to sweep, the segments to
    rebuild, the grace days). As a subquery in each statement, PostgreSQL could not know how few
    they are: at 100,000 members, ten days' 2,800 subscriptions were estimated at 7,300, and the
    members to sweep were found by scanning every membership change (190 ms). Listed, each
    statement reads them by its index. ``ids`` is None when there are too many to list."""

    since: datetime
    ids: tuple[int, ...] | None

    @classmethod
    def read(cls, conn: Connection, since: datetime) -> Touched:
        found = conn.execute(text(affected_subscriptions_sql()).bindparams(bindparam("since", type_=UTCDateTime())),
                             {"since": since}).scalars().all()
        return cls(since, tuple(sorted(int(i) for i in found)) if len(found) <= LISTED_MAX else None)

    def sql(self) -> str:
        """What ``subscription_id IN (...)`` holds: the ids (integers read from the database,
        spelled inline), or the subquery."""
        return affected_subscriptions_sql() if self.ids is None else listed(self.ids)

    def statement(self, sql: str) -> TextClause:
        stmt = text(sql)
        return stmt if self.ids is not None else stmt.bindparams(bindparam("since", type_=UTCDateTime()))

    def params(self) -> dict[str, Any]:
        return {} if self.ids is not None else {"since": self.since}


def build(conn: Connection, *, grace_days: int | None, touched: Touched | None = None) -> None:
    """(Re)build the segments of every subscription (``touched`` None) or of the touched ones."""
    if touched is None:
        conn.execute(text("DELETE FROM metrics_mrr_segments"))
        conn.execute(text(_INSERT.format(where="")))
    else:
        sub = touched.sql()
        conn.execute(touched.statement(f"DELETE FROM metrics_mrr_segments WHERE subscription_id IN ({sub})"),
                     touched.params())
        # The list said of both tables: PostgreSQL does not carry an IN list across the join, and
        # scanned every subscription to hash them (40 of a one-day refresh's 56 ms at 100,000).
        also = f" AND s.id IN ({sub})" if touched.ids is not None else ""
        conn.execute(touched.statement(_INSERT.format(where=f"AND c.subscription_id IN ({sub}){also}")),
                     touched.params())
    if grace_days is not None:
        _apply_grace(conn, grace_days, touched)


def _apply_grace(conn: Connection, grace_days: int, touched: Touched | None) -> None:
    ts = UTCDateTime()
    scope = "" if touched is None else f" AND subscription_id IN ({touched.sql()})"
    sql = ("SELECT id, subscription_id, member_id, currency, tier_id, interval, country, valid_from, valid_to, "
           "mrr_minor, status FROM metrics_mrr_segments WHERE subscription_id IN "
           f"(SELECT subscription_id FROM metrics_mrr_segments WHERE status = 'past_due'{scope}) "
           "ORDER BY subscription_id, valid_from, id")
    if touched is None:
        rows = conn.execute(text(sql)).all()
    else:
        rows = conn.execute(touched.statement(sql), touched.params()).all()
    grace = timedelta(days=grace_days)
    zero_ids: list[dict[str, object]] = []
    cuts: list[dict[str, object]] = []
    inserts: list[dict[str, object]] = []
    run_since: datetime | None = None
    prev_sub = None
    for row in rows:
        valid_from = _aware(row.valid_from, conn)
        assert valid_from is not None  # a NOT NULL column
        valid_to = _aware(row.valid_to, conn)
        if row.subscription_id != prev_sub:
            run_since, prev_sub = None, row.subscription_id
        if row.status != "past_due":
            run_since = None
            continue
        if run_since is None:
            run_since = valid_from
        cutoff = run_since + grace
        if valid_to is not None and valid_to <= cutoff:
            continue  # ends inside the grace days: counts in full
        if cutoff <= valid_from:
            zero_ids.append({"id": row.id})
        else:
            cuts.append({"id": row.id, "cutoff": cutoff})
            inserts.append({"subscription_id": row.subscription_id, "member_id": row.member_id,
                            "currency": row.currency, "tier_id": row.tier_id, "interval": row.interval,
                            "country": row.country, "valid_from": cutoff, "valid_to": valid_to})
    if zero_ids:
        conn.execute(text("UPDATE metrics_mrr_segments SET mrr_minor = 0, churn_kind = 'involuntary' WHERE id = :id"),
                     zero_ids)
    if cuts:
        conn.execute(text("UPDATE metrics_mrr_segments SET valid_to = :cutoff WHERE id = :id")
                     .bindparams(bindparam("cutoff", type_=ts)), cuts)
    if inserts:
        conn.execute(text(
            "INSERT INTO metrics_mrr_segments (subscription_id, member_id, currency, tier_id, interval, country, "
            "valid_from, valid_to, mrr_minor, status, churn_kind) VALUES (:subscription_id, :member_id, :currency, "
            ":tier_id, :interval, :country, :valid_from, :valid_to, 0, 'past_due', 'involuntary')")
            .bindparams(bindparam("valid_from", type_=ts), bindparam("valid_to", type_=ts)), inserts)


def _aware(value: object, conn: Connection) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return UTCDateTime().process_result_value(value, conn.dialect)
