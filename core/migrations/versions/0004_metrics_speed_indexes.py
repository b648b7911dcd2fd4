"""metrics speed: covering indexes for revenue at risk and the failed-payments worklists

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op

import core.db.types  # noqa: F401

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Declared in core/models/rollups.py (the metrics area's file).
_INDEXES = (
    ("ix_subscriptions_at_risk", "subscriptions",
     ["status", "cancel_at_period_end", "mrr_minor", "currency", "default_payment_method_id",
      "current_period_end", "past_due_since"]),
    ("ix_payment_methods_expiry", "payment_methods", ["id", "exp_year", "exp_month"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
