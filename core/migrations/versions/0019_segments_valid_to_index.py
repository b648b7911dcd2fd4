"""an index on the MRR segments' end: the members whose MRR moves between two instants

A page reads the movement rollups, built up to their last refresh, and moves them to the present
minute by sweeping the few members with a segment starting or ending since then. The segments'
start has an index; their end (a cancellation taking effect, a past-due grace running out) gets
one, so that lookup reads a handful of index entries instead of the whole table.

Revision ID: 0019
Revises: 0018
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_metrics_mrr_segments_valid_to", "metrics_mrr_segments", ["valid_to"])


def downgrade() -> None:
    op.drop_index("ix_metrics_mrr_segments_valid_to", table_name="metrics_mrr_segments")
