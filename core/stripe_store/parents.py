"""Parents first: a row's ``stripe_*_id`` references become our foreign keys, or ``MissingParent``.

A parent that is not stored yet raises before anything is written, so the caller (the sync)
can fetch it from Stripe and apply the object again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.stripe_mapping import REFS
from core.stripe_store import cache
from core.stripe_store.upsert import db_table

# Stripe object type -> (our table, the column holding its Stripe id).
OBJECT_TABLES: dict[str, tuple[str, str]] = {
    "product": ("tiers", "stripe_product_id"),
    "price": ("prices", "stripe_price_id"),
    "customer": ("members", "stripe_customer_id"),
    "payment_method": ("payment_methods", "stripe_payment_method_id"),
    "subscription": ("subscriptions", "stripe_subscription_id"),
    "invoice": ("invoices", "stripe_invoice_id"),
    "charge": ("payments", "stripe_charge_id"),
    "refund": ("refunds", "stripe_refund_id"),
    "dispute": ("disputes", "stripe_dispute_id"),
}
_TABLE_OBJECT = {table: obj for obj, (table, _) in OBJECT_TABLES.items()}


class MissingParent(LookupError):
    """A parent object is not in our database yet; fetch ``stripe_id`` and apply again."""

    def __init__(self, object_type: str, stripe_id: str):
        super().__init__(f"The Stripe {object_type} {stripe_id} is not in the database yet.")
        self.object_type = object_type
        self.stripe_id = stripe_id


def resolve_parents(session: Session, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Replace ``stripe_*_id`` reference keys by our integer foreign keys."""
    out = dict(row)
    for ref, (fk, parent, parent_key) in REFS.get(table, {}).items():
        sid = out.pop(ref, None)
        if sid is None:
            out.setdefault(fk, None)
            continue
        found = cache.cached_id(session, parent, parent_key, sid)
        if found is None:
            pt = db_table(parent)
            found = session.execute(select(pt.c.id).where(pt.c[parent_key] == sid)).scalar()
            if found is None:
                raise MissingParent(_TABLE_OBJECT[parent], sid)
            cache.remember_id(session, parent, parent_key, sid, found)
        out[fk] = found
    return out
