"""Daily aggregates of payments, refunds and disputes, by local day and group.

The same SELECT statements fill the rollup tables (the business zone's days) and answer raw
questions in any zone (``Days`` of the query's zone), so a rollup answer and a raw answer are the
same computation by construction.

Tier and interval of a payment are those of the price its invoice billed (``PRICE_AT_BILLING``),
country the member's country when the invoice was billed (``COUNTRY_AT_BILLING``): what a
payment is filed under never changes afterwards, so an incremental refresh equals a full rebuild.
Payments without an invoice (one-off charges) have no tier.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import TextClause, bindparam, text

from core.db.types import UTCDateTime
from core.models.base import Base
from core.models.rollups import (
    DailyCancellations,
    DailyCash,
    DailyDeclines,
    DailyPayments,
    DailyTrials,
    MonthlyCancellations,
    MonthlyCash,
    MonthlyDeclines,
    MonthlyPayments,
    MonthlyTrials,
)
from core.timeutil import local_midnight

RECOVERY_WINDOW_DAYS = 30
GROUP_OUT = ("day", "currency", "tier_id", "interval", "country")
# The price an invoice billed (so its payments, refunds and disputes are filed under it for
# good, whatever the subscription's price later): its first non-proration line's price; for an
# invoice without priced lines, the price its subscription's changes had put in force when the
# invoice was created; lastly the subscription's current price.
PRICE_AT_BILLING = """COALESCE(
    (SELECT il.price_id FROM invoice_lines il WHERE il.invoice_id = i.id AND il.price_id IS NOT NULL
     ORDER BY il.proration, il.id LIMIT 1),
    (SELECT c.to_price_id FROM membership_changes c WHERE c.subscription_id = i.subscription_id
       AND c.to_price_id IS NOT NULL AND c.effective_at <= i.created_at
     ORDER BY c.effective_at DESC, c.id DESC LIMIT 1),
    s.price_id)"""
# The member's country when the invoice was billed (kept on the invoice), else today's.
COUNTRY_AT_BILLING = "COALESCE(i.billing_country, m.country)"
_GROUP = f"p.currency, pr.tier_id, pr.interval, {COUNTRY_AT_BILLING}"
_JOINS = f"""
JOIN members m ON m.id = p.member_id
LEFT JOIN invoices i ON i.id = p.invoice_id
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN prices pr ON pr.id = {PRICE_AT_BILLING}"""
BILLED_GROUP = f"pr.tier_id, pr.interval, {COUNTRY_AT_BILLING}"
BILLED_JOINS = f"""
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN prices pr ON pr.id = {PRICE_AT_BILLING}"""
# Longer ranges are read by scanning the table on SQLite: following an index to most rows of a
# long range costs about five times a plain scan (measured on 550,000 payments).
SCAN_FROM_DAYS = 62


@dataclass(frozen=True)
class Days:
    """The local days ``[first, end)`` of zone ``tz`` (or only the days ``only`` among them), as SQL.

    ``of(column)`` is the local day of a UTC instant: the instant shifted by the zone's offset
    then, written as a CASE over the offset changes of the range, so each row gets its day from
    its own value (a join with a table of days costs a range lookup per row). ``where(column)``
    keeps the rows of the range. Their parameters come from ``params()``.

    ``before`` / ``from_`` cut the range at an instant: the rollup refresh keeps the rows before
    its ``now`` (``before``), and a reader adds the rows written since then (``from_``, the tail),
    so a rollup plus its tail counts every row once, whatever the time of day."""

    dialect: str
    tz: tzinfo
    first: date
    end: date
    only: tuple[date, ...] = ()
    before: datetime | None = None
    from_: datetime | None = None
    # Only these rows, by the alias of the table a condition is on (``(("p", (1, 2)),)``): the
    # refresh adds the few rows written late. A table with no ids listed gives no row.
    ids: tuple[tuple[str, tuple[int, ...]], ...] = ()

    @classmethod
    def listed(cls, dialect: str, tz: tzinfo, days: list[date], before: datetime | None = None) -> Days:
        return cls(dialect, tz, min(days), max(days) + timedelta(days=1), tuple(sorted(days)), before=before)

    def params(self) -> dict[str, Any]:
        out: dict[str, Any] = {"days_from": local_midnight(self.first, self.tz), "days_to": local_midnight(self.end, self.tz)}
        for i, d in enumerate(self.only):
            out[f"only_from{i}"] = local_midnight(d, self.tz)
            out[f"only_to{i}"] = local_midnight(d + timedelta(days=1), self.tz)
        if self.before is not None:
            out["cut_before"] = self.before
        if self.from_ is not None:
            out["cut_from"] = self.from_
        return out

    def of(self, column: str) -> str:
        pieces = _offsets(self.tz, local_midnight(self.first, self.tz), local_midnight(self.end, self.tz))
        if len(pieces) == 1:
            return self._shifted(column, pieces[0][1])
        whens = " ".join(f"WHEN {column} < {_ts_literal(self.dialect, until)} THEN {self._shifted(column, off)}"
                         for until, off in pieces[:-1] if until is not None)  # all but the last have one
        return f"CASE {whens} ELSE {self._shifted(column, pieces[-1][1])} END"

    def source(self, table: str) -> str:
        """``table`` (with its alias) in a FROM clause: on SQLite, read by a plain scan over a
        long range (an index on time or status would lead to nearly every row, one by one)."""
        scan = (self.dialect == "sqlite" and not self.only and self.from_ is None and not self.ids
                and (self.end - self.first).days > SCAN_FROM_DAYS)
        return f"{table} NOT INDEXED" if scan else table

    def where(self, column: str) -> str:
        cut = (f" AND {column} < :cut_before" if self.before is not None else "") + (
            f" AND {column} >= :cut_from" if self.from_ is not None else "") + self._listed(column)
        if self.only:  # one range per day: each read through the column's index
            return "(" + " OR ".join(f"({column} >= :only_from{i} AND {column} < :only_to{i})"
                                     for i in range(len(self.only))) + ")" + cut
        return f"{column} >= :days_from AND {column} < :days_to" + cut

    def _listed(self, column: str) -> str:
        if not self.ids:
            return ""
        alias = re.search(r"\b([a-z])\.", column)
        assert alias is not None, column  # every condition is on an aliased table's column
        ids = dict(self.ids).get(alias.group(1))
        # Integers we read from our own tables, never user text.
        return f" AND {alias.group(1)}.id IN ({', '.join(str(int(i)) for i in ids)})" if ids else " AND 1 = 0"

    def _shifted(self, column: str, seconds: int) -> str:
        if self.dialect == "postgresql":
            shift = f" + INTERVAL '{seconds} seconds'" if seconds else ""
            return f"CAST(({column} AT TIME ZONE 'UTC'){shift} AS DATE)"
        # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): the day is its first ten characters.
        # Shifted, the fraction is cut first: date() rounds to the millisecond, which would move
        # 23:59:59.9996 to the next day.
        return f"date(substr({column}, 1, 19), '{seconds:+d} seconds')" if seconds else f"substr({column}, 1, 10)"


@functools.lru_cache(maxsize=128)
def _offsets(tz: tzinfo, start: datetime, stop: datetime) -> tuple[tuple[datetime | None, int], ...]:
    """(until, offset in seconds) for each stretch of constant UTC offset between two instants;
    the last stretch's ``until`` is None. Found day by day, then to the second by bisection."""
    def offset(moment: datetime) -> int:
        return int((moment.astimezone(tz).utcoffset() or timedelta(0)).total_seconds())  # aware: never None

    pieces: list[tuple[datetime | None, int]] = []
    current = offset(start)
    probe = start
    while probe < stop:
        nxt = min(probe + timedelta(days=1), stop)
        if offset(nxt) != current:
            lo, hi = probe, nxt  # offset(lo) == current != offset(hi)
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                lo, hi = (mid, hi) if offset(mid) == current else (lo, mid)
            pieces.append((hi, current))
            current = offset(hi)
            nxt = hi
        probe = nxt
    pieces.append((None, current))
    return tuple(pieces)


