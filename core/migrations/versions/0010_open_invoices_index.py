"""past-due worklist indexes: past-due subscriptions in order, and open invoices by subscription

The past-due worklist lists the subscriptions longest past due first, each with its latest open
invoice. Both came from wide indexes that read a row for every candidate: every past-due
subscription's row to sort them (thousands, for a page of a hundred), and every invoice a
subscription ever had (three years of monthly renewals) to find the open one. These two partial
indexes hold only the past-due subscriptions, in order, and only the open invoices.

Revision ID: 0010
Revises: 0009
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "status = 'open'"
_PAST_DUE = "status = 'past_due'"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_past_due", ["past_due_since", "id", "mrr_minor", "currency"], unique=False,
                              sqlite_where=sa.text(_PAST_DUE), postgresql_where=sa.text(_PAST_DUE))
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index("ix_invoices_open", ["subscription_id", "id"], unique=False,
                              sqlite_where=sa.text(_OPEN), postgresql_where=sa.text(_OPEN))


def downgrade() -> None:
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_open")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_past_due")
