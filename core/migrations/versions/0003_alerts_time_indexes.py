"""alerts: time indexes the alert rules read by (refunds, disputes, cancellations) and alert history

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa  # noqa: F401
from alembic import op

import core.db.types  # noqa: F401

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_INDEXES = (
    ("ix_refunds_created_at", "refunds", ["created_at"]),
    ("ix_disputes_created_at", "disputes", ["created_at"]),
    ("ix_subscriptions_canceled_at", "subscriptions", ["canceled_at"]),
    ("ix_alerts_rule_opened", "alerts", ["rule", "opened_at"]),
)


def upgrade() -> None:
    for name, table, columns in _INDEXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for name, table, _columns in reversed(_INDEXES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(name)
