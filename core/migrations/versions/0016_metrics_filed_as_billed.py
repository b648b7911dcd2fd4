"""transfers between groups in the MRR movement rollups, gross billed, invoices.billing_country;
every rollup rebuilt

A member who moves between tiers, intervals or countries within a period is now a transfer out of
the group they leave and a transfer in to the group they enter (``metrics_mrr_periods``: MRR and
members of each side), so ``MRR end = MRR start + movements`` holds in every group. Payments are
now filed under the price on their invoice line and the member's country then (not their
subscription's current price), so the cash, payment and decline rollups change too:
``invoices.billing_country`` keeps the member's country when the invoice was first written (a
trigger copies it on insert, whoever writes the row; existing invoices get today's country).
The cash rollups gain ``billed`` and ``invoices`` (totals of invoices finalized that day). The existing
rows were written under the old rules: the rollups are marked stale, and the next refresh
rebuilds them (until then questions are answered from the raw rows).

Revision ID: 0016
Revises: 0012
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "metrics_mrr_periods"
COLUMNS = ("transfer_in", "transfer_out", "members_transferred_in", "members_transferred_out")


def _mark_stale() -> None:
    state = sa.table("metrics_rollup_state", sa.column("key", sa.String), sa.column("value", sa.JSON),
                     sa.column("updated_at", UTCDateTime()))
    bind = op.get_bind()
    bind.execute(sa.delete(state).where(state.c.key == "stale"))
    bind.execute(sa.insert(state).values(key="stale", value=True, updated_at=datetime.now(UTC)))


CASH_TABLES = ("metrics_daily_cash", "metrics_monthly_cash")
CASH_COLUMNS = ("billed", "invoices")
_COPY = "(SELECT country FROM members WHERE id = NEW.member_id)"
_SQLITE_TRIGGER = f"""CREATE TRIGGER trg_invoices_billing_country AFTER INSERT ON invoices
WHEN NEW.billing_country IS NULL
BEGIN UPDATE invoices SET billing_country = {_COPY} WHERE id = NEW.id; END"""
_POSTGRES = [
    f"""CREATE FUNCTION memberdesk_invoice_billing_country() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.billing_country IS NULL THEN
        NEW.billing_country := {_COPY};
    END IF;
    RETURN NEW;
END $$""",
    """CREATE TRIGGER trg_invoices_billing_country BEFORE INSERT ON invoices
FOR EACH ROW EXECUTE FUNCTION memberdesk_invoice_billing_country()""",
]


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    for table in CASH_TABLES:
        with op.batch_alter_table(table) as batch:
            for name in CASH_COLUMNS:
                batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    op.add_column("invoices", sa.Column("billing_country", sa.String(2), nullable=True))
    op.execute("UPDATE invoices SET billing_country = (SELECT country FROM members m WHERE m.id = invoices.member_id)")
    if op.get_context().dialect.name == "sqlite":
        op.execute(_SQLITE_TRIGGER)
    else:
        for statement in _POSTGRES:
            op.execute(statement)
    _mark_stale()


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS trg_invoices_billing_country")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_invoices_billing_country ON invoices")
        op.execute("DROP FUNCTION IF EXISTS memberdesk_invoice_billing_country()")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of invoices would break the foreign keys
    # that point at it.
    drops = [("invoices", "billing_country"), *((t, c) for t in CASH_TABLES for c in CASH_COLUMNS),
             *((TABLE, c) for c in COLUMNS)]
    for table, column in drops:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    _mark_stale()
