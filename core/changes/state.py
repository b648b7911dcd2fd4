"""Reading a member's state for previews, the audit log's before/after, and stale-form answers.

Snapshots are plain JSON-able dicts (no ORM objects), so they go into the audit log and back to
the form as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.metrics.subscription_mrr import Discount, Item, subscription_mrr
from core.models import Member, Payment, Price, Subscription, SubscriptionItem, Tier
from core.models.enums import SubscriptionStatus


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def current_subscription(session: Session, member_id: int) -> Subscription | None:
    """The membership that matters: a live one if any, else the most recently created."""
    subs = session.scalars(
        select(Subscription).where(Subscription.member_id == member_id)
        .order_by(Subscription.created_at.desc(), Subscription.id.desc())
    ).all()
    live = SubscriptionStatus.live() | {SubscriptionStatus.PAUSED, SubscriptionStatus.UNPAID}
    for sub in subs:
        if sub.status in live:
            return sub
    return subs[0] if subs else None


def mrr_items(session: Session, sub: Subscription, price_override: Price | None = None) -> list[Item]:
    rows: Sequence[tuple[int, Price]] = session.execute(
        select(SubscriptionItem.quantity, Price).join(Price, Price.id == SubscriptionItem.price_id)
        .where(SubscriptionItem.subscription_id == sub.id).order_by(SubscriptionItem.id)
    ).all()
    if not rows and sub.price_id is not None:
        price = session.get(Price, sub.price_id)
        rows = [(sub.quantity or 1, price)] if price else []
    items = [Item(p.unit_amount, q, p.interval, p.interval_count) for q, p in rows]
    if price_override is not None and items:
        items[0] = Item(price_override.unit_amount, items[0].quantity, price_override.interval,
                        price_override.interval_count)
    return items


def mrr_of(session: Session, sub: Subscription | None, *, status: str | None = None,
           pause_behavior: str | None | Literal[False] = False, price: Price | None = None,
           at: datetime | None = None) -> int:
    """MRR of ``sub`` by core.metrics.subscription_mrr, optionally as if its status/pause/price were different."""
    if sub is None or sub.complimentary:
        return 0
    discount = None
    if sub.discount_percent_off is not None or sub.discount_amount_off is not None:
        discount = Discount(sub.discount_percent_off, sub.discount_amount_off, sub.discount_duration or "forever",
                            sub.discount_end)
    return subscription_mrr(
        mrr_items(session, sub, price), status or sub.status,
        pause_behavior=sub.pause_behavior if pause_behavior is False else pause_behavior,
        discount=discount, at=at,
    )


def subscription_snapshot(session: Session, sub: Subscription | None) -> dict[str, Any] | None:
    if sub is None:
        return None
    tier = session.get(Tier, sub.tier_id)
    price = session.get(Price, sub.price_id) if sub.price_id else None
    return {
        "subscription_id": sub.id,
        "stripe_subscription_id": sub.stripe_subscription_id,
        "status": sub.status,
        "tier": tier.code if tier else None,
        "price": price.stripe_price_id if price else None,
        "price_amount": price.unit_amount if price else None,
        "interval": price.interval if price else None,
        "currency": sub.currency,
        "complimentary": sub.complimentary,
        "current_period_end": _iso(sub.current_period_end),
        "trial_end": _iso(sub.trial_end),
        "cancel_at_period_end": sub.cancel_at_period_end,
        "canceled_at": _iso(sub.canceled_at),
        "pause_behavior": sub.pause_behavior,
        "pause_resumes_at": _iso(sub.pause_resumes_at),
        "mrr_minor": sub.mrr_minor,
    }


def member_snapshot(session: Session, member: Member) -> dict[str, Any]:
    """What an agent needs to see to judge a change again (and what the audit log keeps)."""
    sub = current_subscription(session, member.id)
    return {
        "member_id": member.id,
        "version": member.version,
        "email": member.email,
        "name": member.name,
        "stripe_customer_id": member.stripe_customer_id,
        "deleted_in_stripe": member.deleted_in_stripe_at is not None,
        "subscription": subscription_snapshot(session, sub),
    }


def payment_snapshot(payment: Payment) -> dict[str, Any]:
    return {"payment_id": payment.id, "stripe_charge_id": payment.stripe_charge_id, "amount": payment.amount,
            "currency": payment.currency, "status": payment.status, "amount_refunded": payment.amount_refunded}
