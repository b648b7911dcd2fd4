"""the Overview's standing counts: each member's standing and MRR, their sums, and change marks

The Overview counts members by tier and status (each under the subscription that describes them
now) and sums MRR per currency. Read from the subscriptions, that is a window over every one of
them: 6.1 s at a million members. These tables keep each member's standing and MRR as of the
last metrics refresh, and their sums; a reader adds the few members marked since.

The marks are written by triggers, whoever writes the rows (the sync, the demo loader, staff
tools, a hand-run fix): on a subscription's insert or delete, on a change of the columns the
standing reads (member, status, tier, currency, MRR, creation time), and on a member's insert or
delete. The refresh takes away the marks it applied; the tables are filled by the next refresh
(until then the Overview reads the subscriptions).

Revision ID: 0020
Revises: 0019
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
# The columns the standing and the MRR sums read: a change to any other leaves them as they were.
WATCHED = ("member_id", "status", "tier_id", "currency", "mrr_minor", "created_at")
MARKS = "metrics_standing_marks"

_SQLITE_TRIGGERS = {
    "trg_subscriptions_standing_insert": f"AFTER INSERT ON subscriptions BEGIN "
                                         f"INSERT INTO {MARKS} (member_id) VALUES (NEW.member_id); END",
    "trg_subscriptions_standing_update": (
        f"AFTER UPDATE OF {', '.join(WATCHED)} ON subscriptions WHEN "
        + " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in WATCHED)
        + f" BEGIN INSERT INTO {MARKS} (member_id) VALUES (OLD.member_id); "
          f"INSERT INTO {MARKS} (member_id) SELECT NEW.member_id WHERE NEW.member_id IS NOT OLD.member_id; END"),
    "trg_subscriptions_standing_delete": f"AFTER DELETE ON subscriptions BEGIN "
                                         f"INSERT INTO {MARKS} (member_id) VALUES (OLD.member_id); END",
    "trg_members_standing_insert": f"AFTER INSERT ON members BEGIN INSERT INTO {MARKS} (member_id) VALUES (NEW.id); END",
    "trg_members_standing_delete": f"AFTER DELETE ON members BEGIN INSERT INTO {MARKS} (member_id) VALUES (OLD.id); END",
}

_POSTGRES = [f"""CREATE FUNCTION metrics_standing_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'members' THEN
        INSERT INTO {MARKS} (member_id) VALUES (CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO {MARKS} (member_id) VALUES (OLD.member_id);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.member_id IS DISTINCT FROM OLD.member_id) THEN
        INSERT INTO {MARKS} (member_id) VALUES (NEW.member_id);
    END IF;
    RETURN NULL;
END $$""",
             "CREATE TRIGGER trg_subscriptions_standing AFTER INSERT OR DELETE ON subscriptions "
             "FOR EACH ROW EXECUTE FUNCTION metrics_standing_mark()",
             f"CREATE TRIGGER trg_subscriptions_standing_update AFTER UPDATE OF {', '.join(WATCHED)} ON subscriptions "
             "FOR EACH ROW WHEN (" + " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in WATCHED) + ") "
             "EXECUTE FUNCTION metrics_standing_mark()",
             "CREATE TRIGGER trg_members_standing AFTER INSERT OR DELETE ON members "
             "FOR EACH ROW EXECUTE FUNCTION metrics_standing_mark()"]


def upgrade() -> None:
    op.create_table(
        "metrics_member_standing",
        sa.Column("member_id", BIGID, primary_key=True, autoincrement=False),
        sa.Column("tier_id", sa.Integer()),
        sa.Column("status", sa.String(24)),
    )
    op.create_table(
        "metrics_member_mrr",
        sa.Column("member_id", BIGID, primary_key=True, autoincrement=False),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("mrr_minor", sa.BigInteger(), nullable=False),
        sa.Column("subscriptions", sa.Integer(), nullable=False),
    )
    op.create_table(
        "metrics_standing_counts",
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("tier_id", sa.Integer()),
        sa.Column("status", sa.String(24)),
        sa.Column("members", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "metrics_mrr_counts",
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("mrr_minor", sa.BigInteger(), nullable=False),
        sa.Column("subscriptions", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        MARKS,
        sa.Column("id", BIGID, primary_key=True, autoincrement=True),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
    )
    if op.get_bind().dialect.name == "sqlite":
        for name, body in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
    else:
        for statement in _POSTGRES:
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        for name, table in (("trg_subscriptions_standing", "subscriptions"),
                            ("trg_subscriptions_standing_update", "subscriptions"),
                            ("trg_members_standing", "members")):
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute("DROP FUNCTION IF EXISTS metrics_standing_mark()")
    for table in (MARKS, "metrics_mrr_counts", "metrics_standing_counts", "metrics_member_mrr",
                  "metrics_member_standing"):
        op.drop_table(table)
