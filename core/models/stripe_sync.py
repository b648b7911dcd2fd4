"""The Stripe side of the database: the event ledger, sync state and runs, and run locks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db.types import EncryptedJSON
from core.models.base import Base, BigIntPK, created_column


class StripeEvent(Base):
    """Each Stripe event id once; ``processed_at`` is set only when its handler succeeded."""

    __tablename__ = "stripe_events"
    __table_args__ = (
        Index("ix_stripe_events_unprocessed", "processed_at", "created_at"),
        Index("ix_stripe_events_created", "created_at"),
        Index("ix_stripe_events_source_received", "source", "received_at"),  # /healthz: last webhook
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # evt_...
    type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]  # the event's own `created`
    api_version: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(64), index=True)
    payload: Mapped[Any] = mapped_column(EncryptedJSON())  # holds billing details: encrypted
    source: Mapped[str] = mapped_column(String(16), default="pull")  # pull, webhook
    received_at: Mapped[datetime] = created_column()
    processed_at: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class SyncState(Base):
    """Freshness per object type, and where an interrupted backfill resumes."""

    __tablename__ = "sync_state"

    object_type: Mapped[str] = mapped_column(String(32), primary_key=True)  # customer, subscription, ..., events
    last_synced_at: Mapped[datetime | None]
    backfill_cursor: Mapped[str | None] = mapped_column(String(64))  # last id done (starting_after)
    backfill_started_at: Mapped[datetime | None]
    backfill_completed_at: Mapped[datetime | None]
    newest_event_at: Mapped[datetime | None]
    newest_event_id: Mapped[str | None] = mapped_column(String(64))


class SyncRun(Base):
    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # incremental, full, member
    started_at: Mapped[datetime] = created_column()
    finished_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(String(16), default="running")  # running, succeeded, failed, skipped
    error: Mapped[str | None] = mapped_column(Text)
    counts: Mapped[Any] = mapped_column(JSON, default=dict)
    holder: Mapped[str | None] = mapped_column(String(120))  # host:pid


class RunLock(Base):
    """A named lock with an expiry: SQLite's stand-in for a PostgreSQL advisory lock."""

    __tablename__ = "run_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    acquired_at: Mapped[datetime]
    expires_at: Mapped[datetime]
