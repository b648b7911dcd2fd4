"""A page's new rows are written together at the end of the page (``core.stripe_store.pending``),
yet every statement of the page sees them as if each had been inserted at once, and the ids they
were given are the ids they keep."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import session_scope
from core.models import Member, Payment, PaymentMethod, Subscription
from core.stripe_store import apply, apply_many
from tests.support.db import mirrored_rows
from tests.support.payloads import backfill_order, pages

NOW = datetime(2026, 11, 27, tzinfo=UTC)


def _customer(cid: str, email: str) -> dict:
    return {"id": cid, "object": "customer", "email": email, "name": cid, "created": 1_760_000_000,
            "invoice_settings": {"default_payment_method": None}, "metadata": {}}


def test_a_later_object_sees_an_earlier_new_row_of_its_page(engine: Engine) -> None:
    # The second customer's e-mail is taken by the first, created in the same page and not written
    # yet: the store must still see it and give the second its own address.
    page = [_customer("cus_pendingA1", "twin@example.com"), _customer("cus_pendingB2", "Twin@example.com")]
    with session_scope(engine) as s:
        assert apply_many(s, page, state_at=NOW) == ["created", "created"]
    with Session(engine) as s:
        emails = dict(s.execute(select(Member.stripe_customer_id, Member.email)).all())
    assert emails == {"cus_pendingA1": "twin@example.com", "cus_pendingB2": "twin+cus_pendingB2@example.com"}


def test_a_page_of_parents_and_children_gives_the_rows_of_one_by_one(engine: Engine) -> None:
    # Customers, their cards, subscriptions, charges and refunds all in one page: every child
    # points at a parent that is still queued, and the queue writes parents first. (Invoices are
    # left out: an invoice page links the payments it prefetched, so it relies on pages of one type.)
    objects = [o for o in backfill_order(8) if o["object"] != "invoice"]
    with session_scope(engine) as s:
        first = [apply(s, obj, state_at=NOW) for obj in objects]
    expected = mirrored_rows(engine)
    with session_scope(engine) as s:
        for name in ("membership_changes", "refunds", "disputes", "payments", "invoice_lines", "invoices",
                     "subscription_items", "subscriptions", "payment_methods", "members", "prices", "tiers"):
            s.execute(Member.metadata.tables[name].delete())
    with session_scope(engine) as s:
        assert apply_many(s, objects, state_at=NOW) == first
    assert mirrored_rows(engine) == expected


def test_ids_given_in_a_page_are_kept_and_later_inserts_do_not_collide(engine: Engine) -> None:
    objects = backfill_order(6)
    with session_scope(engine) as s:
        for page in pages(objects):
            apply_many(s, page, state_at=NOW)
    with Session(engine) as s:
        members = dict(s.execute(select(Member.stripe_customer_id, Member.id)).all())
        owners = {p.stripe_charge_id: p.member_id for p in s.scalars(select(Payment))}
        cards = s.scalars(select(PaymentMethod)).all()
        subs = s.scalars(select(Subscription)).all()
    charges = {o["id"]: o["customer"] for o in objects if o["object"] == "charge"}
    assert owners == {ch: members[cus] for ch, cus in charges.items()}
    assert cards and all(c.member_id in members.values() for c in cards)
    assert subs and all(sub.member_id in members.values() for sub in subs)
    # An insert outside a page (one object, its own id from the database) after the pages.
    with session_scope(engine) as s:
        assert apply(s, _customer("cus_pendingAfter", "after@example.com"), state_at=NOW) == "created"
    with Session(engine) as s:
        new_id = s.scalar(select(Member.id).where(Member.stripe_customer_id == "cus_pendingAfter"))
    assert new_id is not None and new_id > max(members.values())
