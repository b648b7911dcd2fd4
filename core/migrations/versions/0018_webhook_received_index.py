"""stripe_events: index on (source, received_at), for "last webhook received" in /healthz

The health check asks when the newest webhook delivery arrived; without this index that is a scan
of the whole event ledger on every probe.

Revision ID: 0018
Revises: 0016
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.create_index("ix_stripe_events_source_received", ["source", "received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.drop_index("ix_stripe_events_source_received")
