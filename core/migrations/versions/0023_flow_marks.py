"""marks of the money and payment rows written since the last metrics refresh

The daily money and payment rollups (cash, attempts, recovery, declines) were moved on by
redoing every day from the refresh's ``since``: at a million members a refresh late in the day
read the whole day's payments, invoices, refunds and disputes again (seconds). Triggers now mark
each row written, whoever writes it (the sync, the demo loader, staff tools, a hand-run fix), so
the refresh adds what is new and redoes only the days whose counted rows changed.

A mark names its table and row, the side of the write (``old``: the row as it was, on an
update or a delete; ``new``: the row as it is, on an insert or an update), the instant that row
is counted at (a payment's or refund's creation, a dispute's closing, an invoice's finalization
or else creation) and, for payments, its invoice (recovery is reckoned per invoice). An update
marks only when something the rollups read changes: for a status, whether it counts (an
invoice going from open to paid moves nothing).

Revision ID: 0023
Revises: 0022
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MARKS = "metrics_flow_marks"
# PostgreSQL: a transaction that sets this (``SET LOCAL``) writes no marks. A full Stripe backfill
# does: its sync ends with a full rollup build, and thousands of marks would only make a refresh
# meanwhile redo every day from the earliest of them.
BULK_SETTING = "memberdesk.bulk_write"

# Per table: the instant a row is counted at (``{r}`` is OLD or NEW), its invoice for recovery,
# and the expressions whose change moves a rollup (plain columns, or whether a status counts).
SOURCES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "payments": ("{r}.created_at", "{r}.invoice_id", (
        "member_id", "invoice_id", "status", "amount", "fee", "currency", "created_at", "is_renewal",
        "attempt_number", "decline_code", "failure_code", "card_brand", "card_country")),
    "refunds": ("{r}.created_at", "NULL", (
        "payment_id", "amount", "currency", "created_at", "{r}.status IN ('failed', 'canceled')")),
    "disputes": ("{r}.closed_at", "NULL", ("payment_id", "amount", "currency", "closed_at", "{r}.status = 'lost'")),
    "invoices": ("COALESCE({r}.finalized_at, {r}.created_at)", "NULL", (
        "member_id", "subscription_id", "total", "currency", "finalized_at", "created_at",
        "{r}.status IN ('draft', 'void')")),
}


def _expr(watched: str, row: str) -> str:
    return watched.format(r=row) if "{r}" in watched else f"{row}.{watched}"


def _changed(watched: tuple[str, ...], distinct: str) -> str:
    return " OR ".join(f"({_expr(w, 'OLD')}) {distinct} ({_expr(w, 'NEW')})" for w in watched)


def _mark(table: str, side: str, row: str) -> str:
    at, invoice, _ = SOURCES[table]
    return (f"INSERT INTO {MARKS} (source, row_id, side, at, invoice_id) VALUES "
            f"('{table}', {row}.id, '{side}', {at.format(r=row)}, {invoice.format(r=row)});")


def _sqlite_triggers() -> dict[str, str]:
    out = {}
    for table, (_, _, watched) in SOURCES.items():
        out[f"trg_{table}_flow_insert"] = f"AFTER INSERT ON {table} BEGIN {_mark(table, 'new', 'NEW')} END"
        out[f"trg_{table}_flow_update"] = (f"AFTER UPDATE ON {table} WHEN {_changed(watched, 'IS NOT')} BEGIN "
                                           f"{_mark(table, 'old', 'OLD')} {_mark(table, 'new', 'NEW')} END")
        out[f"trg_{table}_flow_delete"] = f"AFTER DELETE ON {table} BEGIN {_mark(table, 'old', 'OLD')} END"
    return out


def _postgres() -> list[str]:
    out = []
    for table, (_, _, watched) in SOURCES.items():
        out.append(f"""CREATE FUNCTION metrics_flow_mark_{table}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('{BULK_SETTING}', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        {_mark(table, 'old', 'OLD')}
    END IF;
    IF TG_OP <> 'DELETE' THEN
        {_mark(table, 'new', 'NEW')}
    END IF;
    RETURN NULL;
END $$""")
        out.append(f"CREATE TRIGGER trg_{table}_flow AFTER INSERT OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION metrics_flow_mark_{table}()")
        out.append(f"CREATE TRIGGER trg_{table}_flow_update AFTER UPDATE ON {table} FOR EACH ROW "
                   f"WHEN ({_changed(watched, 'IS DISTINCT FROM')}) EXECUTE FUNCTION metrics_flow_mark_{table}()")
    return out


def upgrade() -> None:
    op.create_table(
        MARKS,
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.Column("side", sa.String(3), nullable=False),
        sa.Column("at", core.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("invoice_id", sa.BigInteger(), nullable=True),
    )
    if op.get_bind().dialect.name == "sqlite":
        for name, body in _sqlite_triggers().items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    else:
        for statement in _postgres():
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _sqlite_triggers():
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for table in SOURCES:
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_flow ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS trg_{table}_flow_update ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS metrics_flow_mark_{table}()")
    op.drop_table(MARKS)
