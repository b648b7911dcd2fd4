"""``stripe_store.apply_many`` (a page at a time) writes exactly what ``apply`` writes one object at
a time, on the demo world's Stripe objects, and leaves nothing behind when a page cannot be applied."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, delete, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Base, Member, Payment
from core.stripe_store import MissingParent, apply, apply_many
from tests.support.db import MIRROR, mirrored_rows
from tests.support.payloads import BACKFILL_NOW, backfill_order, pages

NOW = BACKFILL_NOW


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for name in MIRROR:
            conn.execute(delete(Base.metadata.tables[name]))


def test_a_page_at_a_time_gives_the_same_rows_as_one_by_one(engine: Engine) -> None:
    objects = backfill_order(25)
    assert {o["object"] for o in objects} >= {"customer", "subscription", "charge", "invoice"}
    with session_scope(engine) as s:
        first = [apply(s, obj, state_at=NOW, source="demo") for obj in objects]
    one_by_one = mirrored_rows(engine)
    assert len(one_by_one["payments"]) > 50
    with session_scope(engine) as s:  # the same objects again
        again = [apply(s, obj, state_at=NOW, source="demo") for obj in objects]
    one_by_one_again = mirrored_rows(engine)

    clear(engine)
    with session_scope(engine) as s:
        assert [o for page in pages(objects) for o in apply_many(s, page, state_at=NOW, source="demo")] == first
    assert mirrored_rows(engine) == one_by_one
    with session_scope(engine) as s:
        assert [o for page in pages(objects) for o in apply_many(s, page, state_at=NOW, source="demo")] == again
    assert mirrored_rows(engine) == one_by_one_again
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
