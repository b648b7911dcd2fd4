"""Alerts on payment trouble: rules, alerts with their lifecycle, and notifications."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base, BigIntPK, created_column


class AlertRule(Base):
    __tablename__ = "alert_rules"

    slug: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    params: Mapped[Any] = mapped_column(JSON, default=dict)  # thresholds, baseline window, minimum volume
    notify: Mapped[Any] = mapped_column(JSON, default=dict)  # {"email": [...], "webhook": "https://..."}
    updated_at: Mapped[datetime] = created_column()
    updated_by: Mapped[str] = mapped_column(String(64), default="system")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        # One open alert per rule and scope: a repeat updates it instead of opening another.
        Index(
            "uq_alerts_open_rule_scope", "rule", "scope", unique=True,
            postgresql_where=text("status <> 'resolved'"), sqlite_where=text("status <> 'resolved'"),
        ),
        Index("ix_alerts_status_severity", "status", "severity"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    rule: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(120), default="all")  # e.g. decline_code=insufficient_funds
    status: Mapped[str] = mapped_column(String(16), default="open")  # open, acknowledged, snoozed, resolved
    severity: Mapped[str] = mapped_column(String(16))  # low, medium, high, critical
    # What the rule measured and what it expected, in the rule's unit (``details["unit"]``). A ratio,
    # a count or hours go in ``value``/``baseline``; money goes in ``value_minor``/``baseline_minor``,
    # whole minor units of ``currency``, because a float cannot hold every amount exactly. A money
    # alert leaves ``value``/``baseline`` empty, any other leaves the minor-unit columns empty.
    value: Mapped[float | None] = mapped_column(Float)
    baseline: Mapped[float | None] = mapped_column(Float)
    value_minor: Mapped[int | None] = mapped_column(BigInteger)
    baseline_minor: Mapped[int | None] = mapped_column(BigInteger)
    currency: Mapped[str | None] = mapped_column(String(3))
    hint: Mapped[str | None] = mapped_column(Text)
    details: Mapped[Any] = mapped_column(JSON, default=dict)
    opened_at: Mapped[datetime] = created_column()
    last_fired_at: Mapped[datetime | None]  # the last evaluation that found the condition holding
    window_start: Mapped[datetime | None]  # the span of data that evaluation measured
    window_end: Mapped[datetime | None]
    # The first evaluation that found the condition clear (None while it holds); the evaluator
    # resolves the alert once it has stayed clear for the rule's auto_resolve_hours.
    cleared_since: Mapped[datetime | None]
    snoozed_until: Mapped[datetime | None]  # set by a snooze; the alert is silent until then
    resolved_at: Mapped[datetime | None]  # resolved by a person or after staying clear

    def measured(self) -> dict[str, Any]:
        """What the rule measured, for the audit log, notifications and lists: ``value`` and
        ``baseline`` as numbers in the rule's unit, money as minor units with its ``currency``."""
        if self.currency is not None:
            return {"value": self.value_minor, "baseline": self.baseline_minor, "currency": self.currency}
        return {"value": self.value, "baseline": self.baseline}


class AlertTransition(Base):
    __tablename__ = "alert_transitions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    at: Mapped[datetime] = created_column()
    actor: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_next", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # email, webhook
    target: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_column()
    next_attempt_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]


# Indexes the alert rules need on other areas' tables, declared here (the alerts area's file) and
# created by migration 0003: each rule reads only the last few weeks by time, so a time index
# keeps evaluation cheap at a million members.
from core.models.billing import Dispute, Refund  # noqa: E402
from core.models.subscriptions import Subscription  # noqa: E402

Index("ix_refunds_created_at", Refund.created_at)
Index("ix_disputes_created_at", Dispute.created_at)
Index("ix_subscriptions_canceled_at", Subscription.canceled_at)
Index("ix_alerts_rule_opened", Alert.rule, Alert.opened_at)
