"""Invoices with all their lines, and the payment intents / charges each names as paying it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.stripe_mapping import map_invoice
from core.stripe_store import derived, pending
from core.stripe_store.parents import resolve_parents
from core.stripe_store.upsert import bump_version, db_table, upsert


def apply_invoice(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    mapped, lines = map_invoice(obj)
    refs = mapped.pop("payment_refs")
    row = resolve_parents(session, "invoices", mapped)
    lines = [resolve_parents(session, "invoice_lines", ln) for ln in lines]
    if row["created_at"] is None:
        row.pop("created_at")
    outcome, inv_id, before = upsert(session, "invoices", "stripe_invoice_id", row, state_at)
    if outcome == "stale":
        return outcome
    il = db_table("invoice_lines")
    fresh = outcome == "created"
    if fresh:
        # A new invoice has no lines yet: insert them all at once, nothing to compare or remove.
        if lines:
            pending.insert_many(session, "invoice_lines", [{"invoice_id": inv_id, **line} for line in lines])
        lines = []
    keep = []
    for line in lines:
        keep.append(line["stripe_line_id"])
        existing = session.execute(select(il).where(il.c.invoice_id == inv_id,
                                                    il.c.stripe_line_id == line["stripe_line_id"])).mappings().first()
        if existing is None:
            session.execute(il.insert(), {"invoice_id": inv_id, **line})
            outcome = "updated" if outcome == "unchanged" else outcome
        elif any(existing[k] != v for k, v in line.items()):
            session.execute(update(il).where(il.c.id == existing["id"]), line)
            outcome = "updated" if outcome == "unchanged" else outcome
    if not fresh and not (obj.get("lines") or {}).get("has_more"):
        session.execute(il.delete().where(il.c.invoice_id == inv_id, il.c.stripe_line_id.not_in(keep)))
    refs_changed = _sync_payment_refs(session, inv_id, refs, obj, fresh=fresh)
    if refs_changed and outcome == "unchanged":
        outcome = "updated"
    if refs_changed or (before is not None and before["billing_reason"] != row["billing_reason"]):
        derived.note_invoice(session, inv_id)
    if outcome in ("created", "updated"):
        derived.note_subscription(session, row.get("subscription_id"))  # an invoice opened or settled
        bump_version(session, row["member_id"])
    return outcome


def _sync_payment_refs(session: Session, inv_id: int, refs: list[str], obj: dict[str, Any], *, fresh: bool) -> bool:
    """Store the payment intents / charges the invoice names, as of its newest state; True if
    they changed. ``fresh``: the invoice was created just now and has none stored."""
    t = db_table("invoice_payment_refs")
    have = set() if fresh else set(session.scalars(select(t.c.payment_ref).where(t.c.invoice_id == inv_id)))
    new = list(dict.fromkeys(r for r in refs if r not in have))
    if new:
        pending.insert_many(session, "invoice_payment_refs", [{"invoice_id": inv_id, "payment_ref": r} for r in new])
    # A partial list (more pages) says nothing about the refs it leaves out, and an invoice in
    # today's default shape (``payments`` is includable: absent unless asked for, as in every event
    # payload) says nothing about any.
    says_all = "payments" in obj or "charge" in obj or "payment_intent" in obj
    gone = set() if not says_all or (obj.get("payments") or {}).get("has_more") else have - set(refs)
    if gone:
        session.execute(t.delete().where(t.c.invoice_id == inv_id, t.c.payment_ref.in_(sorted(gone))))
    return bool(new or gone)
