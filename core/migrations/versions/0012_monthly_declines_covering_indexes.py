"""covering indexes for the failure breakdowns: one per key of the monthly decline sums

The failed-payments page breaks a year of failures down by decline code, by card brand and by card
country, three reads of the same months of ``metrics_monthly_declines`` grouped by one key each.
Through the month index each read looked up every row of the year in the table (25,000 at a
million members, about 20 ms each on SQLite). An index per key holding (month, currency, key,
failures, amount) answers each read from the index alone, in key order; the month index is
dropped, as each of these starts with the month.

Revision ID: 0012
Revises: 0011
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "metrics_monthly_declines"
KEYS = ("decline_code", "brand", "card_country")


def upgrade() -> None:
    for key in KEYS:
        op.create_index(f"ix_{TABLE}_{key}", TABLE, ["month", "currency", key, "failures", "amount"])
    op.drop_index(f"ix_{TABLE}_month", table_name=TABLE)


def downgrade() -> None:
    op.create_index(f"ix_{TABLE}_month", TABLE, ["month"])
    for key in KEYS:
        op.drop_index(f"ix_{TABLE}_{key}", table_name=TABLE)
