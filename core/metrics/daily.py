"""Daily aggregates of payments, refunds and disputes, by local day and group.

The same SELECT statements fill the rollup tables (joined to ``metrics_calendar``, the business
zone's days) and answer raw questions in any zone (joined to a calendar built for the query), so
a rollup answer and a raw answer are the same computation by construction.

Tier and interval of a payment are those of its invoice's subscription (its current price);
country is the member's country. Payments without an invoice (one-off charges) have no tier.
"""

from __future__ import annotations

from datetime import date, timedelta

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
    # The redundant lower bound on the row's own time lets the planner use that column's index
    # (PostgreSQL otherwise reads every payment and joins them to the calendar by hash).
    return (f"JOIN {cal} cal ON {column} >= cal.start_utc AND {column} < cal.end_utc AND cal.day >= :since_day "
            f"AND {column} >= (SELECT MIN(c0.start_utc) FROM {cal} c0 WHERE c0.day >= :since_day)")


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
