"""covering indexes for the failure breakdowns' days: one per key of the daily decline sums

The failed-payments page breaks a year of failures down by decline code, card brand and card
country. Whole months come from ``metrics_monthly_declines`` through one covering index per key
(0012); the month to date comes from ``metrics_daily_declines`` through its day index, which then
looks up every row of those days in the table. A refresh rewrites the present days' rows, so
they lie one to a page across the table: at a million members the first six days of a month were
2,856 rows on 2,493 pages, 9-10 ms of each read's 12-13. The same index per key as the monthly
table's, (day, currency, key, failures, amount), answers each read from the index alone; the day
index is dropped, as each of these starts with the day.

Revision ID: 0025
Revises: 0024
"""
from collections.abc import Sequence

from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "metrics_daily_declines"
KEYS = ("decline_code", "brand", "card_country")


def upgrade() -> None:
    for key in KEYS:
        op.create_index(f"ix_{TABLE}_{key}", TABLE, ["day", "currency", key, "failures", "amount"])
    op.drop_index(f"ix_{TABLE}_day", table_name=TABLE)


def downgrade() -> None:
    op.create_index(f"ix_{TABLE}_day", TABLE, ["day"])
    for key in KEYS:
        op.drop_index(f"ix_{TABLE}_{key}", table_name=TABLE)