def statement(sql: str) -> TextClause:
    """``text(sql)`` with the instants typed, so SQLite compares them spelled as it stores them."""
    names = [n for n in ("since_start", "until_start", "until", "days_from", "days_to", "since", "cut_before",
                         "cut_from")
             if re.search(rf":{n}\b", sql)]
    names += re.findall(r":(only_(?:from|to)\d+)\b", sql)
    return text(sql).bindparams(*[bindparam(n, type_=UTCDateTime()) for n in names])


def listed(ids: Iterable[int]) -> str:
    """Ids read from the database, spelled inline for ``IN (...)`` ("NULL" for none: matches
    nothing): integers only, so nothing a person typed reaches the SQL this way."""
    return ", ".join(str(int(i)) for i in ids) or "NULL"


@dataclass(frozen=True)
class Kind:
    """A daily rollup table, the monthly table with the same sums, the key columns beyond the
    group and the measure columns (read off the models). Readers and the refresh share it."""

    daily: str
    monthly: str
    keys: tuple[str, ...]
    measures: tuple[str, ...]

    @classmethod
    def of(cls, daily: type[Base], monthly: type[Base], keys: tuple[str, ...] = ()) -> Kind:
        skip = {"id", *GROUP_OUT, *keys}
        return cls(daily.__tablename__, monthly.__tablename__, keys,
                   tuple(c.name for c in daily.__table__.columns if c.name not in skip))


