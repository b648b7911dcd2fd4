"""Business settings staff change at run time, and FX rates for the reporting currency."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, Index, Numeric, String
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigIntPK, created_column, currency_column


class Setting(Base):
    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = created_column()
    updated_by: Mapped[str] = mapped_column(String(64), default="system")


class FxRate(Base):
    """Value in USD of one major unit of ``currency`` during ``month`` (first day of the month)."""

    __tablename__ = "fx_rates"
    __table_args__ = (Index("uq_fx_rates_currency_month", "currency", "month", unique=True),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    currency: Mapped[str] = currency_column()
    month: Mapped[date] = mapped_column(Date)
    usd_per_unit: Mapped[Decimal] = mapped_column(Numeric(20, 10))
    updated_at: Mapped[datetime] = created_column()
    updated_by: Mapped[str] = mapped_column(String(64), default="system")
