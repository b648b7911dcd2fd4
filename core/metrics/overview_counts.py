"""Plain counts for the Overview page (no conversion): members by tier and status and MRR per
currency from the standing counts (``core.metrics.standing``), this month's payments from the
daily rollups, each plus the rows written since the last refresh, so they are exact now.

Guarantees: read-only, answers on an empty database (empty frames, None times), money stays in
integer minor units per original currency. A member is counted once, under the subscription that
describes them now: a live one (active, trialing, past due) first, then paused/unpaid, then the
newest; members who never had a subscription are counted as tier "free", status "no membership".
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.metrics import source, standing
from core.metrics.types import Query
from core.models import Payment
from core.timeutil import ensure_aware, local_midnight, next_period_start, period_start, zone


def members_by_tier_status(engine: Engine) -> pd.DataFrame:
    """Columns tier, status, members: from the standing counts plus the members changed since
    their last refresh (``core.metrics.standing``)."""
    rows = standing.members_by_tier_status(engine)
    return pd.DataFrame(rows, columns=["tier", "status", "members"])


def mrr_by_currency(engine: Engine) -> pd.DataFrame:
    """Columns currency, mrr_minor, paying_subscriptions (statuses that count for MRR), from the
    standing counts plus the members changed since their last refresh."""
    return pd.DataFrame(standing.mrr_by_currency(engine), columns=["currency", "mrr_minor", "paying_subscriptions"])


def month_bounds(now: datetime, tz: str) -> tuple[date, datetime, datetime]:
    """The business-time-zone month containing ``now``: (first day, start UTC, end UTC)."""
    z = zone(tz)
    first = period_start(ensure_aware(now), "month", z)
    return first, local_midnight(first, z), local_midnight(next_period_start(first, "month"), z)


def payments_in_month(engine: Engine, *, now: datetime, tz: str = "UTC") -> pd.DataFrame:
    """Payment attempts in the month so far, per currency: attempts (succeeded or failed; a
    pending payment counts once it settles), succeeded, failed, collected_minor (succeeded
    amounts) and refunded_minor (refunds made this month, whichever month their payment was in).
    From the daily payment and cash rollups for the month's days plus the rows written since
    their last refresh (``core.metrics.source.daily``); from the rows when the rollups are kept
    for another time zone or not built yet."""
    first, _start, _end = month_bounds(now, tz)
    query = Query.make(engine, start=first, end=next_period_start(first, "month"), now=ensure_aware(now), tz=tz,
                       currency=None)
    sums: dict[str, list[int]] = {}
    for kind, picks in (("payments", (("attempts", 0), ("failed_attempts", 2))),
                        ("cash", (("payments", 1), ("gross", 3), ("refunds", 4)))):
        for row in source.daily(engine, query, kind, query.start, query.end, wanted=tuple(c for c, _ in picks)):
            acc = sums.setdefault(row["currency"], [0] * 5)
            for column, i in picks:
                acc[i] += row[column]
    rows = [(c, *v) for c, v in sorted(sums.items()) if any(v)]
    return pd.DataFrame(rows, columns=["currency", "attempts", "succeeded", "failed", "collected_minor",
                                       "refunded_minor"])


def newest_payment_at(engine: Engine) -> datetime | None:
    with Session(engine) as s:
        value = s.scalar(select(func.max(Payment.created_at)))
    return None if value is None else ensure_aware(value)


def open_alerts(engine: Engine) -> int:
    """Alerts that still need a person: open or acknowledged (snoozed and resolved do not count)."""
    from core.models import Alert

    with Session(engine) as s:
        return int(s.scalar(select(func.count()).select_from(Alert)
                            .where(Alert.status.in_(["open", "acknowledged"]))) or 0)


def data_through(engine: Engine) -> tuple[datetime | None, str]:
    """When the data was last brought in from Stripe, and how we know: the last successful sync
    run, else the newest sync state, else the newest payment in the database."""
    from core.models import SyncRun, SyncState

    with Session(engine) as s:
        run = s.scalar(select(func.max(SyncRun.finished_at)).where(SyncRun.status == "succeeded"))
        if run is not None:
            return ensure_aware(run), "last successful Stripe sync"
        state = s.scalar(select(func.max(SyncState.last_synced_at)))
        if state is not None:
            return ensure_aware(state), "last Stripe sync"
    newest = newest_payment_at(engine)
    return newest, "newest payment in the database; no Stripe sync has run yet"
