"""The catalogue: tiers (free, premium, platinum) and their prices per interval and currency."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.models.base import Base, BigIntPK, created_column, currency_column, stripe_id_column


class Tier(Base):
    __tablename__ = "tiers"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)  # free, premium, platinum
    name: Mapped[str] = mapped_column(String(80))
    rank: Mapped[int] = mapped_column(Integer, default=0)  # higher is better: upgrade vs downgrade
    stripe_product_id: Mapped[str | None] = stripe_id_column()
    created_at: Mapped[datetime] = created_column()

    prices: Mapped[list[Price]] = relationship(back_populates="tier")


class Price(Base):
    __tablename__ = "prices"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tier_id: Mapped[int] = mapped_column(ForeignKey("tiers.id"), index=True)
    stripe_price_id: Mapped[str | None] = stripe_id_column()
    currency: Mapped[str] = currency_column()
    unit_amount: Mapped[int]  # minor units
    interval: Mapped[str] = mapped_column(String(8))  # day, week, month, year
    interval_count: Mapped[int] = mapped_column(Integer, default=1)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    nickname: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime] = created_column()

    tier: Mapped[Tier] = relationship(back_populates="prices")
