"""monthly sums of the daily trial and cancellation rollups

The Churn page summed a year of daily cancellation and trial rows at request time (at a million
members, 34,000 cancellation rows for one chart). As migration 0008 did for cash, payments and
declines, these tables hold the same sums per local month (core/models/rollups.py): whole months
are read as one row per group and only the days of a partial month come from the daily tables.

They are filled here from the daily rows, so built rollups stay usable and no rebuild is needed.

Revision ID: 0011
Revises: 0010
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types  # noqa: F401

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# monthly table -> (daily table, key columns, measure columns)
TABLES = {
    "metrics_monthly_trials": ("metrics_daily_trials", (), ("trials", "converted")),
    "metrics_monthly_cancellations": ("metrics_daily_cancellations", ("reason", "churn_kind"), ("changes",)),
}
_KEY_TYPES = {"reason": sa.String(64), "churn_kind": sa.String(16)}


def upgrade() -> None:
    month = ("CAST(date_trunc('month', day) AS DATE)" if op.get_bind().dialect.name == "postgresql"
             else "substr(day, 1, 8) || '01'")
    for table, (daily, keys, measures) in TABLES.items():
        op.create_table(
            table,
            sa.Column("id", BIGID, primary_key=True, autoincrement=True),
            sa.Column("month", sa.Date(), nullable=False),
            sa.Column("currency", sa.String(3), nullable=False), sa.Column("tier_id", sa.Integer()),
            sa.Column("interval", sa.String(8)), sa.Column("country", sa.String(2)),
            *[sa.Column(k, _KEY_TYPES[k], nullable=False) for k in keys],
            *[sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in measures],
        )
        op.create_index(f"ix_{table}_month", table, ["month"])
        group = ", ".join(("currency", "tier_id", "interval", "country", *keys))
        op.execute(f"INSERT INTO {table} (month, {group}, {', '.join(measures)}) "
                   f"SELECT {month}, {group}, {', '.join(f'SUM({m})' for m in measures)} FROM {daily} "
                   f"GROUP BY 1, {group}")


def downgrade() -> None:
    for table in TABLES:
        op.drop_index(f"ix_{table}_month", table_name=table)
        op.drop_table(table)
