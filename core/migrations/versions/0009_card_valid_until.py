"""subscriptions.card_valid_until: when the card a renewal charges stops working, kept by triggers

The failed-payments page asks which paying subscriptions renew after their card expires. Asked
at read time, that joins every paying subscription to its card (447,000 at a million members,
over a second per question). This column holds the first instant (UTC) after the card's expiry
month, so the question is a comparison inside one row, answered from a small partial index of
the subscriptions where it is true.

The card a renewal charges is the subscription's own default card, else its member's default
card (Stripe's order); a detached card charges nothing. Triggers keep the column right whoever
writes the rows (the sync, the demo loader, staff tools, a hand-run fix): on a subscription's
insert or a change of its card or member, and on any change to a card's expiry, default flag,
detachment or owner (every subscription of that member is worked out again).

Also drops ix_payment_methods_expiry, which only the read-time join used.

Revision ID: 0009
Revises: 0008
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import core.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The card a renewal charges, for the subscriptions row in scope.
_CARD = """COALESCE(
    (SELECT c.id FROM payment_methods c WHERE c.id = {card} AND c.detached_at IS NULL),
    (SELECT c.id FROM payment_methods c WHERE c.member_id = {member} AND c.is_default = {true}
       AND c.detached_at IS NULL ORDER BY c.id LIMIT 1))"""
_VALID_MONTH = "pm.exp_month BETWEEN 1 AND 12 AND pm.exp_year BETWEEN 1 AND 9998"
# SQLite keeps times as text in SQLAlchemy's spelling, which is how current_period_end compares.
_SQLITE_VALID_UNTIL = f"""(SELECT CASE WHEN {_VALID_MONTH} THEN printf('%04d-%02d-01 00:00:00.000000',
    pm.exp_year + pm.exp_month / 12, pm.exp_month % 12 + 1) END
  FROM payment_methods pm WHERE pm.id = {_CARD.format(card="subscriptions.default_payment_method_id",
                                                       member="subscriptions.member_id", true=1)})"""

_SQLITE_TRIGGERS = {
    "trg_subscriptions_card_insert": "AFTER INSERT ON subscriptions",
    "trg_subscriptions_card_update": "AFTER UPDATE OF default_payment_method_id, member_id ON subscriptions",
    "trg_payment_methods_card_insert": "AFTER INSERT ON payment_methods",
    "trg_payment_methods_card_update":
        "AFTER UPDATE OF exp_month, exp_year, is_default, detached_at, member_id ON payment_methods",
    "trg_payment_methods_card_delete": "AFTER DELETE ON payment_methods",
}
_SQLITE_SCOPE = {
    "trg_subscriptions_card_insert": "id = NEW.id",
    "trg_subscriptions_card_update": "id = NEW.id",
    "trg_payment_methods_card_insert": "member_id = NEW.member_id",
    "trg_payment_methods_card_update": "member_id IN (NEW.member_id, OLD.member_id)",
    "trg_payment_methods_card_delete": "member_id = OLD.member_id",
}

_POSTGRES = [
    f"""CREATE FUNCTION memberdesk_card_valid_until(sub_card bigint, sub_member bigint) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
SELECT CASE WHEN {_VALID_MONTH}
       THEN make_timestamptz(pm.exp_year + pm.exp_month / 12, pm.exp_month % 12 + 1, 1, 0, 0, 0, 'UTC') END
FROM payment_methods pm WHERE pm.id = {_CARD.format(card="sub_card", member="sub_member", true="true")}
$$""",
    """CREATE FUNCTION memberdesk_subscription_card() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.card_valid_until := memberdesk_card_valid_until(NEW.default_payment_method_id, NEW.member_id);
    RETURN NEW;
END $$""",
    # OLD is null on insert and NEW on delete, and IN ignores the null.
    """CREATE FUNCTION memberdesk_payment_method_card() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE subscriptions s
       SET card_valid_until = memberdesk_card_valid_until(s.default_payment_method_id, s.member_id)
     WHERE s.member_id IN (NEW.member_id, OLD.member_id)
       AND s.card_valid_until IS DISTINCT FROM memberdesk_card_valid_until(s.default_payment_method_id, s.member_id);
    RETURN NULL;
END $$""",
    """CREATE TRIGGER trg_subscriptions_card BEFORE INSERT OR UPDATE OF default_payment_method_id, member_id
ON subscriptions FOR EACH ROW EXECUTE FUNCTION memberdesk_subscription_card()""",
    """CREATE TRIGGER trg_payment_methods_card
AFTER INSERT OR DELETE OR UPDATE OF exp_month, exp_year, is_default, detached_at, member_id
ON payment_methods FOR EACH ROW EXECUTE FUNCTION memberdesk_payment_method_card()""",
]

_LAPSES_WHERE = "card_valid_until <= current_period_end"


def upgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("card_valid_until", core.db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.drop_index("ix_payment_methods_expiry")
    if op.get_context().dialect.name == "sqlite":
        for name, event in _SQLITE_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {event} BEGIN UPDATE subscriptions SET card_valid_until = "
                       f"{_SQLITE_VALID_UNTIL} WHERE {_SQLITE_SCOPE[name]}; END")
    else:
        for statement in _POSTGRES:
            op.execute(statement)
    # Every existing row once: naming the card column fires the subscription trigger.
    op.execute("UPDATE subscriptions SET default_payment_method_id = default_payment_method_id")
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index("ix_subscriptions_card_lapses",
                              ["status", "current_period_end", "id", "cancel_at_period_end", "mrr_minor", "currency"],
                              unique=False,
                              sqlite_where=sa.text(_LAPSES_WHERE), postgresql_where=sa.text(_LAPSES_WHERE))


def downgrade() -> None:
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_card_lapses")
    if op.get_context().dialect.name == "sqlite":
        for name in _SQLITE_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
    else:
        op.execute("DROP TRIGGER IF EXISTS trg_subscriptions_card ON subscriptions")
        op.execute("DROP TRIGGER IF EXISTS trg_payment_methods_card ON payment_methods")
        for fn in ("memberdesk_payment_method_card", "memberdesk_subscription_card"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
        op.execute("DROP FUNCTION IF EXISTS memberdesk_card_valid_until(bigint, bigint)")
    with op.batch_alter_table("payment_methods", schema=None) as batch_op:
        batch_op.create_index("ix_payment_methods_expiry", ["id", "exp_year", "exp_month"], unique=False)
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("card_valid_until")
