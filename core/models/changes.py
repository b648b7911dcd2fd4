"""Staff-initiated membership changes: the approval queue and the idempotent action record.

Every manual change is one row here before it touches Stripe. Its ``idempotency_key`` is derived
from the action, so a double click or a retry finds the same row and the same Stripe result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigIntPK, created_column


class ChangeRequest(Base):
    __tablename__ = "change_requests"
    __table_args__ = (Index("ix_change_requests_status_requested", "status", "requested_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    action: Mapped[str] = mapped_column(String(32))  # change_price, extend, pause, cancel, refund, ...
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    params: Mapped[Any] = mapped_column(JSON, default=dict)
    reason: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(Text)
    member_version: Mapped[int] = mapped_column(Integer)  # the version the form was loaded at
    # pending_approval, approved, rejected, applying, applied, failed
    status: Mapped[str] = mapped_column(String(24))
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_at: Mapped[datetime] = created_column()
    decided_by: Mapped[str | None] = mapped_column(String(64))
    decided_at: Mapped[datetime | None]
    decision_note: Mapped[str | None] = mapped_column(Text)
    applied_at: Mapped[datetime | None]
    result: Mapped[Any] = mapped_column(JSON, nullable=True)
    stripe_ids: Mapped[Any] = mapped_column(JSON, nullable=True)
    error: Mapped[str | None] = mapped_column(Text)
