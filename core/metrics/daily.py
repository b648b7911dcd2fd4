"""Daily aggregates of payments, refunds and disputes, by local day and group.

The same SELECT statements fill the rollup tables (joined to ``metrics_calendar``, the business
zone's days) and answer raw questions in any zone (joined to a calendar built for the query), so
a rollup answer and a raw answer are the same computation by construction.

Tier and interval of a payment are those of its invoice's subscription (its current price);
country is the member's country. Payments without an invoice (one-off charges) have no tier.
"""

from __future__ import annotations

import re
from datetime import date, timedelta

from sqlalchemy import TextClause, bindparam, text

from core.db.types import UTCDateTime
from core.timeutil import local_midnight

RECOVERY_WINDOW_DAYS = 30
GROUP_OUT = ("day", "currency", "tier_id", "interval", "country")
_GROUP = "p.currency, s.tier_id, pr.interval, m.country"
_JOINS = """
JOIN members m ON m.id = p.member_id
LEFT JOIN invoices i ON i.id = p.invoice_id
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN prices pr ON pr.id = s.price_id"""


def _in_day(column: str, cal: str) -> str:
    # The redundant lower bound on the row's own time (:since_start, the instant :since_day
    # starts) lets the planner use that column's index. It is a bound value, not a subquery:
    # PostgreSQL plans a subquery's bound as "a third of the table" and hashes every payment,
    # invoice and subscription even for one day.
    return (f"JOIN {cal} cal ON {column} >= cal.start_utc AND {column} < cal.end_utc AND cal.day >= :since_day "
            f"AND {column} >= :since_start")


def since_params(since_day: date, tz) -> dict:  # type: ignore[no-untyped-def]
    """The parameters of the SELECTs below: the first local day and the UTC instant it starts."""
    return {"since_day": since_day, "since_start": local_midnight(since_day, tz)}


def statement(sql: str) -> TextClause:
    """``text(sql)`` with the instants typed, so SQLite compares them spelled as it stores them."""
    names = [n for n in ("since_start", "until_start", "until") if re.search(rf":{n}\b", sql)]
    return text(sql).bindparams(*[bindparam(n, type_=UTCDateTime()) for n in names])


def cash_selects(cal: str) -> list[tuple[tuple[str, ...], str]]:
    """(measure columns, SELECT day, currency, tier_id, interval, country, measures...)."""
    g_r, g_d = _GROUP.replace("p.currency", "r.currency"), _GROUP.replace("p.currency", "d.currency")
    return [
        (("gross", "payments", "fees", "fee_payments"), f"""
SELECT cal.day, {_GROUP}, SUM(p.amount), COUNT(*), SUM(COALESCE(p.fee, 0)),
       SUM(CASE WHEN p.fee IS NOT NULL THEN 1 ELSE 0 END)
FROM payments p {_in_day('p.created_at', cal)} {_JOINS}
WHERE p.status = 'succeeded'
GROUP BY cal.day, {_GROUP}"""),
        (("refunds", "refund_count"), f"""
SELECT cal.day, {g_r}, SUM(r.amount), COUNT(*)
FROM refunds r {_in_day('r.created_at', cal)} JOIN payments p ON p.id = r.payment_id {_JOINS}
WHERE r.status NOT IN ('failed', 'canceled')
GROUP BY cal.day, {g_r}"""),
        (("disputes_lost", "dispute_count"), f"""
SELECT cal.day, {g_d}, SUM(d.amount), COUNT(*)
FROM disputes d {_in_day('d.closed_at', cal)} JOIN payments p ON p.id = d.payment_id {_JOINS}
WHERE d.status = 'lost'
GROUP BY cal.day, {g_d}"""),
    ]


def recovery_deadline(dialect: str, column: str) -> str:
    if dialect == "postgresql":
        return f"{column} + INTERVAL '{RECOVERY_WINDOW_DAYS} days'"
    return f"strftime('%Y-%m-%d %H:%M:%f', {column}, '+{RECOVERY_WINDOW_DAYS} days')"


FIRST_FAILURE = """p.status = 'failed' AND p.invoice_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM payments q WHERE q.invoice_id = p.invoice_id AND q.status = 'failed'
          AND (q.created_at < p.created_at OR (q.created_at = p.created_at AND q.id < p.id)))"""


def recovered_sql(dialect: str) -> str:
    """EXISTS: the invoice of failed payment ``p`` was paid within the recovery window after it.
    On SQLite the unary ``+`` keeps the planner on the invoice index (otherwise it scans every
    succeeded payment of the 30-day window for each failure)."""
    plus = "+" if dialect == "sqlite" else ""
    return f"""EXISTS (SELECT 1 FROM payments w WHERE w.invoice_id = p.invoice_id AND {plus}w.status = 'succeeded'
        AND {plus}w.created_at > p.created_at AND {plus}w.created_at <= {recovery_deadline(dialect, 'p.created_at')})"""


