"""Plain counts for the Overview page, straight from the tables (no rollups, no conversion).

Guarantees: read-only, answers on an empty database (empty frames, None times), money stays in
integer minor units per original currency. A member is counted once, under the subscription that
describes them now: a live one (active, trialing, past due) first, then paused/unpaid, then the
newest; members who never had a subscription are counted as tier "free", status "no membership".
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from core.models import Member, Payment, Subscription, Tier
from core.models.enums import SubscriptionStatus
from core.timeutil import ensure_aware, local_midnight, next_period_start, period_start, zone


def members_by_tier_status(engine: Engine) -> pd.DataFrame:
    """Columns tier, status, members."""
    rank = case((Subscription.status.in_(["active", "trialing", "past_due"]), 0),
                (Subscription.status.in_(["paused", "unpaid"]), 1), else_=2)
    numbered = select(
        Subscription.member_id, Subscription.status, Subscription.tier_id,
        func.row_number().over(partition_by=Subscription.member_id,
                               order_by=(rank, Subscription.created_at.desc(), Subscription.id.desc())).label("n"),
    ).subquery()
    q = (select(Tier.code, numbered.c.status, func.count())
         .join(Tier, Tier.id == numbered.c.tier_id).where(numbered.c.n == 1)
         .group_by(Tier.code, numbered.c.status))
    with Session(engine) as s:
        rows = [{"tier": t, "status": st, "members": int(n)} for t, st, n in s.execute(q)]
        with_sub = s.scalar(select(func.count(func.distinct(Subscription.member_id)))) or 0
        total = s.scalar(select(func.count()).select_from(Member)) or 0
    if total - with_sub > 0:
        rows.append({"tier": "free", "status": "no membership", "members": int(total - with_sub)})
    frame = pd.DataFrame(rows, columns=["tier", "status", "members"])
    return frame.sort_values(["tier", "status"], ignore_index=True)


def mrr_by_currency(engine: Engine) -> pd.DataFrame:
    """Columns currency, mrr_minor, paying_subscriptions (statuses that count for MRR)."""
    statuses = [str(x) for x in SubscriptionStatus.mrr_counting()]
    q = (select(Subscription.currency, func.sum(Subscription.mrr_minor), func.count())
         .where(Subscription.status.in_(statuses), Subscription.mrr_minor > 0)
         .group_by(Subscription.currency).order_by(Subscription.currency))
    with Session(engine) as s:
        rows = [{"currency": c, "mrr_minor": int(m or 0), "paying_subscriptions": int(n)} for c, m, n in s.execute(q)]
    return pd.DataFrame(rows, columns=["currency", "mrr_minor", "paying_subscriptions"])


def month_bounds(now: datetime, tz: str) -> tuple[date, datetime, datetime]:
    """The business-time-zone month containing ``now``: (first day, start UTC, end UTC)."""
    z = zone(tz)
    first = period_start(ensure_aware(now), "month", z)
    return first, local_midnight(first, z), local_midnight(next_period_start(first, "month"), z)


def payments_in_month(engine: Engine, *, now: datetime, tz: str = "UTC") -> pd.DataFrame:
    """Payment attempts in the month so far, per currency: attempts, succeeded, failed,
    collected_minor (succeeded amounts), refunded_minor (refunded on those payments)."""
    _first, start, end = month_bounds(now, tz)
    ok = Payment.status == "succeeded"
    q = (select(Payment.currency, func.count(),
                func.sum(case((ok, 1), else_=0)), func.sum(case((Payment.status == "failed", 1), else_=0)),
                func.sum(case((ok, Payment.amount), else_=0)), func.sum(Payment.amount_refunded))
         .where(Payment.created_at >= start, Payment.created_at < end)
         .group_by(Payment.currency).order_by(Payment.currency))
    with Session(engine) as s:
        rows = [{"currency": c, "attempts": int(n), "succeeded": int(ok_n or 0), "failed": int(f or 0),
                 "collected_minor": int(col or 0), "refunded_minor": int(ref or 0)}
                for c, n, ok_n, f, col, ref in s.execute(q)]
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
    return newest, "newest payment in the database (no Stripe sync has run yet)"
