"""an index on when an invoice was billed: the tail of the billed money reads minutes, not history

Billed money is filed by ``COALESCE(finalized_at, created_at)`` (``core.metrics.daily.BILLED_AT``).
A page reads the rollups up to their last refresh and the rows since then; without an index on
that expression the few minutes since were found by reading every invoice (18.5M at a million
members, on every page that shows cash or billed money).

Revision ID: 0021
Revises: 0020
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE INDEX ix_invoices_billed_at ON invoices (COALESCE(finalized_at, created_at))")


def downgrade() -> None:
    op.drop_index("ix_invoices_billed_at", table_name="invoices")
