"""Lists of members staff act on: past-due subscriptions, cards expiring before their renewal,
and the subscriptions behind revenue at risk. All as of ``query.now``, from current state."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, TextClause, bindparam, text

from core.db.types import UTCDateTime
from core.metrics.source import filter_values
from core.metrics.types import Query

if TYPE_CHECKING:
    import pandas as pd

_FILTER_SQL = {"tier_id": "s.tier_id", "interval": "pr.interval", "currency": "s.currency", "country": "m.country"}


def _filters(engine: Engine, query: Query) -> tuple[str, dict[str, Any]]:
    f = filter_values(engine, query)
    return "".join(f" AND {_FILTER_SQL[c]} = :f_{c}" for c in f), {f"f_{c}": v for c, v in f.items()}


def _stmt(sql: str) -> TextClause:
    return text(sql).bindparams(*[bindparam(t, type_=UTCDateTime()) for t in ("now", "cutoff") if f":{t}" in sql])


def _frame(engine: Engine, sql: str, params: dict[str, Any], times: tuple[str, ...] = ()) -> pd.DataFrame:
    import pandas as pd

    with engine.connect() as conn:
        result = conn.execute(_stmt(sql), params)
        keys = list(result.keys())
        rows = result.all()
    # Column-wise construction: building a frame from Row objects costs more than the query.
    cols = list(zip(*rows, strict=True)) if rows else [()] * len(keys)
    df = pd.DataFrame({k: list(c) for k, c in zip(keys, cols, strict=True)}, columns=keys)
    for col in times:
        if col in df.columns and not df.empty:
            df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _grace_cutoff(query: Query) -> datetime | None:
    days = query.settings.past_due_grace_days
    assert query.now is not None
    return None if days is None else query.now - timedelta(days=days)


# A card is valid through the last day of its expiry month, so it fails the renewal when the
# renewal comes at or after the first instant of the next month (``card_valid_until``, kept by the
# database). The same words as the partial index ix_subscriptions_card_lapses, so both databases
# answer from that index (SQLite matches a partial index by the query's own terms).
_CARD_LAPSES = "s.card_valid_until <= s.current_period_end"


def _through(engine: Engine, table: str, index: str) -> str:
    """``table`` read through ``index`` by name on SQLite. Its planner can prefer a wide index to
    a small partial one and then read a row for every candidate: for the lapsing cards even with
    statistics, for the open invoices in a database never analysed. PostgreSQL's planner picks
    the partial index itself."""
    return f"{table} INDEXED BY {index}" if engine.dialect.name == "sqlite" else table


_LAPSES = "ix_subscriptions_card_lapses"
_PAST_DUE = "ix_subscriptions_past_due"


# The card a renewal charges: the subscription's own (if still attached), else the member's default.
_CHARGED_CARD = """
LEFT JOIN payment_methods pm ON pm.id = COALESCE(
    (SELECT c.id FROM payment_methods c WHERE c.id = s.default_payment_method_id AND c.detached_at IS NULL),
    (SELECT c.id FROM payment_methods c WHERE c.member_id = s.member_id AND c.is_default = :true
       AND c.detached_at IS NULL ORDER BY c.id LIMIT 1))"""
_JOINS = """
JOIN members m ON m.id = s.member_id
LEFT JOIN prices pr ON pr.id = s.price_id
LEFT JOIN tiers t ON t.id = s.tier_id"""


def _chosen(query: Query, table: str, where: str, order: str, limit: int | None, params: dict[str, Any]) -> str:
    """SELECT of the ids of a worklist's rows in order, the first ``limit`` of them: chosen from
    the subscriptions (and the tables the filters need) before the wide rows are joined, so a
    page of 100 reads 100 members, invoices and cards, not one for each of thousands."""
    if limit:
        params["limit"] = limit
    return (f"SELECT s.id FROM {table} {_filter_joins(query)}{where}\n"
            f"ORDER BY {order}{' LIMIT :limit' if limit else ''}")


def past_due(engine: Engine, query: Query, limit: int | None = 10_000) -> pd.DataFrame:
    """Past-due subscriptions: amount owed, days past due, last decline code, next retry.
    Those beyond the grace days (counted as churned) are included and flagged."""
    import pandas as pd

    where, params = _filters(engine, query)
    chosen = _chosen(query, _through(engine, "subscriptions s", _PAST_DUE),
                     f"WHERE s.status = 'past_due'{where}",
                     "s.past_due_since, s.id", limit, params)
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.past_due_since, i.id AS invoice_id, i.amount_remaining AS amount_due_minor,
       i.attempt_count, i.next_payment_attempt_at AS next_retry_at,
       (SELECT COALESCE(p.decline_code, p.failure_code) FROM payments p
         WHERE p.invoice_id = i.id AND p.status = 'failed' ORDER BY p.created_at DESC, p.id DESC LIMIT 1)
         AS decline_code
FROM ({chosen}) chosen JOIN subscriptions s ON s.id = chosen.id{_JOINS}
LEFT JOIN invoices i ON i.id = (SELECT MAX(i2.id) FROM {_through(engine, "invoices i2", "ix_invoices_open")}
                                WHERE i2.subscription_id = s.id AND i2.status = 'open')
ORDER BY s.past_due_since, s.id"""
    df = _frame(engine, sql, params, ("past_due_since", "next_retry_at"))
    if df.empty:
        return df.assign(days_past_due=pd.Series(dtype="int64"), beyond_grace=pd.Series(dtype="bool"))
    assert query.now is not None  # a Query made by Query.make has its now
    now = pd.Timestamp(query.now)
    df["days_past_due"] = [(now - t).days if pd.notna(t) else None for t in df["past_due_since"]]
    grace = query.settings.past_due_grace_days
    df["beyond_grace"] = [grace is not None and d is not None and d >= grace for d in df["days_past_due"]]
    df["decline_code"] = df["decline_code"].fillna("unknown")
    return df


