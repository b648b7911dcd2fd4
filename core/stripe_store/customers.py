"""Customers become members (or link an existing free member by e-mail); payment methods their cards.

An e-mail another member already holds (Stripe allows customers to share one) is kept tagged with
the customer's id (``ann+cus_123@example.com``), when the customer is created and when it is
updated, so the rest of the customer always applies.

The default card is kept as Stripe names it on the member; ``derived.py`` sets the cards' flags.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.stripe_mapping import map_customer, map_payment_method
from core.stripe_store import cache, derived, pending
from core.stripe_store.parents import resolve_parents
from core.stripe_store.upsert import bump_version, db_table, stored_row, upsert


def apply_customer(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    row = map_customer(obj)
    if row["created_at"] is None:
        row.pop("created_at")
    m = db_table("members")
    mine = stored_row(session, "members", "stripe_customer_id", row["stripe_customer_id"])
    owner = stored_row(session, "members", "email", row["email"])
    if mine is None and owner is not None and owner["stripe_customer_id"] is None:
        # The app user already exists (free member): link the customer to them.
        session.execute(update(m).where(m.c.id == owner["id"]).values(stripe_customer_id=row["stripe_customer_id"]))
        cache.forget_row(session, "members", "stripe_customer_id", row["stripe_customer_id"])
    elif owner is not None and (mine is None or owner["id"] != mine["id"]):
        # Stripe lets customers share an e-mail and our members may not: this customer keeps the
        # address tagged with its own id, on creation and on every update alike.
        row["email"] = _tagged(row["email"], row["stripe_customer_id"])
    cache.forget_row(session, "members", "email", row["email"])  # this customer holds it now
    if mine is not None:
        cache.forget_row(session, "members", "email", mine["email"])  # and no longer its old address
    outcome, member_id, before = upsert(session, "members", "stripe_customer_id", row, state_at)
    if outcome == "stale":
        return outcome
    if (before or {}).get("stripe_default_payment_method_id") != row["stripe_default_payment_method_id"]:
        derived.note_member_default(session, member_id)
    if outcome in ("updated", "created"):
        pending.update_row(session, "members", member_id, updated_at=state_at)
        if outcome == "updated":
            bump_version(session, member_id)
    return outcome


def _tagged(email: str, customer_id: str) -> str:
    """``ann@example.com`` -> ``ann+cus_123@example.com``: unique, and still the person's mailbox."""
    local, _, domain = email.partition("@")
    return f"{local}+{customer_id}@{domain}"


def apply_payment_method(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    row = map_payment_method(obj)
    pm = db_table("payment_methods")
    if row["stripe_customer_id"] is None:
        # Detached: keep the row for history, mark when it left.
        existing = session.execute(select(pm.c.id, pm.c.member_id, pm.c.detached_at, pm.c.stripe_state_at)
                                   .where(pm.c.stripe_payment_method_id == row["stripe_payment_method_id"])).first()
        if existing is None:
            return "ignored"
        if existing.stripe_state_at and existing.stripe_state_at > state_at:
            return "stale"
        if existing.detached_at is not None:
            return "unchanged"
        session.execute(update(pm).where(pm.c.id == existing.id).values(detached_at=state_at, is_default=False,
                                                                         stripe_state_at=state_at))
        bump_version(session, existing.member_id)
        return "updated"
    row = resolve_parents(session, "payment_methods", row)
    row["detached_at"] = None
    if row["created_at"] is None:
        row.pop("created_at")
    outcome, pm_id, before = upsert(session, "payment_methods", "stripe_payment_method_id", row, state_at)
    if outcome != "stale" and (before is None or before["member_id"] != row["member_id"]
                               or before["detached_at"] is not None):
        derived.note_card(session, pm_id)
    if outcome in ("created", "updated"):
        bump_version(session, row["member_id"])
    return outcome
