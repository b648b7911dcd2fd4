"""Members (the app's users, free ones included) and what staff write about them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db.types import EncryptedText
from core.models.base import Base, BigIntPK, StaffEditableMirror, created_column, stripe_id_column


class Member(StaffEditableMirror, Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # stored lower-case
    name: Mapped[str] = mapped_column(String(256), default="", index=True)  # Stripe's maximum
    country: Mapped[str | None] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    # Encrypted at rest: search never needs them.
    phone: Mapped[str | None] = mapped_column(EncryptedText())
    address: Mapped[str | None] = mapped_column(EncryptedText())  # JSON text of the postal address
    stripe_customer_id: Mapped[str | None] = stripe_id_column()
    # The customer's invoice_settings.default_payment_method as Stripe names it (not unique, not a
    # foreign key: the card may arrive later); payment_methods.is_default is derived from it.
    stripe_default_payment_method_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    deleted_in_stripe_at: Mapped[datetime | None]
    # updated_at, stripe_state_at and version come from StaffEditableMirror; a member's version is
    # also bumped by every change to their subscriptions, payments and notes.


class StaffNote(Base):
    __tablename__ = "staff_notes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    author: Mapped[str] = mapped_column(String(120))
    body: Mapped[str] = mapped_column(EncryptedText())
    created_at: Mapped[datetime] = created_column()
