"""metrics rollups

Rollup tables the metrics read (core/models/rollups.py), an index for trial conversion, and the
default FX rates (USD value of one EUR, GBP, JPY per month, 2023-01 to 2027-12) so the reporting
currency works out of the box; admins edit them on the admin page (core.settings.business).

Revision ID: 0002
Revises: 0001
"""
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
DT = core.db.types.UTCDateTime()

# Approximate yearly averages (USD per unit); good enough for a default, edited by admins.
DEFAULT_RATES = {
    2023: {"EUR": "1.08", "GBP": "1.24", "JPY": "0.0071"},
    2024: {"EUR": "1.08", "GBP": "1.28", "JPY": "0.0066"},
    2025: {"EUR": "1.13", "GBP": "1.32", "JPY": "0.0067"},
    2026: {"EUR": "1.16", "GBP": "1.34", "JPY": "0.0065"},
    2027: {"EUR": "1.16", "GBP": "1.34", "JPY": "0.0065"},
}

GROUP = ("currency", "tier_id", "interval", "country")


def _group_columns() -> list[sa.Column[Any]]:
    return [sa.Column("currency", sa.String(3), nullable=False), sa.Column("tier_id", sa.Integer()),
            sa.Column("interval", sa.String(8)), sa.Column("country", sa.String(2))]


def _counts(*names: str) -> list[sa.Column[Any]]:
    return [sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in names]


def upgrade() -> None:
    op.create_table(
        "metrics_rollup_state",
        sa.Column("key", sa.String(32), primary_key=True),
        sa.Column("value", sa.JSON()),
        sa.Column("updated_at", DT, nullable=False),
    )
    op.create_table(
        "metrics_calendar",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("start_utc", DT, nullable=False),
        sa.Column("end_utc", DT, nullable=False),
    )
    op.create_table(
        "metrics_mrr_segments",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("subscription_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        *_group_columns(),
        sa.Column("valid_from", DT, nullable=False),
        sa.Column("valid_to", DT),
        *_counts("mrr_minor"),
        sa.Column("status", sa.String(24)),
        sa.Column("churn_kind", sa.String(16)),
    )
    op.create_index("ix_metrics_mrr_segments_valid_from", "metrics_mrr_segments", ["valid_from"])
    op.create_index("ix_metrics_mrr_segments_subscription", "metrics_mrr_segments", ["subscription_id"])
    op.create_index("ix_metrics_mrr_segments_member", "metrics_mrr_segments", ["member_id"])
    op.create_table(
        "metrics_mrr_periods",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("granularity", sa.String(8), nullable=False),
        sa.Column("period", sa.Date(), nullable=False),
        *_group_columns(),
        *_counts("mrr_start", "mrr_end", "new", "reactivation", "expansion", "contraction", "churn",
                 "churn_voluntary", "churn_involuntary", "members_start", "members_end", "members_new",
                 "members_reactivated", "members_churned", "members_churned_voluntary",
                 "members_churned_involuntary"),
    )
    op.create_index("ix_metrics_mrr_periods_gran_period", "metrics_mrr_periods", ["granularity", "period"])
    op.create_table(
        "metrics_cohorts",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("cohort", sa.Date(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        *_group_columns(),
        *_counts("members", "mrr", "size"),
    )
    op.create_index("ix_metrics_cohorts_cohort", "metrics_cohorts", ["cohort", "month"])
    op.create_table(
        "metrics_daily_cash",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        *_group_columns(),
        *_counts("gross", "payments", "refunds", "refund_count", "disputes_lost", "dispute_count", "fees",
                 "fee_payments"),
    )
    op.create_index("ix_metrics_daily_cash_day", "metrics_daily_cash", ["day"])
    op.create_table(
        "metrics_daily_payments",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        *_group_columns(),
        *_counts("attempts", "failed_attempts", "renewal_invoices", "renewal_first_failed", "failed_invoices",
                 "recovered_invoices", "recovered"),
    )
    op.create_index("ix_metrics_daily_payments_day", "metrics_daily_payments", ["day"])
    op.create_table(
        "metrics_daily_declines",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        *_group_columns(),
        sa.Column("decline_code", sa.String(64)),
        sa.Column("brand", sa.String(24)),
        sa.Column("card_country", sa.String(2)),
        *_counts("failures", "amount"),
    )
    op.create_index("ix_metrics_daily_declines_day", "metrics_daily_declines", ["day"])
    # Trial conversion scans trials by their end; recovery looks up attempts per invoice.
    op.create_index("ix_subscriptions_trial_end", "subscriptions", ["trial_end"])
    op.create_index("ix_payments_invoice_attempt", "payments", ["invoice_id", "attempt_number"])
    # An incremental refresh finds changes recorded late (effective before the refresh window).
    op.create_index("ix_membership_changes_recorded", "membership_changes", ["recorded_at"])

    fx = sa.table("fx_rates", sa.column("currency", sa.String), sa.column("month", sa.Date),
                  sa.column("usd_per_unit", sa.Numeric(20, 10)), sa.column("updated_at", DT),
                  sa.column("updated_by", sa.String))
    seeded = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [{"currency": cur, "month": date(year, month, 1), "usd_per_unit": Decimal(rate),
             "updated_at": seeded, "updated_by": "system"}
            for year, rates in DEFAULT_RATES.items() for cur, rate in rates.items() for month in range(1, 13)]
    op.bulk_insert(fx, rows)


def downgrade() -> None:
    op.execute("DELETE FROM fx_rates WHERE updated_by = 'system'")
    op.drop_index("ix_membership_changes_recorded", "membership_changes")
    op.drop_index("ix_payments_invoice_attempt", "payments")
    op.drop_index("ix_subscriptions_trial_end", "subscriptions")
    for table in ("metrics_daily_declines", "metrics_daily_payments", "metrics_daily_cash", "metrics_cohorts",
                  "metrics_mrr_periods", "metrics_mrr_segments", "metrics_calendar", "metrics_rollup_state"):
        op.drop_table(table)
