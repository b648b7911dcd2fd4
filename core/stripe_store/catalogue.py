"""Products become tiers, prices become prices."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.stripe_mapping import map_price, map_product
from core.stripe_store import cache
from core.stripe_store.parents import resolve_parents
from core.stripe_store.upsert import db_table, upsert


def apply_product(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    row = map_product(obj)
    t = db_table("tiers")
    if row["created_at"] is None:
        row.pop("created_at")
    owner = session.execute(select(t.c.id, t.c.stripe_product_id).where(t.c.code == row["code"])).first()
    if owner is not None and owner.stripe_product_id is None:
        # A tier created before Stripe knew it (e.g. free): attach the product to it.
        session.execute(update(t).where(t.c.id == owner.id).values(stripe_product_id=row["stripe_product_id"]))
        cache.forget_row(session, "tiers", "stripe_product_id", row["stripe_product_id"])
    elif owner is not None and owner.stripe_product_id != row["stripe_product_id"]:
        row["code"] = f"{row['code']}-{row['stripe_product_id'][-8:]}"[:32]
    return upsert(session, "tiers", "stripe_product_id", row, state_at)[0]


def apply_price(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    row = resolve_parents(session, "prices", map_price(obj))
    if row["created_at"] is None:
        row.pop("created_at")
    return upsert(session, "prices", "stripe_price_id", row, state_at)[0]
