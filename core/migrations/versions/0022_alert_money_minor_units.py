"""alerts keep money in whole minor units beside its currency

``alerts.value`` and ``alerts.baseline`` were floats for every rule, so a refund or a day's
collections were stored as floats of minor units. Money now goes in ``value_minor`` and
``baseline_minor`` (BIGINT) with ``currency``; the floats stay for ratios, counts and hours.
Existing money alerts (``details["unit"] == "money"``) are moved over, rounded to the nearest
minor unit, their currency taken from ``details["currency"]`` (USD when it is missing, the
currency the pages assumed), and their floats emptied. Downgrading moves them back.

The rows are converted in Python, not in SQL: JSON is read differently on SQLite and PostgreSQL,
and the alerts table holds a few thousand rows at most.

Revision ID: 0022
Revises: 0021
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ALERTS = sa.table("alerts", sa.column("id", sa.BigInteger), sa.column("value", sa.Float),
                  sa.column("baseline", sa.Float), sa.column("details", sa.JSON),
                  sa.column("value_minor", sa.BigInteger), sa.column("baseline_minor", sa.BigInteger),
                  sa.column("currency", sa.String))
NEW_COLUMNS = ("value_minor", "baseline_minor", "currency")


def _minor(number: float | None) -> int | None:
    return None if number is None else round(number)


def upgrade() -> None:
    op.add_column("alerts", sa.Column("value_minor", sa.BigInteger(), nullable=True))
    op.add_column("alerts", sa.Column("baseline_minor", sa.BigInteger(), nullable=True))
    op.add_column("alerts", sa.Column("currency", sa.String(3), nullable=True))
    bind = op.get_bind()
    rows = bind.execute(sa.select(ALERTS.c.id, ALERTS.c.value, ALERTS.c.baseline, ALERTS.c.details)).all()
    for alert_id, value, baseline, details in rows:
        details = details or {}
        if details.get("unit") != "money":
            continue
        currency = str(details.get("currency") or "USD").upper()
        bind.execute(sa.update(ALERTS).where(ALERTS.c.id == alert_id).values(
            value_minor=_minor(value), baseline_minor=_minor(baseline), currency=currency,
            value=None, baseline=None))


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(sa.update(ALERTS).where(ALERTS.c.currency.is_not(None)).values(
        value=ALERTS.c.value_minor, baseline=ALERTS.c.baseline_minor))
    # Plain DROP COLUMN (SQLite 3.35+ and PostgreSQL) instead of a batch rebuild of the table,
    # which would have to recreate the partial unique index of open alerts as well.
    for name in NEW_COLUMNS:
        op.execute(f"ALTER TABLE alerts DROP COLUMN {name}")
