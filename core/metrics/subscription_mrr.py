"""MRR of one subscription, by the definition in docs/metrics.md. Pure functions, no database.

Every writer (the Stripe sync, the demo loader, staff changes) stores the result in
``subscriptions.mrr_minor`` and in each ``membership_changes`` row, so the metrics read MRR
instead of recomputing it. ``past_due_grace_days`` is applied later, by the metrics, because it
is a setting that can change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal

from core.models.enums import PauseBehavior, SubscriptionStatus
from core.money import MinorUnits


@dataclass(frozen=True, slots=True)
class Item:
    unit_amount: int  # minor units
    quantity: int
    interval: str  # day, week, month, year
    interval_count: int = 1


@dataclass(frozen=True, slots=True)
class Discount:
    percent_off: Decimal | None = None
    amount_off: int | None = None  # minor units per invoice, same currency
    duration: str = "forever"  # once, repeating, forever
    end: datetime | None = None


def monthly_amount(item: Item) -> Decimal:
    """One item's recurring amount normalised to one month (exact, before rounding)."""
    total = Decimal(item.unit_amount) * item.quantity
    n = max(item.interval_count, 1)
    if item.interval == "month":
        return total / n
    if item.interval == "year":
        return total / (12 * n)
    if item.interval == "week":
        return total * 52 / 12 / n
    if item.interval == "day":
        return total * 365 / 12 / n
    raise ValueError(f"unknown interval {item.interval!r}")


def subscription_mrr(
    items: list[Item],
    status: str,
    *,
    pause_behavior: str | None = None,
    discount: Discount | None = None,
    at: datetime | None = None,
) -> MinorUnits:
    """MRR in minor units, rounded half-to-even once per subscription.

    Zero while trialing, incomplete, incomplete_expired, canceled, unpaid or paused, or when
    collection is paused with behavior=void. past_due counts; cancel_at_period_end still counts.
    A recurring discount in force at ``at`` reduces MRR; a ``once`` coupon does not.
    """
    if status not in SubscriptionStatus.mrr_counting():
        return MinorUnits(0)
    if pause_behavior == PauseBehavior.VOID:
        return MinorUnits(0)
    gross = sum((monthly_amount(i) for i in items), Decimal(0))
    if discount is not None and discount.duration != "once" and (
        discount.end is None or at is None or discount.end > at
    ):
        if discount.percent_off is not None:
            gross = gross * (Decimal(100) - Decimal(discount.percent_off)) / 100
        elif discount.amount_off is not None and items:
            # amount_off applies per invoice: normalise it with the first item's interval.
            first = items[0]
            gross -= monthly_amount(Item(discount.amount_off, 1, first.interval, first.interval_count))
    return MinorUnits(max(int(gross.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)), 0))
