"""audit log: a hash chain over the entries, and TRUNCATE refused on PostgreSQL; member names of
Stripe's full 256 characters

Each new entry stores its position (``seq``), the hash of the entry before it (``prev_hash``) and
the hash of its own content and that link (``entry_hash``); ``audit_chain_head`` holds the last
position and hash, and every append updates it, so appends are serialized and two writers cannot
fork the chain (unique ``seq`` and ``prev_hash`` make a fork impossible even so). Entries written
before this migration keep NULL there and are reported as "from before the chain" by
``python -m cli audit verify``.

The columns are added with plain ALTER TABLE (no table rebuild on SQLite), so the append-only
triggers of 0001 stay in place. PostgreSQL's UPDATE/DELETE trigger fires per row, which TRUNCATE
bypasses: a statement trigger now refuses TRUNCATE too.

Revision ID: 0013
Revises: 0012
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = "0" * 64


def upgrade() -> None:
    # A SQLite downgrade leaves the chain columns in place (see downgrade): add only what is missing,
    # and let the head continue the chain those columns still hold.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("audit_log")}
    for column in (sa.Column("seq", sa.BigInteger(), nullable=True),
                   sa.Column("prev_hash", sa.String(length=64), nullable=True),
                   sa.Column("entry_hash", sa.String(length=64), nullable=True)):
        if column.name not in present:
            op.add_column("audit_log", column)
    op.create_index("uq_audit_log_seq", "audit_log", ["seq"], unique=True)
    op.create_index("uq_audit_log_prev_hash", "audit_log", ["prev_hash"], unique=True)
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    last = op.get_bind().execute(sa.text(
        "SELECT seq, entry_hash FROM audit_log WHERE seq IS NOT NULL ORDER BY seq DESC LIMIT 1")).first()
    op.bulk_insert(head, [{"id": 1, "seq": last[0] if last else 0, "hash": last[1] if last else GENESIS}])
    if op.get_bind().dialect.name == "postgresql":
        # Stripe allows customer names of 256 characters; the mirror cut them to 200 in silence.
        # (SQLite does not enforce VARCHAR lengths, and altering would rebuild the table.)
        op.alter_column("members", "name", type_=sa.String(length=256), existing_type=sa.String(length=200),
                        existing_nullable=False)
        op.execute(
            "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_log_no_truncate ON audit_log")
        op.alter_column("members", "name", type_=sa.String(length=200), existing_type=sa.String(length=256),
                        existing_nullable=False)
    op.drop_table("audit_chain_head")
    op.drop_index("uq_audit_log_prev_hash", table_name="audit_log")
    op.drop_index("uq_audit_log_seq", table_name="audit_log")
    # SQLite drops columns by rebuilding the table, which would drop its append-only triggers:
    # the chain columns stay there (unused and harmless) on a downgrade.
    if op.get_bind().dialect.name != "sqlite":
        op.drop_column("audit_log", "entry_hash")
        op.drop_column("audit_log", "prev_hash")
        op.drop_column("audit_log", "seq")
