"""Status vocabularies. Stripe's strings are mirrored exactly and stored as plain strings, because
Stripe adds values over time (a native database enum would need a migration for each)."""

from __future__ import annotations

from enum import StrEnum


class SubscriptionStatus(StrEnum):
    """Stripe's ``subscription.status``."""

    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    UNPAID = "unpaid"
    CANCELED = "canceled"
    INCOMPLETE = "incomplete"
    INCOMPLETE_EXPIRED = "incomplete_expired"
    PAUSED = "paused"

    @classmethod
    def live(cls) -> frozenset[SubscriptionStatus]:
        """Statuses in which the member still has the membership."""
        return frozenset({cls.TRIALING, cls.ACTIVE, cls.PAST_DUE})

    @classmethod
    def mrr_counting(cls) -> frozenset[SubscriptionStatus]:
        """Statuses whose subscription contributes MRR (see docs/metrics.md)."""
        return frozenset({cls.ACTIVE, cls.PAST_DUE})

    @classmethod
    def ended(cls) -> frozenset[SubscriptionStatus]:
        return frozenset({cls.CANCELED, cls.INCOMPLETE_EXPIRED})


class ChurnKind(StrEnum):
    """Ours: how a cancellation counts (``core.stripe_mapping.churn_kind_of``): involuntary when
    Stripe cancelled for failed payment (``cancellation_details.reason``), voluntary otherwise."""

    VOLUNTARY = "voluntary"
    INVOLUNTARY = "involuntary"


class Interval(StrEnum):
    """Stripe's ``price.recurring.interval``."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    YEAR = "year"


class InvoiceStatus(StrEnum):
    """Stripe's ``invoice.status``."""

    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"
    VOID = "void"


class PaymentStatus(StrEnum):
    """Stripe's ``charge.status`` (a payment row mirrors one charge)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    PENDING = "pending"


class DisputeStatus(StrEnum):
    """Stripe's ``dispute.status``."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"
    WARNING_UNDER_REVIEW = "warning_under_review"
    WARNING_CLOSED = "warning_closed"
    NEEDS_RESPONSE = "needs_response"
    UNDER_REVIEW = "under_review"
    WON = "won"
    LOST = "lost"


class PauseBehavior(StrEnum):
    """Stripe's ``subscription.pause_collection.behavior``."""

    VOID = "void"
    KEEP_AS_DRAFT = "keep_as_draft"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


class Role(StrEnum):
    """Ours: a staff account's roles (``staff_accounts.roles``); grants in ``core.permissions``."""

    SUPPORT = "support"
    FINANCE = "finance"
    MANAGER = "manager"
    ADMIN = "admin"


class ChangeSource(StrEnum):
    """Ours: who wrote a ``membership_changes`` row (its ``source``)."""

    STRIPE = "stripe"
    STAFF = "staff"
    DEMO = "demo"
    SYSTEM = "system"
