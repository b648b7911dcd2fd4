"""``stripe_store.apply_many`` (a page at a time) writes exactly what ``apply`` writes one object at
a time, on the demo world's Stripe objects, and leaves nothing behind when a page cannot be applied."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Base, Member, Payment
from core.stripe_store import MissingParent, apply, apply_many
from demo import iter_stripe_objects
from demo.world import World

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ORDER = ("product", "price", "customer", "payment_method", "subscription", "charge", "invoice", "refund", "dispute")
MIRROR = ("membership_changes", "refunds", "disputes", "payments", "invoice_lines", "invoice_payment_refs", "invoices",
          "subscription_items", "subscriptions", "payment_methods", "members", "prices", "tiers")
# Each table's own natural key: rows and foreign keys are compared by these, not by our integer ids.
NATURAL = {"tiers": "code", "prices": "stripe_price_id", "members": "stripe_customer_id",
           "payment_methods": "stripe_payment_method_id", "subscriptions": "stripe_subscription_id",
           "subscription_items": "stripe_item_id", "invoices": "stripe_invoice_id", "invoice_lines": "stripe_line_id",
           "payments": "stripe_charge_id", "refunds": "stripe_refund_id", "disputes": "stripe_dispute_id"}


def backfill_order(members: int, seed: int = 5) -> list[dict[str, Any]]:
    """The demo world's objects grouped by type, parents first, as a backfill lists them."""
    objects = list(iter_stripe_objects(World(seed=seed, members=members, now=NOW)))
    return sorted((o for o in objects if o.get("object") in ORDER), key=lambda o: ORDER.index(o["object"]))


def pages(objects: list[dict[str, Any]], size: int = 100) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for obj in objects:
        if not out or len(out[-1]) == size or out[-1][0]["object"] != obj["object"]:
            out.append([])
        out[-1].append(obj)
    return out


def mirrored(engine: Engine) -> dict[str, list[tuple]]:
    """Every mirrored table's rows with ids replaced by natural keys (ids may differ between passes)."""
    tables = Base.metadata.tables
    keys: dict[str, dict[int, Any]] = {}
    with engine.connect() as conn:
        for name, col in NATURAL.items():
            t = tables[name]
            keys[name] = dict(conn.execute(select(t.c.id, t.c[col])).all())
        out = {}
        for name in MIRROR:
            t = tables[name]
            fks = {fk.parent.name: fk.column.table.name for fk in t.foreign_keys}
            rows = []
            for r in conn.execute(select(t)).mappings():
                rows.append(tuple(sorted(
                    (k, keys[fks[k]].get(v) if k in fks and fks[k] in keys else v)
                    for k, v in r.items() if k != "id")))
            out[name] = sorted(rows, key=repr)
    return out


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for name in MIRROR:
            conn.execute(delete(Base.metadata.tables[name]))


def test_a_page_at_a_time_gives_the_same_rows_as_one_by_one(engine: Engine) -> None:
    objects = backfill_order(25)
    assert {o["object"] for o in objects} >= {"customer", "subscription", "charge", "invoice"}
    with session_scope(engine) as s:
        first = [apply(s, obj, state_at=NOW, source="demo") for obj in objects]
    one_by_one = mirrored(engine)
    assert len(one_by_one["payments"]) > 50
    with session_scope(engine) as s:  # the same objects again
        again = [apply(s, obj, state_at=NOW, source="demo") for obj in objects]
    one_by_one_again = mirrored(engine)

    clear(engine)
    with session_scope(engine) as s:
        assert [o for page in pages(objects) for o in apply_many(s, page, state_at=NOW, source="demo")] == first
    assert mirrored(engine) == one_by_one
    with session_scope(engine) as s:
        assert [o for page in pages(objects) for o in apply_many(s, page, state_at=NOW, source="demo")] == again
    assert mirrored(engine) == one_by_one_again
    assert {o for o, obj in zip(again, objects, strict=True) if obj["object"] != "customer"} == {"unchanged"}


def test_a_page_with_a_missing_parent_writes_nothing(engine: Engine) -> None:
    objects = backfill_order(6)
    parents = [o for o in objects if o["object"] in ("product", "price", "customer")]
    charges = [o for o in objects if o["object"] == "charge"]
    with session_scope(engine) as s:
        for page in pages(parents):
            apply_many(s, page, state_at=NOW)
    orphan = {**charges[0], "id": "ch_orphan", "customer": "cus_nobody"}
    with Session(engine) as s:
        with pytest.raises(MissingParent):
            apply_many(s, [*charges, orphan], state_at=NOW)
        s.commit()
    with Session(engine) as s:
        assert s.scalars(select(Payment)).all() == []
        assert {m.version for m in s.scalars(select(Member))} == {1}
