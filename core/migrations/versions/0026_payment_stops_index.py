"""a partial index of the membership changes that stopped payment, for the cancellation rollups

A refresh redoes the cancellation rows of the days a write can move: at a million members the
days of repriced subscriptions' cancellations, each day's ~2,800 changes found through the time
index and read from the table to keep the ~300 that took MRR to zero (250 ms of a one-day
refresh's 1.2 s, the changes of one day lying on as many pages). An index of those changes alone,
by time, finds only them.

Revision ID: 0026
Revises: 0025
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0026"
down_revision: str | None = "0025"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_membership_changes_payment_stops"
WHERE = "mrr_before_minor > 0 AND mrr_after_minor = 0"


def upgrade() -> None:
    op.create_index(NAME, "membership_changes", ["effective_at"], postgresql_where=sa.text(WHERE),
                    sqlite_where=sa.text(WHERE))


def downgrade() -> None:
    op.drop_index(NAME, table_name="membership_changes")
