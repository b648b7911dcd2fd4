"""Declarative base with stable constraint names on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import BigInteger, Integer, MetaData, String, Table
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from core.db.types import UTCDateTime
from core.timeutil import utc_now

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets BIGINT identities.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), int: BigInteger()}
    if TYPE_CHECKING:
        # Every model here is a mapped Table (SQLAlchemy types it as the wider FromClause).
        __table__: ClassVar[Table]


def created_column() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utc_now, nullable=False)


def stripe_id_column(nullable: bool = True) -> Mapped[str | None]:
    """A Stripe object id (``cus_...``); unique because every upsert is keyed by it."""
    return mapped_column(String(64), unique=True, nullable=nullable)


def currency_column() -> Mapped[str]:
    return mapped_column(String(3), nullable=False)


class StaffEditableMirror:
    """A Stripe object's mirror that staff also change (a member, a subscription)."""

    updated_at: Mapped[datetime | None]
    # When the Stripe state this row reflects was produced (event ``created`` or retrieval time);
    # the sync refuses to apply anything older.
    stripe_state_at: Mapped[datetime | None]
    # Bumped by every change to the row: a staff form submitted against an older version is
    # refused (optimistic concurrency).
    version: Mapped[int] = mapped_column(Integer, default=1, nullable=False)