def attempts_select(cal: str) -> tuple[tuple[str, ...], str]:
    return (("attempts", "failed_attempts", "renewal_invoices", "renewal_first_failed"), f"""
SELECT cal.day, {_GROUP}, COUNT(*), SUM(CASE WHEN p.status = 'failed' THEN 1 ELSE 0 END),
       SUM(CASE WHEN p.is_renewal AND p.attempt_number = 1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN p.is_renewal AND p.attempt_number = 1 AND p.status = 'failed' THEN 1 ELSE 0 END)
FROM payments p {_in_day('p.created_at', cal)} {_JOINS}
WHERE p.status IN ('succeeded', 'failed')
GROUP BY cal.day, {_GROUP}""")


def recovery_select(cal: str, dialect: str) -> tuple[tuple[str, ...], str]:
    rec = recovered_sql(dialect)
    return (("failed_invoices", "recovered_invoices", "recovered"), f"""
SELECT cal.day, {_GROUP}, COUNT(*), SUM(CASE WHEN {rec} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {rec} THEN p.amount ELSE 0 END)
FROM payments p {_in_day('p.created_at', cal)} {_JOINS}
WHERE {FIRST_FAILURE}
GROUP BY cal.day, {_GROUP}""")


DECLINE_KEYS = ("COALESCE(p.decline_code, p.failure_code, 'unknown')", "COALESCE(p.card_brand, 'unknown')",
                "COALESCE(p.card_country, '??')")


def declines_select(cal: str) -> tuple[tuple[str, ...], str]:
    keys = ", ".join(DECLINE_KEYS)
    return (("decline_code", "brand", "card_country", "failures", "amount"), f"""
SELECT cal.day, {_GROUP}, {keys}, COUNT(*), SUM(p.amount)
FROM payments p {_in_day('p.created_at', cal)} {_JOINS}
WHERE p.status = 'failed'
GROUP BY cal.day, {_GROUP}, {keys}""")


# Trials and cancellations count only rows up to ``now`` (a query's ``now`` can fall inside a
# day): the rollup keeps whole days and the day containing ``now`` is read with ``bounded=True``,
# which adds the condition on :until.
FIRST_INVOICE_PAID = """(SELECT i.status FROM invoices i WHERE i.subscription_id = s.id AND i.total > 0
          AND i.created_at >= COALESCE(s.trial_start, s.trial_end)
        ORDER BY i.created_at, i.id LIMIT 1) = 'paid'"""


def trials_select(cal: str, *, bounded: bool = False) -> tuple[tuple[str, ...], str]:
    """Trials by the local day they ended: all, and those whose first invoice was paid."""
    return (("trials", "converted"), f"""
SELECT cal.day, s.currency, s.tier_id, pr.interval, m.country, COUNT(*),
       SUM(CASE WHEN {FIRST_INVOICE_PAID} THEN 1 ELSE 0 END)
FROM subscriptions s {_in_day('s.trial_end', cal)}
JOIN members m ON m.id = s.member_id
LEFT JOIN prices pr ON pr.id = s.price_id
{"WHERE s.trial_end <= :until" if bounded else ""}
GROUP BY 1, 2, 3, 4, 5""")


CANCELLATION_REASON = "COALESCE(c.reason, s.cancellation_feedback, s.cancellation_reason, 'unknown')"


def cancellations_select(cal: str, *, bounded: bool = False) -> tuple[tuple[str, ...], str]:
    """Changes that took MRR to zero, by local day effective, reason and churn kind. Tier is the
    one left (or, on a plain cancel, held); interval the subscription's current price's."""
    return (("reason", "churn_kind", "changes"), f"""
SELECT cal.day, c.currency, COALESCE(c.to_tier_id, c.from_tier_id), pr.interval, m.country,
       {CANCELLATION_REASON}, COALESCE(c.churn_kind, 'voluntary'), COUNT(*)
FROM membership_changes c {_in_day('c.effective_at', cal)}
JOIN members m ON m.id = c.member_id
LEFT JOIN subscriptions s ON s.id = c.subscription_id
LEFT JOIN prices pr ON pr.id = s.price_id
WHERE c.mrr_before_minor > 0 AND c.mrr_after_minor = 0{" AND c.effective_at < :until" if bounded else ""}
GROUP BY 1, 2, 3, 4, 5, 6, 7""")


def _ts_literal(dialect: str, moment) -> str:  # type: ignore[no-untyped-def]
    """A UTC instant as SQL text, spelled the way each database stores ``UTCDateTime``.
    Only ever fed with instants we computed (never user text)."""
    if dialect == "postgresql":
        return f"CAST('{moment.isoformat()}' AS TIMESTAMP WITH TIME ZONE)"
    return f"'{moment.replace(tzinfo=None).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def calendar_cte(dialect: str, first: date, last_exclusive: date, tz) -> tuple[str, list]:  # type: ignore[no-untyped-def]
    """A ``qcal(day, start_utc, end_utc)`` CTE body for the days of a query in its own zone.
    Rendered as literals: a year of days as bound parameters costs more to compile than to run."""
    parts = []
    day = first
    as_date = "CAST('{}' AS DATE)" if dialect == "postgresql" else "'{}'"
    while day < last_exclusive:
        parts.append(f"SELECT {as_date.format(day.isoformat())} AS day, "
                     f"{_ts_literal(dialect, local_midnight(day, tz))} AS start_utc, "
                     f"{_ts_literal(dialect, local_midnight(day + timedelta(days=1), tz))} AS end_utc")
        day += timedelta(days=1)
    return " UNION ALL ".join(parts), []
