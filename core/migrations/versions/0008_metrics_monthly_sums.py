"""monthly sums of the daily cash, payment and decline rollups

A year of a dashboard page read 365 days x every group from the daily rollups and summed them
by month at request time; at a million members that is hundreds of thousands of rows per page.
These tables hold the same sums per local month (core/models/rollups.py), so whole months are
read as one row per group and only the days of a partial month come from the daily tables. They
start empty: the rollup state is cleared, so the next refresh rebuilds every rollup.

Revision ID: 0008
Revises: 0007
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types  # noqa: F401

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = {
    "metrics_monthly_cash": ("gross", "payments", "refunds", "refund_count", "disputes_lost", "dispute_count",
                             "fees", "fee_payments"),
    "metrics_monthly_payments": ("attempts", "failed_attempts", "renewal_invoices", "renewal_first_failed",
                                 "failed_invoices", "recovered_invoices", "recovered"),
    "metrics_monthly_declines": ("failures", "amount"),
}


def upgrade() -> None:
    for table, counts in TABLES.items():
        keys = ([sa.Column("decline_code", sa.String(64)), sa.Column("brand", sa.String(24)),
                 sa.Column("card_country", sa.String(2))] if table == "metrics_monthly_declines" else [])
        op.create_table(
            table,
            sa.Column("id", BIGID, primary_key=True, autoincrement=True),
            sa.Column("month", sa.Date(), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False), sa.Column("tier_id", sa.Integer()),
            sa.Column("interval", sa.String(8)), sa.Column("country", sa.String(2)),
            *keys,
            *[sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in counts],
        )
        op.create_index(f"ix_{table}_month", table, ["month"])
    # Built rollups lack the monthly rows: the next refresh must rebuild everything.
    op.execute("DELETE FROM metrics_rollup_state")


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_month", table_name=table)
        op.drop_table(table)
