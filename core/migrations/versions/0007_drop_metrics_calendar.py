"""drop the metrics calendar table

The daily rollups now take each row's local day from its own time (``core.metrics.daily.Days``:
the time shifted by the business zone's offset then), instead of joining every payment to a
table of days by range, which made a full rebuild of a 20M-payment history take hours. Nothing
reads the table any more. The rollups themselves are unchanged.

Revision ID: 0007
Revises: 0006
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_table("metrics_calendar")


def downgrade() -> None:
    dt = core.db.types.UTCDateTime()
    op.create_table(
        "metrics_calendar",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("start_utc", dt, nullable=False),
        sa.Column("end_utc", dt, nullable=False),
    )
    # The table comes back empty: the next refresh must rebuild it with everything else.
    op.execute("DELETE FROM metrics_rollup_state")