KINDS = {
    "cash": Kind.of(DailyCash, MonthlyCash),
    "payments": Kind.of(DailyPayments, MonthlyPayments),
    "declines": Kind.of(DailyDeclines, MonthlyDeclines, ("decline_code", "brand", "card_country")),
    "trials": Kind.of(DailyTrials, MonthlyTrials),
    "cancellations": Kind.of(DailyCancellations, MonthlyCancellations, ("reason", "churn_kind")),
}


def month_of(dialect: str, column: str) -> str:
    """SQL: the first day of the month of a date column."""
    if dialect == "postgresql":
        return f"CAST(date_trunc('month', {column}) AS DATE)"
    return f"substr({column}, 1, 8) || '01'"


# Gross billed: an invoice counts when it is finalized (Stripe's ``status_transitions.finalized_at``;
# the creation time when we never saw it finalized), at its total (tax included), unless it is a
# draft or was voided (Stripe's void cancels an invoice as if never issued).
BILLED_AT = "COALESCE(i.finalized_at, i.created_at)"
BILLED = "i.status NOT IN ('draft', 'void')"


def cash_selects(days: Days) -> list[tuple[tuple[str, ...], str]]:
    """(measure columns, SELECT day, currency, tier_id, interval, country, measures...)."""
    g_r, g_d = _GROUP.replace("p.currency", "r.currency"), _GROUP.replace("p.currency", "d.currency")
    return [
        (("gross", "payments", "fees", "fee_payments"), f"""
SELECT {days.of('p.created_at')}, {_GROUP}, SUM(p.amount), COUNT(*), SUM(COALESCE(p.fee, 0)),
       SUM(CASE WHEN p.fee IS NOT NULL THEN 1 ELSE 0 END)
FROM {days.source('payments p')} {_JOINS}
WHERE {days.where('p.created_at')} AND p.status = 'succeeded'
GROUP BY 1, {_GROUP}"""),
        (("refunds", "refund_count"), f"""
SELECT {days.of('r.created_at')}, {g_r}, SUM(r.amount), COUNT(*)
FROM {days.source('refunds r')} JOIN payments p ON p.id = r.payment_id {_JOINS}
WHERE {days.where('r.created_at')} AND r.status NOT IN ('failed', 'canceled')
GROUP BY 1, {g_r}"""),
        (("disputes_lost", "dispute_count"), f"""
SELECT {days.of('d.closed_at')}, {g_d}, SUM(d.amount), COUNT(*)
FROM {days.source('disputes d')} JOIN payments p ON p.id = d.payment_id {_JOINS}
WHERE {days.where('d.closed_at')} AND d.status = 'lost'
GROUP BY 1, {g_d}"""),
        (("billed", "invoices"), f"""
SELECT {days.of(BILLED_AT)}, i.currency, {BILLED_GROUP}, SUM(i.total), COUNT(*)
FROM {days.source('invoices i')} JOIN members m ON m.id = i.member_id {BILLED_JOINS}
WHERE {days.where(BILLED_AT)} AND {BILLED}
GROUP BY 1, i.currency, {BILLED_GROUP}"""),
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


def attempts_select(days: Days) -> tuple[tuple[str, ...], str]:
    return (("attempts", "failed_attempts", "renewal_invoices", "renewal_first_failed"), f"""
SELECT {days.of('p.created_at')}, {_GROUP}, COUNT(*), SUM(CASE WHEN p.status = 'failed' THEN 1 ELSE 0 END),
       SUM(CASE WHEN p.is_renewal AND p.attempt_number = 1 THEN 1 ELSE 0 END),
       SUM(CASE WHEN p.is_renewal AND p.attempt_number = 1 AND p.status = 'failed' THEN 1 ELSE 0 END)
FROM {days.source('payments p')} {_JOINS}
WHERE {days.where('p.created_at')} AND p.status IN ('succeeded', 'failed')
GROUP BY 1, {_GROUP}""")


def recovery_select(days: Days) -> tuple[tuple[str, ...], str]:
    rec = recovered_sql(days.dialect)
    return (("failed_invoices", "recovered_invoices", "recovered"), f"""
SELECT {days.of('p.created_at')}, {_GROUP}, COUNT(*), SUM(CASE WHEN {rec} THEN 1 ELSE 0 END),
       SUM(CASE WHEN {rec} THEN p.amount ELSE 0 END)
FROM {days.source('payments p')} {_JOINS}
WHERE {days.where('p.created_at')} AND {FIRST_FAILURE}
GROUP BY 1, {_GROUP}""")


DECLINE_KEYS = ("COALESCE(p.decline_code, p.failure_code, 'unknown')", "COALESCE(p.card_brand, 'unknown')",
                "COALESCE(p.card_country, '??')")


def declines_select(days: Days) -> tuple[tuple[str, ...], str]:
    keys = ", ".join(DECLINE_KEYS)
    return (("decline_code", "brand", "card_country", "failures", "amount"), f"""
SELECT {days.of('p.created_at')}, {_GROUP}, {keys}, COUNT(*), SUM(p.amount)
FROM {days.source('payments p')} {_JOINS}
WHERE {days.where('p.created_at')} AND p.status = 'failed'
GROUP BY 1, {_GROUP}, {keys}""")


# Trials and cancellations count only rows up to ``now`` (a query's ``now`` can fall inside a
# day): the rollup keeps whole days and the day containing ``now`` is read with ``bounded=True``,
# which adds the condition on :until.
FIRST_INVOICE_PAID = """(SELECT i.status FROM invoices i WHERE i.subscription_id = s.id AND i.total > 0
          AND i.created_at >= COALESCE(s.trial_start, s.trial_end)
        ORDER BY i.created_at, i.id LIMIT 1) = 'paid'"""


# A trial is filed under what it was when it ended: the price and the member's country of the
# subscription's last membership change effective by then (the subscription's own price and the
# member's country without one), so a later price change or move never moves it.
_LAST_CHANGE = """(SELECT c.{col} FROM membership_changes c WHERE c.subscription_id = s.id
       AND c.{col} IS NOT NULL AND c.effective_at <= s.trial_end ORDER BY c.effective_at DESC, c.id DESC LIMIT 1)"""
TRIAL_PRICE = f"COALESCE({_LAST_CHANGE.format(col='to_price_id')}, s.price_id)"
TRIAL_COUNTRY = _LAST_CHANGE.format(col="country")


def trials_select(days: Days, *, bounded: bool = False) -> tuple[tuple[str, ...], str]:
    """Trials by the local day they ended: all, and those whose first invoice was paid."""
    return (("trials", "converted"), f"""
SELECT {days.of('s.trial_end')}, s.currency, COALESCE(pr.tier_id, s.tier_id), pr.interval,
       COALESCE({TRIAL_COUNTRY}, m.country), COUNT(*),
       SUM(CASE WHEN {FIRST_INVOICE_PAID} THEN 1 ELSE 0 END)
FROM {days.source('subscriptions s')}
JOIN members m ON m.id = s.member_id
LEFT JOIN prices pr ON pr.id = {TRIAL_PRICE}
WHERE {days.where('s.trial_end')}{" AND s.trial_end <= :until" if bounded else ""}
GROUP BY 1, 2, 3, 4, 5""")


# How a change that took MRR to zero counts, in one place for the segments and the cancellation
# rollups (they disagreed: a change to ``unpaid`` without a recorded kind was involuntary churn in
# the segments and a voluntary cancellation in the reasons).
INVOLUNTARY_STATUSES = "('unpaid', 'incomplete_expired')"
CHURN_KIND = (f"COALESCE(c.churn_kind, CASE WHEN c.to_status IN {INVOLUNTARY_STATUSES} OR c.reason = 'payment_failed' "
              "THEN 'involuntary' ELSE 'voluntary' END)")
# A change's own reason; a pause is its own reason (the subscription's cancellation fields tell of a
# later cancellation: 2,051 pauses at 100,000 members were listed as voluntary "Payment failed"),
# and a change to unpaid is a failed payment.
CANCELLATION_REASON = (f"CASE WHEN c.kind = 'paused' THEN 'paused' "
                       f"WHEN c.to_status IN {INVOLUNTARY_STATUSES} THEN COALESCE(c.reason, 'payment_failed') "
                       "ELSE COALESCE(c.reason, s.cancellation_feedback, s.cancellation_reason, 'unknown') END")


def cancellations_select(days: Days, *, bounded: bool = False) -> tuple[tuple[str, ...], str]:
    """Changes that took MRR to zero, by local day effective, reason and churn kind. Tier is the
    one left (or, on a plain cancel, held); interval the subscription's current price's."""
    return (("reason", "churn_kind", "changes"), f"""
SELECT {days.of('c.effective_at')}, c.currency, COALESCE(c.to_tier_id, c.from_tier_id), pr.interval,
       COALESCE(c.country, m.country),
       {CANCELLATION_REASON}, {CHURN_KIND}, COUNT(*)
FROM {days.source('membership_changes c')}
JOIN members m ON m.id = c.member_id
LEFT JOIN subscriptions s ON s.id = c.subscription_id
LEFT JOIN prices pr ON pr.id = s.price_id
WHERE {days.where('c.effective_at')} AND c.mrr_before_minor > 0 AND c.mrr_after_minor = 0
  {"AND c.effective_at < :until" if bounded else ""}
GROUP BY 1, 2, 3, 4, 5, 6, 7""")



# The SELECTs of the trial and cancellation rollups, by kind (the refresh fills them; the readers
# answer the day containing ``now`` with them, bounded by it).
CHURN_SELECTS = {"trials": trials_select, "cancellations": cancellations_select}


def _ts_literal(dialect: str, moment: datetime) -> str:
    """A UTC instant as SQL text, spelled the way each database stores ``UTCDateTime``.
    Only ever fed with instants we computed (never user text)."""
    if dialect == "postgresql":
        return f"CAST('{moment.isoformat()}' AS TIMESTAMP WITH TIME ZONE)"
    return f"'{moment.astimezone(UTC).replace(tzinfo=None).strftime('%Y-%m-%d %H:%M:%S.%f')}'"
