"""Metric rollups: derived tables the metrics read instead of the raw rows.

All of them are rebuilt from ``membership_changes``, ``payments``, ``invoices``, ``refunds`` and
``disputes`` by ``core.metrics.rollups.refresh``; deleting every row loses nothing. Days, weeks
and months are local to the business time zone recorded in ``metrics_rollup_state``; a query in
another zone is answered from the raw rows instead.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import JSON, BigInteger, Date, Index, Integer, String, func, text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from core.models.base import Base, BigIntPK, created_column


class _Group:
    """The dimensions every rollup row is grouped by (the metrics' filters)."""

    currency: Mapped[str] = mapped_column(String(3))
    tier_id: Mapped[int | None] = mapped_column(Integer)
    interval: Mapped[str | None] = mapped_column(String(8))
    country: Mapped[str | None] = mapped_column(String(2))


class _Period(_Group):
    """A rollup by local period: the table is ``metrics_`` and the class name in snake case
    (``DailyCash``: ``metrics_daily_cash``), indexed by its period column."""

    period_column: ClassVar[str]
    if TYPE_CHECKING:
        __name__: str  # the class's name (the directive below is called on the class)

    @declared_attr.directive
    def __tablename__(cls) -> str:  # noqa: N805 (SQLAlchemy passes the class)
        return "metrics_" + re.sub(r"(?<!^)(?=[A-Z])", "_", cls.__name__).lower()

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:  # noqa: N805
        return (Index(f"ix_{cls.__tablename__}_{cls.period_column}", cls.period_column),)


class _Daily(_Period):
    """A daily rollup: one row per local day and group, indexed by day."""

    period_column = "day"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    day: Mapped[date] = mapped_column(Date)


class RollupState(Base):
    __tablename__ = "metrics_rollup_state"

    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON)
    updated_at: Mapped[datetime] = created_column()


