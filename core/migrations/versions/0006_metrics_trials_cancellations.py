"""metrics rollups for trial conversion and cancellations by reason

Two daily rollups (core/models/rollups.py) so the Churn page stops reading subscriptions and
membership changes at request time. They start empty: the next rollup refresh rebuilds every
rollup (the build state is cleared, which makes the next refresh a full one).

Revision ID: 0006
Revises: 0005
"""
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import core.db.types  # noqa: F401

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _group_columns() -> list[sa.Column[Any]]:
    return [sa.Column("currency", sa.String(3), nullable=False), sa.Column("tier_id", sa.Integer()),
            sa.Column("interval", sa.String(8)), sa.Column("country", sa.String(2))]


def _counts(*names: str) -> list[sa.Column[Any]]:
    return [sa.Column(n, sa.BigInteger(), nullable=False, server_default="0") for n in names]


def upgrade() -> None:
    op.create_table(
        "metrics_daily_trials",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        *_group_columns(),
        *_counts("trials", "converted"),
    )
    op.create_index("ix_metrics_daily_trials_day", "metrics_daily_trials", ["day"])
    op.create_table(
        "metrics_daily_cancellations",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("day", sa.Date(), nullable=False),
        *_group_columns(),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("churn_kind", sa.String(16), nullable=False),
        *_counts("changes"),
    )
    op.create_index("ix_metrics_daily_cancellations_day", "metrics_daily_cancellations", ["day"])
    # Existing rollups lack these two tables' rows: the next refresh must rebuild everything.
    op.execute("DELETE FROM metrics_rollup_state")


def downgrade() -> None:
    op.drop_index("ix_metrics_daily_cancellations_day", table_name="metrics_daily_cancellations")
    op.drop_table("metrics_daily_cancellations")
    op.drop_index("ix_metrics_daily_trials_day", table_name="metrics_daily_trials")
    op.drop_table("metrics_daily_trials")
