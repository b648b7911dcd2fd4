"""Lists of members staff act on: past-due subscriptions, cards expiring before their renewal,
and the subscriptions behind revenue at risk. All as of ``query.now``, from current state."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from sqlalchemy import Engine, bindparam, text

from core.db.types import UTCDateTime
from core.metrics.source import filter_values
from core.metrics.types import Query

_FILTER_SQL = {"tier_id": "s.tier_id", "interval": "pr.interval", "currency": "s.currency", "country": "m.country"}


def _filters(engine: Engine, query: Query) -> tuple[str, dict]:
    f = filter_values(engine, query)
    return "".join(f" AND {_FILTER_SQL[c]} = :f_{c}" for c in f), {f"f_{c}": v for c, v in f.items()}


def _frame(engine: Engine, sql: str, params: dict, times: tuple[str, ...] = ()) -> pd.DataFrame:
    stmt = text(sql).bindparams(*[bindparam(t, type_=UTCDateTime()) for t in ("now", "cutoff") if f":{t}" in sql])
    with engine.connect() as conn:
        result = conn.execute(stmt, params)
        df = pd.DataFrame(result.all(), columns=list(result.keys()))
    for col in times:
        if col in df.columns and not df.empty:
            df[col] = pd.to_datetime(df[col], utc=True)
    return df


def _grace_cutoff(query: Query):  # type: ignore[no-untyped-def]
    days = query.settings.past_due_grace_days
    assert query.now is not None
    return None if days is None else query.now - timedelta(days=days)


_BASE = """
FROM subscriptions s
JOIN members m ON m.id = s.member_id
LEFT JOIN prices pr ON pr.id = s.price_id
LEFT JOIN tiers t ON t.id = s.tier_id
LEFT JOIN payment_methods pm ON pm.id = s.default_payment_method_id"""


def past_due(engine: Engine, query: Query, limit: int | None = 10_000) -> pd.DataFrame:
    """Past-due subscriptions: amount owed, days past due, last decline code, next retry.
    Those beyond the grace days (counted as churned) are included and flagged."""
    where, params = _filters(engine, query)
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.past_due_since, i.id AS invoice_id, i.amount_remaining AS amount_due_minor,
       i.attempt_count, i.next_payment_attempt_at AS next_retry_at,
       (SELECT COALESCE(p.decline_code, p.failure_code) FROM payments p
         WHERE p.invoice_id = i.id AND p.status = 'failed' ORDER BY p.created_at DESC, p.id DESC LIMIT 1)
         AS decline_code
{_BASE}
LEFT JOIN invoices i ON i.id = (SELECT MAX(i2.id) FROM invoices i2 WHERE i2.subscription_id = s.id
                                AND i2.status = 'open')
WHERE s.status = 'past_due'{where}
ORDER BY s.past_due_since
{"LIMIT :limit" if limit else ""}"""
    if limit:
        params["limit"] = limit
    df = _frame(engine, sql, params, ("past_due_since", "next_retry_at"))
    if df.empty:
        return df.assign(days_past_due=pd.Series(dtype="int64"), beyond_grace=pd.Series(dtype="bool"))
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
    assert query.now is not None
    horizon = query.now + timedelta(days=400)  # renewals are at most a year away
    params["horizon"] = horizon.year * 12 + horizon.month
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.status, s.current_period_end AS renews_at, pm.brand, pm.last4, pm.exp_month, pm.exp_year
{_BASE}
WHERE s.status IN ('active', 'past_due') AND s.mrr_minor > 0 AND s.cancel_at_period_end = :false
  AND pm.exp_year IS NOT NULL AND pm.exp_year * 12 + pm.exp_month < :horizon{where}
ORDER BY s.current_period_end"""
    params["false"] = False
    df = _frame(engine, sql, params, ("renews_at",))
    if df.empty:
        return df
    keep = [r is not None and pd.notna(r) and (int(y) * 12 + int(mo)) < (r.year * 12 + r.month)
            for r, y, mo in zip(df["renews_at"], df["exp_year"], df["exp_month"], strict=True)]
    df = df[keep].reset_index(drop=True)
    return df.head(limit) if limit else df


def at_risk(engine: Engine, query: Query) -> pd.DataFrame:
    """Subscriptions behind revenue at risk, each once, with the first reason that applies:
    past_due (within the grace days), cancel_at_period_end, card_expiring."""
    where, params = _filters(engine, query)
    cutoff = _grace_cutoff(query)
    grace_cond = "" if cutoff is None else " AND (s.past_due_since IS NULL OR s.past_due_since > :cutoff)"
    if cutoff is not None:
        params["cutoff"] = cutoff
    params["true"] = True
    sql = f"""
SELECT s.id AS subscription_id, s.member_id, m.email, t.code AS tier, pr.interval, m.country, s.currency,
       s.mrr_minor, s.status, s.past_due_since, s.current_period_end AS renews_at,
       CASE WHEN s.status = 'past_due' THEN 'past_due' ELSE 'cancel_at_period_end' END AS reason
{_BASE}
WHERE s.mrr_minor > 0 AND ((s.status = 'past_due'{grace_cond})
      OR (s.status = 'active' AND s.cancel_at_period_end = :true)){where}"""
    df = _frame(engine, sql, params, ("past_due_since", "renews_at"))
    cards = expiring_cards(engine, query, limit=None)
    if not cards.empty:
        cards = cards[~cards["subscription_id"].isin(set(df["subscription_id"]))]
        cards = cards[cards["status"] == "active"]
        cards = cards.assign(reason="card_expiring", past_due_since=pd.NaT)
        cols = list(df.columns) if not df.empty else [
            "subscription_id", "member_id", "email", "tier", "interval", "country", "currency", "mrr_minor",
            "status", "past_due_since", "renews_at", "reason"]
        df = pd.concat([df, cards[cols]], ignore_index=True) if not df.empty else cards[cols]
    return df.reset_index(drop=True)
