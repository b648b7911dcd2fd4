"""Staff accounts, sign-in attempts, and the append-only audit log.

The audit log is append-only twice over: no code path updates or deletes it, and database
triggers (created in the migrations) refuse UPDATE and DELETE on both SQLite and PostgreSQL, and
TRUNCATE on PostgreSQL. Each entry is chained to the one before it (``seq``, ``prev_hash``,
``entry_hash``; see ``core.audit``), so a change made behind the triggers' back is found by
``python -m cli audit verify``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db.types import EncryptedJSON
from core.models.base import Base, BigIntPK, created_column


class StaffAccount(Base):
    __tablename__ = "staff_accounts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(100))  # bcrypt
    roles: Mapped[str] = mapped_column(String(100))  # comma-separated Role values, sorted
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime | None]  # the roles, the active switch or the password last changed
    last_login_at: Mapped[datetime | None]  # the last successful sign-in
    # Set when failed sign-ins lock the account everywhere (core.lockout); sign-in is refused until
    # then. A password reset or an unlock clears it and forgives the failures before it.
    locked_until: Mapped[datetime | None]
    failures_forgiven_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]  # the account's creation, then each password reset

    @property
    def role_set(self) -> frozenset[str]:
        return frozenset(r for r in self.roles.split(",") if r)


class LoginAttempt(Base):
    """Every sign-in attempt, so lockouts are shared by all sessions and replicas."""

    __tablename__ = "login_attempts"
    __table_args__ = (Index("ix_login_attempts_username_at", "username", "at"),
                      Index("ix_login_attempts_place_at", "place", "at"))

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = created_column()
    success: Mapped[bool] = mapped_column(Boolean)
    # A keyed digest of the connection's address (core.lockout.place_of); None when not known.
    place: Mapped[str | None] = mapped_column(String(24))


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        # The audit page, newest first, between two dates (core.audit.query.entries).
        Index("ix_audit_log_at", "at"),
        # One member's history, newest first: the member page and the audit page's member filter.
        Index("ix_audit_log_member_at", "member_id", "at"),
        # The audit page filtered by a staff member.
        Index("ix_audit_log_actor_at", "actor", "at"),
        # The audit page filtered by an action or an action prefix (``member.``).
        Index("ix_audit_log_action_at", "action", "at"),
        # One entry per chain position and one successor per entry: two writers cannot fork it.
        Index("uq_audit_log_seq", "seq", unique=True),
        Index("uq_audit_log_prev_hash", "prev_hash", unique=True),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    at: Mapped[datetime] = created_column()
    actor: Mapped[str] = mapped_column(String(64))  # staff username, or "system" / "sync" / "cli:<user>"
    action: Mapped[str] = mapped_column(String(64))  # e.g. member.refund, auth.login_failed, settings.update
    member_id: Mapped[int | None]  # no foreign key: the log outlives whatever it mentions
    target_type: Mapped[str | None] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    # before/after may hold contact details: encrypted like the fields they copy.
    before: Mapped[Any] = mapped_column(EncryptedJSON(), nullable=True)
    after: Mapped[Any] = mapped_column(EncryptedJSON(), nullable=True)
    stripe_ids: Mapped[Any] = mapped_column(JSON, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(80))  # the action id / idempotency key
    approved_by: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16), default="ok")  # ok, refused, failed
    # The hash chain (NULL for entries written before it existed, migration 0013).
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    entry_hash: Mapped[str | None] = mapped_column(String(64))


class AuditChainHead(Base):
    """The chain's last position and hash: one row, updated in every appending transaction, so
    appends queue behind its row lock (PostgreSQL) or the write lock (SQLite)."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
