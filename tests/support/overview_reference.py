"""The Overview's counts as scans of the tables: the independent reference the standing counts
and the month's payments (``core.metrics.overview_counts``) are checked against. The product
never reads these: at a million members the first one alone took 6.1 s.

- ``members_by_tier_status``: a window over every subscription, each member under the one that
  describes them now (live, then paused/unpaid, then the newest), the rest free / no membership.
- ``mrr_by_currency``: MRR-counting subscriptions with MRR above zero, summed per currency.
- ``payments_in_month``: the month's settled attempts per currency, and the refunds made in it.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import Engine, case, func, select
from sqlalchemy.orm import Session

from core.metrics.overview_counts import month_bounds
from core.models import Member, Payment, Refund, Subscription, Tier
from core.models.enums import SubscriptionStatus


def members_by_tier_status(engine: Engine) -> pd.DataFrame:
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
        rows = [{"tier": t, "status": str(st), "members": int(n)} for t, st, n in s.execute(q)]
        with_sub = s.scalar(select(func.count(func.distinct(Subscription.member_id)))) or 0
        total = s.scalar(select(func.count()).select_from(Member)) or 0
    if total - with_sub > 0:
        rows.append({"tier": "free", "status": "no membership", "members": int(total - with_sub)})
    frame = pd.DataFrame(rows, columns=["tier", "status", "members"])
    return frame.sort_values(["tier", "status"], ignore_index=True)


def mrr_by_currency(engine: Engine) -> pd.DataFrame:
    statuses = [str(x) for x in SubscriptionStatus.mrr_counting()]
    q = (select(Subscription.currency, func.sum(Subscription.mrr_minor), func.count())
         .where(Subscription.status.in_(statuses), Subscription.mrr_minor > 0)
         .group_by(Subscription.currency).order_by(Subscription.currency))
    with Session(engine) as s:
        rows = [{"currency": c, "mrr_minor": int(m or 0), "paying_subscriptions": int(n)} for c, m, n in s.execute(q)]
    return pd.DataFrame(rows, columns=["currency", "mrr_minor", "paying_subscriptions"])


def payments_in_month(engine: Engine, *, now: datetime, tz: str = "UTC") -> pd.DataFrame:
    """Payments created in the month up to ``now``: succeeded or failed attempts, succeeded,
    failed, collected (succeeded amounts); refunds created in the month up to ``now`` (not failed
    or canceled), whichever month their payment was in."""
    _first, start, end = month_bounds(now, tz)
    end = min(end, now)
    ok, failed = Payment.status == "succeeded", Payment.status == "failed"
    q = (select(Payment.currency, func.sum(case((ok | failed, 1), else_=0)), func.sum(case((ok, 1), else_=0)),
                func.sum(case((failed, 1), else_=0)), func.sum(case((ok, Payment.amount), else_=0)))
         .where(Payment.created_at >= start, Payment.created_at < end).group_by(Payment.currency))
    r = (select(Refund.currency, func.sum(Refund.amount))
         .where(Refund.created_at >= start, Refund.created_at < end, Refund.status.not_in(["failed", "canceled"]))
         .group_by(Refund.currency))
    sums: dict[str, list[int]] = {}
    with Session(engine) as s:
        for c, n, ok_n, f, col in s.execute(q):
            sums.setdefault(c, [0] * 5)[:4] = [int(n or 0), int(ok_n or 0), int(f or 0), int(col or 0)]
        for c, refunded in s.execute(r):
            sums.setdefault(c, [0] * 5)[4] = int(refunded or 0)
    rows = [(c, *v) for c, v in sorted(sums.items()) if any(v)]
    return pd.DataFrame(rows, columns=["currency", "attempts", "succeeded", "failed", "collected_minor",
                                       "refunded_minor"])
