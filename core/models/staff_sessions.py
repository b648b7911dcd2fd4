"""Signed-in sessions of staff, so a sign-in can be ended on the server (sign-out, a disabled
account, changed roles, a reset password) for every replica at once.

The browser holds a signed cookie naming a random session token; the table keeps only the
token's SHA-256, so reading the table does not hand out working sessions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, created_column


class StaffSession(Base):
    __tablename__ = "staff_sessions"
    __table_args__ = (Index("ix_staff_sessions_username", "username"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the cookie's token
    username: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = created_column()
    expires_at: Mapped[datetime]  # slides forward while the person keeps working
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))  # sign-out, idle, password reset, ...
