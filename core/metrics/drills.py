"""Drill-down rows behind cash and payment-health numbers: payments, refunds and disputes, with
the member's id and email, amounts in minor units beside their currency, and UTC dates."""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, bindparam, text

from core.db.types import UTCDateTime
from core.metrics.common import range_bounds
from core.metrics.daily import BILLED, BILLED_AT, COUNTRY_AT_BILLING, PRICE_AT_BILLING
from core.metrics.source import filter_values
from core.metrics.types import Query

if TYPE_CHECKING:
    import pandas as pd

_FILTER_SQL = {"tier_id": "pr.tier_id", "interval": "pr.interval", "currency": "{cur}",
               "country": COUNTRY_AT_BILLING}


def rows(engine: Engine, query: Query, *, period: date | None, limit: int | None, source: str,
         where: str = "", params: dict[str, Any] | None = None) -> pd.DataFrame:
    """``source``: payments (by created_at), refunds (by created_at), disputes (by closed_at),
    invoices billed (by finalized_at); each filed under the price and country it was billed at."""
    import pandas as pd

    start, end = range_bounds(query, period)
    if source == "payments":
        select = ("p.id AS payment_id, p.member_id, m.email, p.amount AS amount_minor, p.currency, p.status, "
                  "p.created_at, p.attempt_number, p.is_renewal, p.decline_code, p.failure_code, p.card_brand, "
                  "p.card_country, p.fee AS fee_minor, p.invoice_id")
        frm, when, cur = "payments p", "p.created_at", "p.currency"
    elif source == "refunds":
        select = ("r.id AS refund_id, r.payment_id, r.member_id, m.email, r.amount AS amount_minor, r.currency, "
                  "r.status, r.reason, r.created_at")
        frm, when, cur = "refunds r JOIN payments p ON p.id = r.payment_id", "r.created_at", "r.currency"
    elif source == "invoices":
        select = ("i.id AS invoice_id, i.member_id, m.email, i.total AS amount_minor, i.currency, i.status, "
                  "i.number, i.billing_reason, i.created_at, i.finalized_at")
        frm, when, cur = "invoices i", BILLED_AT, "i.currency"
        where = f"AND {BILLED} {where}"
    else:
        select = ("d.id AS dispute_id, d.payment_id, d.member_id, m.email, d.amount AS amount_minor, d.currency, "
                  "d.status, d.reason, d.created_at, d.closed_at")
        frm, when, cur = "disputes d JOIN payments p ON p.id = d.payment_id", "d.closed_at", "d.currency"
    joins = ("JOIN members m ON m.id = i.member_id" if source == "invoices" else
             "JOIN members m ON m.id = p.member_id\nLEFT JOIN invoices i ON i.id = p.invoice_id")
    filters = filter_values(engine, query)
    conds = "".join(f" AND {_FILTER_SQL[c].format(cur=cur)} = :f_{c}" for c in filters)
    sql = f"""
SELECT {select}, t.code AS tier, pr.interval, {COUNTRY_AT_BILLING} AS country
FROM {frm}
{joins}
LEFT JOIN subscriptions s ON s.id = i.subscription_id
LEFT JOIN prices pr ON pr.id = {PRICE_AT_BILLING}
LEFT JOIN tiers t ON t.id = pr.tier_id
WHERE {when} >= :start AND {when} < :end {where}{conds}
ORDER BY {when}, 1
{"LIMIT :limit" if limit else ""}"""
    stmt = text(sql).bindparams(bindparam("start", type_=UTCDateTime()), bindparam("end", type_=UTCDateTime()))
    values = {"start": start, "end": end, **(params or {}), **{f"f_{c}": v for c, v in filters.items()}}
    if limit:
        values["limit"] = limit
    with engine.connect() as conn:
        result = conn.execute(stmt, values)
        df = pd.DataFrame(result.all(), columns=list(result.keys()))
    for col in ("created_at", "closed_at", "finalized_at"):
        if col in df.columns and not df.empty:
            df[col] = pd.to_datetime(df[col], utc=True)
    return df