class MrrSegment(_Group, Base):
    """A stretch of constant MRR of one subscription, with past-due grace days applied:
    ``[valid_from, valid_to)`` (``valid_to`` None = still in force)."""

    __tablename__ = "metrics_mrr_segments"
    __table_args__ = (
        Index("ix_metrics_mrr_segments_valid_from", "valid_from"),
        Index("ix_metrics_mrr_segments_valid_to", "valid_to"),
        Index("ix_metrics_mrr_segments_subscription", "subscription_id"),
        Index("ix_metrics_mrr_segments_member", "member_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    subscription_id: Mapped[int] = mapped_column()
    member_id: Mapped[int] = mapped_column()
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    mrr_minor: Mapped[int] = mapped_column(default=0)
    status: Mapped[str | None] = mapped_column(String(24))
    churn_kind: Mapped[str | None] = mapped_column(String(16))


class MrrPeriod(_Group, Base):
    """MRR movements per month or week (``granularity``) and group, per member comparison."""

    __tablename__ = "metrics_mrr_periods"
    __table_args__ = (Index("ix_metrics_mrr_periods_gran_period", "granularity", "period"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    granularity: Mapped[str] = mapped_column(String(8))
    period: Mapped[date] = mapped_column(Date)
    mrr_start: Mapped[int] = mapped_column(default=0)
    mrr_end: Mapped[int] = mapped_column(default=0)
    new: Mapped[int] = mapped_column(default=0)
    reactivation: Mapped[int] = mapped_column(default=0)
    expansion: Mapped[int] = mapped_column(default=0)
    contraction: Mapped[int] = mapped_column(default=0)
    churn: Mapped[int] = mapped_column(default=0)
    churn_voluntary: Mapped[int] = mapped_column(default=0)
    churn_involuntary: Mapped[int] = mapped_column(default=0)
    members_start: Mapped[int] = mapped_column(default=0)
    members_end: Mapped[int] = mapped_column(default=0)
    members_new: Mapped[int] = mapped_column(default=0)
    members_reactivated: Mapped[int] = mapped_column(default=0)
    members_churned: Mapped[int] = mapped_column(default=0)
    members_churned_voluntary: Mapped[int] = mapped_column(default=0)
    members_churned_involuntary: Mapped[int] = mapped_column(default=0)
    # A member moving from one group (tier, interval, country) to another within the period.
    transfer_in: Mapped[int] = mapped_column(default=0)
    transfer_out: Mapped[int] = mapped_column(default=0)
    members_transferred_in: Mapped[int] = mapped_column(default=0)
    members_transferred_out: Mapped[int] = mapped_column(default=0)


class CohortCell(_Group, Base):
    """Members of a cohort (month of first MRR > 0) still paying at the end of ``month``."""

    __tablename__ = "metrics_cohorts"
    __table_args__ = (Index("ix_metrics_cohorts_cohort", "cohort", "month"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    cohort: Mapped[date] = mapped_column(Date)
    month: Mapped[date] = mapped_column(Date)
    members: Mapped[int] = mapped_column(default=0)
    mrr: Mapped[int] = mapped_column(default=0)
    size: Mapped[int] = mapped_column(default=0)  # members whose first paid month is ``cohort`` (rows with month = cohort)


class _Monthly(_Period):
    """The same sums per local month (``month`` = its first day): the readers take whole months
    from here and only the days of a partial month from the daily table."""

    period_column = "month"
    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    month: Mapped[date] = mapped_column(Date)


_T = TypeVar("_T")


def _sums(*names: str) -> Callable[[type[_T]], type[_T]]:
    """Adds one integer sum column per name to a mixin, NOT NULL and 0 until counted (the
    readers and the rollup queries name the columns as strings, never as attributes)."""

    def add(cls: type[_T]) -> type[_T]:
        for name in names:
            setattr(cls, name, mapped_column(BigInteger, default=0, nullable=False))
        return cls

    return add


# Gross billed (``billed``, ``invoices``): totals of invoices finalized that day (void invoices left out).
@_sums("gross", "payments", "refunds", "refund_count", "disputes_lost", "dispute_count", "fees", "fee_payments",
       "billed", "invoices")
class _CashSums: ...


@_sums("attempts", "failed_attempts", "renewal_invoices", "renewal_first_failed", "failed_invoices",
       "recovered_invoices", "recovered")
class _PaymentSums: ...


class _DeclineSums:
    decline_code: Mapped[str | None] = mapped_column(String(64))
    brand: Mapped[str | None] = mapped_column(String(24))
    card_country: Mapped[str | None] = mapped_column(String(2))
    failures: Mapped[int] = mapped_column(default=0)
    amount: Mapped[int] = mapped_column(default=0)


# One daily and one monthly table per kind of sums.
class DailyCash(_Daily, _CashSums, Base): ...
class DailyPayments(_Daily, _PaymentSums, Base): ...
class MonthlyCash(_Monthly, _CashSums, Base): ...
class MonthlyPayments(_Monthly, _PaymentSums, Base): ...


class _DeclinesByKey(_Period, _DeclineSums):
    """Read by one key at a time (decline code, brand or card country), a year of months and the
    month's days at once: one covering index per key answers each breakdown from the index alone
    (migrations 0012 for the months, 0025 for the days), in place of the period's own index."""

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Index, ...]:  # noqa: N805 (SQLAlchemy passes the class)
        return tuple(Index(f"ix_{cls.__tablename__}_{key}", cls.period_column, "currency", key, "failures", "amount")
                     for key in ("decline_code", "brand", "card_country"))


class DailyDeclines(_Daily, _DeclinesByKey, Base): ...
class MonthlyDeclines(_Monthly, _DeclinesByKey, Base): ...


@_sums("trials", "converted")
class _TrialSums:
    """Trials by the local day they ended (``subscriptions.trial_end``) and whether the first
    non-zero invoice after the trial started was paid."""


class _CancellationSums:
    """Membership changes that took MRR to zero, by local day effective, reason and churn kind."""

    reason: Mapped[str] = mapped_column(String(64))
    churn_kind: Mapped[str] = mapped_column(String(16))
    changes: Mapped[int] = mapped_column(default=0)


class DailyTrials(_Daily, _TrialSums, Base): ...
class DailyCancellations(_Daily, _CancellationSums, Base): ...
class MonthlyTrials(_Monthly, _TrialSums, Base): ...
class MonthlyCancellations(_Monthly, _CancellationSums, Base): ...



# The Overview's standing counts (``core.metrics.standing``): who each member is now, kept by the
# refresh, and the changes written since, marked by database triggers whoever writes the rows.
class MemberStanding(Base):
    """Each member's tier and status under the subscription that describes them now (None, None
    for a member without one), as of the last refresh."""

    __tablename__ = "metrics_member_standing"

    member_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    tier_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(24))


class MemberMrr(Base):
    """Each member's MRR-counting subscriptions per currency (MRR above zero), as of the last refresh."""

    __tablename__ = "metrics_member_mrr"

    member_id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    mrr_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    subscriptions: Mapped[int] = mapped_column(default=0)


class StandingCount(Base):
    """Members per (tier, status): the sums of ``metrics_member_standing``, moved by each refresh."""

    __tablename__ = "metrics_standing_counts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    tier_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str | None] = mapped_column(String(24))
    members: Mapped[int] = mapped_column(BigInteger, default=0)


class MrrCount(Base):
    """MRR and paying subscriptions per currency: the sums of ``metrics_member_mrr``."""

    __tablename__ = "metrics_mrr_counts"

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    mrr_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    subscriptions: Mapped[int] = mapped_column(BigInteger, default=0)


class StandingMark(Base):
    """A member whose standing may have moved since the last refresh: written by triggers on
    ``subscriptions`` and ``members`` (migration 0020), taken away by the refresh that applies it."""

    __tablename__ = "metrics_standing_marks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger)


class FlowMark(Base):
    """A payment, refund, dispute or invoice written since the last refresh, as it was (``old``)
    or as it is (``new``), with the instant it is counted at: written by triggers (migration
    0023), taken away by the refresh that applies it (``core.metrics.flow_delta``)."""

    __tablename__ = "metrics_flow_marks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source: Mapped[str] = mapped_column(String(16))
    row_id: Mapped[int] = mapped_column(BigInteger)
    side: Mapped[str] = mapped_column(String(3))
    at: Mapped[datetime | None]
    invoice_id: Mapped[int | None] = mapped_column(BigInteger)

# Indexes the metrics read on other areas' tables, declared here (the metrics area's file): revenue
# at risk and the past-due worklist read the subscriptions by status and cancel flag from the index
# alone (covering, migration 0004); cards expiring before their renewal are the few subscriptions
# of a partial index (migration 0009, which also keeps ``card_valid_until``); the past-due
# worklist reads the past-due subscriptions in order and each one's latest open invoice from two
# partial indexes (migration 0010).
from core.models.billing import Invoice  # noqa: E402
from core.models.subscriptions import Subscription  # noqa: E402

Index("ix_subscriptions_at_risk", Subscription.status, Subscription.cancel_at_period_end, Subscription.mrr_minor,
      Subscription.currency, Subscription.default_payment_method_id, Subscription.current_period_end,
      Subscription.past_due_since)
CARD_LAPSES = "card_valid_until <= current_period_end"
# Covering: the worklist's order and the counts and sums read nothing else of the row.
Index("ix_subscriptions_card_lapses", Subscription.status, Subscription.current_period_end, Subscription.id,
      Subscription.cancel_at_period_end, Subscription.mrr_minor, Subscription.currency,
      sqlite_where=text(CARD_LAPSES), postgresql_where=text(CARD_LAPSES))
Index("ix_subscriptions_past_due", Subscription.past_due_since, Subscription.id, Subscription.mrr_minor,
      Subscription.currency,
      sqlite_where=text("status = 'past_due'"), postgresql_where=text("status = 'past_due'"))
# Billed money is filed by when an invoice was finalized (core.metrics.daily.BILLED_AT): a page
# reads the minutes since the last rollup refresh through this index, not every invoice.
Index("ix_invoices_billed_at", func.coalesce(Invoice.finalized_at, Invoice.created_at))
Index("ix_invoices_open", Invoice.subscription_id, Invoice.id,
      sqlite_where=text("status = 'open'"), postgresql_where=text("status = 'open'"))
