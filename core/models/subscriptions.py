"""Memberships: the mirrored Stripe subscription, its items, and the history of every change.

``MembershipChange`` is the basis of MRR movements: each row carries the subscription's MRR
before and after, in its own currency, at the instant the change took effect.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import Boolean, FetchedValue, ForeignKey, Index, Integer, Numeric, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from core.db.types import StrEnumString
from core.models.base import Base, BigIntPK, StaffEditableMirror, created_column, currency_column, stripe_id_column
from core.models.enums import SubscriptionStatus


class Subscription(StaffEditableMirror, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (Index("ix_subscriptions_status_tier", "status", "tier_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    # Null for a complimentary membership granted by staff without Stripe.
    stripe_subscription_id: Mapped[str | None] = stripe_id_column()
    status: Mapped[SubscriptionStatus] = mapped_column(StrEnumString(SubscriptionStatus, 24))
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"))
    price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"))  # the main item's price
    currency: Mapped[str] = currency_column()
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    # Contractual MRR now, by the definition in docs/metrics.md (grace days aside).
    mrr_minor: Mapped[int] = mapped_column(default=0)
    complimentary: Mapped[bool] = mapped_column(Boolean, default=False)

    # The times below are Stripe's subscription fields, mirrored by the sync (core.stripe_mapping).
    created_at: Mapped[datetime] = created_column()
    started_at: Mapped[datetime | None]  # Stripe's start_date
    current_period_start: Mapped[datetime | None]  # the billing period paid or being billed now
    current_period_end: Mapped[datetime | None]
    trial_start: Mapped[datetime | None]  # None when the subscription never had a trial
    trial_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False)
    cancel_at: Mapped[datetime | None]  # a cancellation scheduled for this time (not yet ended)
    # When the cancellation was asked for (Stripe's canceled_at), also for one at the period end;
    # the cancellations alert counts from it.
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]  # when the subscription actually ended
    # Stripe's cancellation_details.reason (cancellation_requested, payment_failed,
    # payment_disputed) and .feedback (too_expensive, unused, ...), plus our own words.
    cancellation_reason: Mapped[str | None] = mapped_column(String(64))
    cancellation_feedback: Mapped[str | None] = mapped_column(String(64))
    cancellation_comment: Mapped[str | None] = mapped_column(Text)
    churn_kind: Mapped[str | None] = mapped_column(String(16))  # voluntary / involuntary
    past_due_since: Mapped[datetime | None]

    pause_behavior: Mapped[str | None] = mapped_column(String(24))  # void, keep_as_draft, mark_uncollectible
    pause_resumes_at: Mapped[datetime | None]

    # The recurring discount in force (a `once` coupon does not reduce MRR).
    discount_percent_off: Mapped[Decimal | None] = mapped_column(Numeric(5, 2))
    discount_amount_off: Mapped[int | None]
    discount_duration: Mapped[str | None] = mapped_column(String(16))  # once, repeating, forever
    discount_end: Mapped[datetime | None]

    default_payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    # The first instant (UTC) after the expiry month of the card a renewal charges (this
    # subscription's default card, else the member's); a renewal at or after it fails on that
    # card. Kept by database triggers (migration 0009), whoever writes the rows: never set it.
    card_valid_until: Mapped[datetime | None] = mapped_column(server_default=FetchedValue(),
                                                              server_onupdate=FetchedValue())


class SubscriptionItem(Base):
    """Since the 2025 API versions the billing period lives on each item."""

    __tablename__ = "subscription_items"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    stripe_item_id: Mapped[str | None] = stripe_id_column()
    price_id: Mapped[int] = mapped_column(ForeignKey("prices.id"))
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]


PAYMENT_STOPS = "mrr_before_minor > 0 AND mrr_after_minor = 0"  # as core.metrics.daily's cancellations say it


class MembershipChange(Base):
    __tablename__ = "membership_changes"
    __table_args__ = (
        Index("ix_membership_changes_member_effective", "member_id", "effective_at"),
        Index("ix_membership_changes_effective", "effective_at"),
        Index("uq_membership_changes_event_subscription", "stripe_event_id", "subscription_id", unique=True),
        # The changes that stopped payment (a tenth of all): the cancellation rollups read a few
        # days of them, which the plain time index found among every change of those days (0026).
        Index("ix_membership_changes_payment_stops", "effective_at",
              postgresql_where=text(PAYMENT_STOPS), sqlite_where=text(PAYMENT_STOPS)),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    effective_at: Mapped[datetime]
    # created, trial_started, converted, upgraded, downgraded, price_changed, canceled,
    # cancel_scheduled, cancel_unscheduled, reactivated, paused, resumed, past_due, recovered,
    # extended, comp_granted, discount_changed, status_changed
    kind: Mapped[str] = mapped_column(String(32))
    from_status: Mapped[SubscriptionStatus | None] = mapped_column(StrEnumString(SubscriptionStatus, 24))
    to_status: Mapped[SubscriptionStatus | None] = mapped_column(StrEnumString(SubscriptionStatus, 24))
    from_price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"))
    to_price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"))
    from_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    to_tier_id: Mapped[int | None] = mapped_column(ForeignKey("tiers.id"))
    currency: Mapped[str] = currency_column()
    # The member's country when the change was recorded (a database trigger copies it): the
    # metrics file MRR from this change on under it, so a later move never rewrites history.
    country: Mapped[str | None] = mapped_column(String(2), server_default=FetchedValue())
    mrr_before_minor: Mapped[int] = mapped_column(default=0)
    mrr_after_minor: Mapped[int] = mapped_column(default=0)
    churn_kind: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # stripe, staff, demo, system
    actor: Mapped[str | None] = mapped_column(String(120))
    stripe_event_id: Mapped[str | None] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = created_column()
