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

    DRAFT = "draft"  # not finalized: still editable, asks nobody to pay
    OPEN = "open"  # finalized, waiting for its payment
    PAID = "paid"
    UNCOLLECTIBLE = "uncollectible"  # no longer expected to be paid (still counts as billed)
    VOID = "void"  # cancelled as if never issued


class PaymentStatus(StrEnum):
    """Stripe's ``charge.status`` (a payment row mirrors one charge)."""

    SUCCEEDED = "succeeded"  # the money was collected
    FAILED = "failed"  # declined by the bank or refused by Stripe
    PENDING = "pending"  # not settled yet (some bank debits take days)


class DisputeStatus(StrEnum):
    """Stripe's ``dispute.status``."""

    WARNING_NEEDS_RESPONSE = "warning_needs_response"  # an inquiry: no money withdrawn yet
    WARNING_UNDER_REVIEW = "warning_under_review"  # the inquiry's answer is with the bank
    WARNING_CLOSED = "warning_closed"  # the inquiry ended without becoming a dispute
    NEEDS_RESPONSE = "needs_response"  # disputed: the amount is withdrawn, evidence is due
    UNDER_REVIEW = "under_review"  # evidence sent, the bank decides
    WON = "won"  # the amount comes back
    LOST = "lost"  # the amount stays with the cardholder


class PauseBehavior(StrEnum):
    """Stripe's ``subscription.pause_collection.behavior``."""

    VOID = "void"
    KEEP_AS_DRAFT = "keep_as_draft"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


class Role(StrEnum):
    """Ours: a staff account's roles (``staff_accounts.roles``); grants in ``core.permissions``."""

    SUPPORT = "support"  # finds members and changes their memberships; sees no revenue figures
    FINANCE = "finance"  # reads and exports revenue, approves changes that need a second person
    MANAGER = "manager"  # works failed payments, churn and alerts; reads the audit log
    ADMIN = "admin"  # manages staff accounts and roles, watches the Stripe sync


class ChangeSource(StrEnum):
    """Ours: who wrote a ``membership_changes`` row (its ``source``)."""

    STRIPE = "stripe"
    STAFF = "staff"
    DEMO = "demo"
    SYSTEM = "system"
