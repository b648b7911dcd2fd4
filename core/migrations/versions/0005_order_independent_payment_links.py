"""order-independent payment links: what each side says about the invoice/payment and card links

``invoice_payment_refs`` keeps the payment intents / charges an invoice names as paying it, and
``members.stripe_default_payment_method_id`` the customer's default card as Stripe names it, so
``payments.invoice_id``, ``is_renewal``, ``attempt_number`` and ``payment_methods.is_default`` can be
derived from stored state whatever order the objects arrive in (core/stripe_store/derived.py).

Existing rows: the refs are seeded from the links already made, the default card from the flags
already set; the derived columns are left as they are (the next change to a row recomputes them).

Revision ID: 0005
Revises: 0004
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIGID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "invoice_payment_refs",
        sa.Column("id", BIGID, nullable=False),
        sa.Column("invoice_id", BIGID, nullable=False),
        sa.Column("payment_ref", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["invoice_id"], ["invoices.id"], name=op.f("fk_invoice_payment_refs_invoice_id_invoices")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoice_payment_refs")),
    )
    with op.batch_alter_table("invoice_payment_refs", schema=None) as batch_op:
        batch_op.create_index("uq_invoice_payment_refs_invoice_ref", ["invoice_id", "payment_ref"], unique=True)
        batch_op.create_index(batch_op.f("ix_invoice_payment_refs_payment_ref"), ["payment_ref"], unique=False)
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stripe_default_payment_method_id", sa.String(length=64), nullable=True))

    refs = sa.table("invoice_payment_refs", sa.column("invoice_id"), sa.column("payment_ref"))
    payments = sa.table("payments", sa.column("invoice_id"), sa.column("stripe_payment_intent_id"),
                        sa.column("stripe_charge_id"))
    ref = sa.func.coalesce(payments.c.stripe_payment_intent_id, payments.c.stripe_charge_id)
    op.execute(refs.insert().from_select(
        ["invoice_id", "payment_ref"],
        sa.select(payments.c.invoice_id, ref).where(payments.c.invoice_id.is_not(None), ref.is_not(None)).distinct()))

    members = sa.table("members", sa.column("id"), sa.column("stripe_default_payment_method_id"))
    cards = sa.table("payment_methods", sa.column("id"), sa.column("member_id"), sa.column("stripe_payment_method_id"),
                     sa.column("is_default", sa.Boolean()), sa.column("detached_at"))
    flagged = (sa.select(cards.c.stripe_payment_method_id)
               .where(cards.c.member_id == members.c.id, cards.c.is_default == sa.true(), cards.c.detached_at.is_(None))
               .order_by(cards.c.id).limit(1).scalar_subquery())
    op.execute(members.update().values(stripe_default_payment_method_id=flagged))


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("stripe_default_payment_method_id")
    with op.batch_alter_table("invoice_payment_refs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_invoice_payment_refs_payment_ref"))
        batch_op.drop_index("uq_invoice_payment_refs_invoice_ref")
    op.drop_table("invoice_payment_refs")
