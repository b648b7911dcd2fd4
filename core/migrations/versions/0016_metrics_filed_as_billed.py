"""transfers between groups in the MRR movement rollups, gross billed, invoices.billing_country;
every rollup rebuilt

A member who moves between tiers, intervals or countries within a period is now a transfer out of
the group they leave and a transfer in to the group they enter (``metrics_mrr_periods``: MRR and
members of each side), so ``MRR end = MRR start + movements`` holds in every group. Payments are
now filed under the price on their invoice line and the member's country then (not their
subscription's current price), so the cash, payment and decline rollups change too:
``invoices.billing_country`` and ``membership_changes.country`` keep the member's country when
the row was first written (a trigger copies it on insert, whoever writes the row; existing rows
get today's country), so neither payments nor MRR move when a member moves.
The cash rollups gain ``billed`` and ``invoices`` (totals of invoices finalized that day). The existing
rows were written under the old rules: the rollups are marked stale, and the next refresh
rebuilds them (until then questions are answered from the raw rows).

Revision ID: 0016
Revises: 0015
"""
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from core.db.types import UTCDateTime

revision: str = "0016"
down_revision: str | None = "0015"
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
# Table -> the column that keeps the member's country as it was when the row was written.
COUNTRY_COLUMNS = {"invoices": "billing_country", "membership_changes": "country"}
_COPY = "(SELECT country FROM members WHERE id = NEW.member_id)"


def _sqlite_trigger(table: str, column: str) -> str:
    return (f"CREATE TRIGGER trg_{table}_{column} AFTER INSERT ON {table} WHEN NEW.{column} IS NULL "
            f"BEGIN UPDATE {table} SET {column} = {_COPY} WHERE id = NEW.id; END")


def _postgres(table: str, column: str) -> list[str]:
    return [f"""CREATE FUNCTION memberdesk_{table}_{column}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.{column} IS NULL THEN
        NEW.{column} := {_COPY};
    END IF;
    RETURN NEW;
END $$""", f"""CREATE TRIGGER trg_{table}_{column} BEFORE INSERT ON {table}
FOR EACH ROW EXECUTE FUNCTION memberdesk_{table}_{column}()"""]


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        for name in COLUMNS:
            batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    for table in CASH_TABLES:
        with op.batch_alter_table(table) as batch:
            for name in CASH_COLUMNS:
                batch.add_column(sa.Column(name, sa.BigInteger(), nullable=False, server_default="0"))
    sqlite = op.get_context().dialect.name == "sqlite"
    for table, column in COUNTRY_COLUMNS.items():
        op.add_column(table, sa.Column(column, sa.String(2), nullable=True))
        # Rows written before: the country known today (what the metrics used until now).
        op.execute(f"UPDATE {table} SET {column} = (SELECT country FROM members m WHERE m.id = {table}.member_id)")
        for statement in [_sqlite_trigger(table, column)] if sqlite else _postgres(table, column):
            op.execute(statement)
    _mark_stale()


def downgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    for table, column in COUNTRY_COLUMNS.items():
        op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_{column}" + ("" if sqlite else f" ON {table}"))
        if not sqlite:
            op.execute(f"DROP FUNCTION IF EXISTS memberdesk_{table}_{column}()")
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy of invoices would break the foreign keys
    # that point at it.
    drops = [*COUNTRY_COLUMNS.items(), *((t, c) for t in CASH_TABLES for c in CASH_COLUMNS),
             *((TABLE, c) for c in COLUMNS)]
    for table, column in drops:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    _mark_stale()
