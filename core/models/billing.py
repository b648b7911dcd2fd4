"""Invoices, payment attempts, refunds, disputes and payment methods, mirrored from Stripe.

A ``Payment`` row is one payment attempt (a Stripe charge): a failed renewal retried three times
is three rows on the same invoice. Card numbers and CVCs never reach this database: only brand,
last four, expiry, country, funding and wallet.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, FetchedValue, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db.types import EncryptedJSON, StrEnumString
from core.models.base import Base, BigIntPK, created_column, currency_column, stripe_id_column
from core.models.enums import DisputeStatus, InvoiceStatus, PaymentStatus


class PaymentMethod(Base):
    __tablename__ = "payment_methods"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    stripe_payment_method_id: Mapped[str | None] = stripe_id_column()
    type: Mapped[str] = mapped_column(String(24), default="card")
    brand: Mapped[str | None] = mapped_column(String(24))
    last4: Mapped[str | None] = mapped_column(String(4), index=True)
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    country: Mapped[str | None] = mapped_column(String(2))
    funding: Mapped[str | None] = mapped_column(String(16))
    wallet: Mapped[str | None] = mapped_column(String(24))  # apple_pay, google_pay, ...
    # Derived, whatever order the card and its customer arrive in: this card is the customer's
    # members.stripe_default_payment_method_id and is still attached.
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    billing_details: Mapped[dict[str, Any] | None] = mapped_column(EncryptedJSON())  # name, address, phone
    created_at: Mapped[datetime] = created_column()
    detached_at: Mapped[datetime | None]
    stripe_state_at: Mapped[datetime | None]


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (Index("ix_invoices_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    stripe_invoice_id: Mapped[str | None] = stripe_id_column()
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    subscription_id: Mapped[int | None] = mapped_column(ForeignKey("subscriptions.id"), index=True)
    number: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[InvoiceStatus] = mapped_column(StrEnumString(InvoiceStatus, 16))
    # subscription_create, subscription_cycle (a renewal), subscription_update, manual
    billing_reason: Mapped[str | None] = mapped_column(String(32))
    currency: Mapped[str] = currency_column()
    subtotal: Mapped[int] = mapped_column(default=0)
    tax: Mapped[int] = mapped_column(default=0)
    total: Mapped[int] = mapped_column(default=0)
    amount_due: Mapped[int] = mapped_column(default=0)
    amount_paid: Mapped[int] = mapped_column(default=0)
    amount_remaining: Mapped[int] = mapped_column(default=0)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    created_at: Mapped[datetime] = created_column()
    finalized_at: Mapped[datetime | None]
    due_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    voided_at: Mapped[datetime | None]
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    next_payment_attempt_at: Mapped[datetime | None]
    hosted_invoice_url: Mapped[str | None] = mapped_column(String(500))
    stripe_state_at: Mapped[datetime | None]
    # The member's country when the invoice was first written (a database trigger copies it, so
    # the metrics file the invoice's payments under the country it was billed in, for good).
    billing_country: Mapped[str | None] = mapped_column(String(2), server_default=FetchedValue())


class InvoicePaymentRef(Base):
    """A payment intent or charge id the invoice names as paying it (today's ``invoice.payments``,
    the older ``invoice.payment_intent`` / ``invoice.charge``), as of the invoice's newest state.

    Today's charge does not name its invoice; keeping what the invoice says lets a charge that
    arrives after its invoice find it (``core.stripe_store`` links both ways)."""

    __tablename__ = "invoice_payment_refs"
    __table_args__ = (Index("uq_invoice_payment_refs_invoice_ref", "invoice_id", "payment_ref", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    payment_ref: Mapped[str] = mapped_column(String(64), index=True)  # pi_... or ch_... / py_...


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"
    __table_args__ = (Index("uq_invoice_lines_invoice_line", "invoice_id", "stripe_line_id", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"))
    stripe_line_id: Mapped[str | None] = mapped_column(String(64))
    price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"))
    description: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = currency_column()
    quantity: Mapped[int] = mapped_column(Integer, default=1)
    period_start: Mapped[datetime | None]
    period_end: Mapped[datetime | None]
    proration: Mapped[bool] = mapped_column(Boolean, default=False)


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_created", "created_at"),  # a time window: the rollups' tail, alert attempt counts
        Index("ix_payments_status_created", "status", "created_at"),  # failed or succeeded in a window: alerts
        Index("ix_payments_member_created", "member_id", "created_at"),  # one member's, newest first
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    stripe_charge_id: Mapped[str | None] = stripe_id_column()
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    invoice_id: Mapped[int | None] = mapped_column(ForeignKey("invoices.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"))
    payment_method_id: Mapped[int | None] = mapped_column(ForeignKey("payment_methods.id"))
    amount: Mapped[int]
    currency: Mapped[str] = currency_column()
    status: Mapped[PaymentStatus] = mapped_column(StrEnumString(PaymentStatus, 16))
    created_at: Mapped[datetime] = created_column()
    # Derived from stored state, not from arrival order (core.stripe_store.derived): the rank of
    # this attempt among its invoice's (else its payment intent's) by (created_at, charge id), and
    # whether that invoice's billing_reason is subscription_cycle.
    attempt_number: Mapped[int] = mapped_column(Integer, default=1)  # 1 = first try on its invoice
    is_renewal: Mapped[bool] = mapped_column(Boolean, default=False)
    failure_code: Mapped[str | None] = mapped_column(String(64))
    decline_code: Mapped[str | None] = mapped_column(String(64))
    failure_message: Mapped[str | None] = mapped_column(Text)
    card_brand: Mapped[str | None] = mapped_column(String(24))
    card_country: Mapped[str | None] = mapped_column(String(2))
    card_last4: Mapped[str | None] = mapped_column(String(4))
    wallet: Mapped[str | None] = mapped_column(String(24))
    amount_refunded: Mapped[int] = mapped_column(default=0)
    disputed: Mapped[bool] = mapped_column(Boolean, default=False)
    fee: Mapped[int | None]  # Stripe's fee in the same currency, when known
    stripe_state_at: Mapped[datetime | None]


class _TakenBack:
    """Money taken back from one member's payment: a refund or a dispute."""

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    amount: Mapped[int]
    currency: Mapped[str] = currency_column()


class Refund(_TakenBack, Base):
    __tablename__ = "refunds"

    stripe_refund_id: Mapped[str | None] = stripe_id_column()
    status: Mapped[str] = mapped_column(String(16))  # pending, succeeded, failed, canceled
    reason: Mapped[str | None] = mapped_column(String(64))  # duplicate, fraudulent, requested_by_customer
    created_at: Mapped[datetime] = created_column()
    stripe_state_at: Mapped[datetime | None]


class Dispute(_TakenBack, Base):
    __tablename__ = "disputes"

    stripe_dispute_id: Mapped[str | None] = stripe_id_column()
    status: Mapped[DisputeStatus] = mapped_column(StrEnumString(DisputeStatus, 32))
    reason: Mapped[str | None] = mapped_column(String(64))  # fraudulent, product_not_received, ...
    created_at: Mapped[datetime] = created_column()
    closed_at: Mapped[datetime | None]  # when it became won or lost
    stripe_state_at: Mapped[datetime | None]