def expiring_cards(engine: Engine, query: Query, limit: int | None = 10_000) -> pd.DataFrame:
    """Paying subscriptions whose default card expires before the next renewal (a card is valid
    through the last day of its expiry month)."""
    where, params = _filters(engine, query)
    params.update(true=True, false=False)
    chosen = _chosen(query, _through(engine, "subscriptions s", _LAPSES),
                     f"WHERE {_CARD_LAPSES} AND s.status IN ('active', 'past_due') AND s.mrr_minor > 0\n"
                     f"  AND s.cancel_at_period_end = :false{where}", "s.current_period_end, s.id", limit, params)
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.status, s.current_period_end AS renews_at, pm.brand, pm.last4, pm.exp_month, pm.exp_year
FROM ({chosen}) chosen JOIN subscriptions s ON s.id = chosen.id{_JOINS}{_CHARGED_CARD}
ORDER BY s.current_period_end, s.id"""
    return _frame(engine, sql, params, ("renews_at",))


def counts(engine: Engine, query: Query) -> dict[str, int]:
    """How many rows the whole ``past_due`` and ``expiring_cards`` lists hold (a page shows the
    first of them; these counts come from the same indexes without reading the wide rows)."""
    where, params = _filters(engine, query)
    params.update(false=False)
    joins = _filter_joins(query)
    sql = f"""
SELECT (SELECT COUNT(*) FROM subscriptions s {joins}WHERE s.status = 'past_due'{where}),
       (SELECT COUNT(*) FROM {_through(engine, "subscriptions s", _LAPSES)} {joins}WHERE {_CARD_LAPSES}
          AND s.status IN ('active', 'past_due') AND s.mrr_minor > 0 AND s.cancel_at_period_end = :false{where})"""
    with engine.connect() as conn:
        past_due_n, expiring_n = conn.execute(_stmt(sql), params).one()
    return {"past_due": int(past_due_n), "expiring_cards": int(expiring_n)}


def _filter_joins(query: Query) -> str:
    """The joins the filters need beyond the subscription itself."""
    filters = query.filters
    return ("JOIN members m ON m.id = s.member_id\n" if filters.country else "") + (
        "LEFT JOIN prices pr ON pr.id = s.price_id\n" if filters.interval else "")


def _risk_parts(engine: Engine, query: Query) -> tuple[list[tuple[str, str, str]], dict[str, Any]]:
    """([(reason, FROM clause, WHERE clause)], params) shared by the rows and the totals: past due
    within the grace days, else set to cancel at period end, else an active subscription whose
    card expires before its renewal. The parts exclude each other (each subscription once, with the
    first reason that applies), and each is read through its own index rather than one scan for an
    OR (on SQLite named: its planner read every past-due row through the wide status index)."""
    where, params = _filters(engine, query)
    cutoff = _grace_cutoff(query)
    grace_cond = "" if cutoff is None else " AND (s.past_due_since IS NULL OR s.past_due_since > :cutoff)"
    if cutoff is not None:
        params["cutoff"] = cutoff
    params.update(true=True, false=False)
    paying = " AND s.mrr_minor > 0"
    parts = [
        ("past_due", _through(engine, "subscriptions s", _PAST_DUE),
         f"WHERE s.status = 'past_due'{grace_cond}{paying}{where}"),
        ("cancel_at_period_end", "subscriptions s",
         f"WHERE s.status = 'active' AND s.cancel_at_period_end = :true{paying}{where}"),
        ("card_expiring", _through(engine, "subscriptions s", _LAPSES),
         f"WHERE {_CARD_LAPSES} AND s.status = 'active' AND s.cancel_at_period_end = :false{paying}{where}"),
    ]
    return parts, params


def at_risk(engine: Engine, query: Query) -> pd.DataFrame:
    """Subscriptions behind revenue at risk, each once, with the first reason that applies:
    past_due (within the grace days), cancel_at_period_end, card_expiring."""
    parts, params = _risk_parts(engine, query)
    sql = "\nUNION ALL\n".join(f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.status, s.past_due_since, s.current_period_end AS renews_at, '{reason}' AS reason
FROM {subscriptions}{_JOINS}
{cond}""" for reason, subscriptions, cond in parts) + "\nORDER BY subscription_id"
    return _frame(engine, sql, params, ("past_due_since", "renews_at"))


def at_risk_totals(engine: Engine, query: Query) -> dict[tuple[str, str], int]:
    """(reason, currency) -> MRR at risk in minor units, summed in the database (same rows as
    ``at_risk``)."""
    parts, params = _risk_parts(engine, query)
    joins = _filter_joins(query)
    sql = "\nUNION ALL\n".join(f"""
SELECT '{reason}' AS reason, s.currency, SUM(s.mrr_minor)
FROM {subscriptions}
{joins}{cond}
GROUP BY s.currency""" for reason, subscriptions, cond in parts)
    with engine.connect() as conn:
        rows = conn.execute(_stmt(sql), params).all()
    return {(r, c): int(v) for r, c, v in rows if v}
