"""The write side shared by the Stripe sync and the demo: one Stripe object in, rows upserted.

``apply(session, obj, state_at=..., event_id=..., source=...)`` maps ``obj`` through
``core.stripe_mapping`` and upserts it, keyed by its Stripe id. Guarantees:

- Idempotent: applying the same object twice changes nothing the second time (no new rows, no
  version bump, no second membership change).
- Never stale: if the stored row's ``stripe_state_at`` is newer than ``state_at``, nothing
  changes and the answer is ``"stale"``.
- Parents first: a parent that is not in our database yet raises ``MissingParent(object_type,
  stripe_id)`` before anything is written, so the caller can fetch it and retry.
- Every change to a member's data bumps ``members.version`` (optimistic concurrency for staff
  forms), and every subscription move recognised by ``derive_changes`` writes one
  ``membership_changes`` row, unique per (event, subscription) so a replayed event adds nothing.

Columns that depend on several objects (a payment's invoice, renewal flag and attempt number; a
card's default flag) are derived from what each object says, whatever order they arrive in: see
``derived.py``. Today's charge names no invoice, so the invoice's payment refs are stored
(``invoice_payment_refs``) and whichever of the two arrives last completes the link.

``apply_many(session, objects, state_at=..., source=...)`` (``bulk.py``) applies a whole page with
the same handlers and the same result, reading what they need in a few queries per page and
writing in one savepoint; if any object raises, nothing of the page is written.

The caller owns the transaction (``session_scope``); this module only flushes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from core.models import Base
from core.stripe_mapping import (
    REFS,
    map_charge,
    map_customer,
    map_dispute,
    map_invoice,
    map_payment_method,
    map_price,
    map_product,
    map_refund,
    map_subscription,
)
from core.stripe_store import cache, derived
from core.stripe_store.rules import derive_changes, past_due_since

__all__ = ["MissingParent", "apply", "apply_many", "derive_changes", "mark_deleted", "past_due_since", "OBJECT_TABLES"]

log = logging.getLogger(__name__)

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


def _t(name: str) -> Table:
    return Base.metadata.tables[name]


def _resolve(session: Session, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """Replace ``stripe_*_id`` reference keys by our integer foreign keys."""
    out = dict(row)
    for ref, (fk, parent, parent_key) in REFS.get(table, {}).items():
        sid = out.pop(ref, None)
        if sid is None:
            out.setdefault(fk, None)
            continue
        found = cache.cached_id(session, parent, parent_key, sid)
        if found is None:
            pt = _t(parent)
            found = session.execute(select(pt.c.id).where(pt.c[parent_key] == sid)).scalar()
            if found is None:
                raise MissingParent(_TABLE_OBJECT[parent], sid)
            cache.remember_id(session, parent, parent_key, sid, found)
        out[fk] = found
    return out


def _existing(session: Session, table: str, key: str, value: Any) -> dict[str, Any] | None:
    """The stored row whose ``key`` is ``value`` (from the page cache when ``apply_many`` has it)."""
    hit = cache.cached_row(session, table, key, value)
    if hit is not cache.UNKNOWN:
        return hit  # type: ignore[no-any-return]
    t = _t(table)
    found = session.execute(select(t).where(t.c[key] == value)).mappings().first()
    return None if found is None else dict(found)


def _upsert(session: Session, table: str, key: str, row: dict[str, Any], state_at: datetime | None,
            *, absent: bool = False) -> tuple[str, int | None, dict[str, Any] | None]:
    """Insert or update one row keyed by ``row[key]``: (outcome, id, the row before). ``absent``:
    the caller knows no such row exists (a child of a row created just now)."""
    t = _t(table)
    has_state = "stripe_state_at" in t.c
    existing = None if absent else _existing(session, table, key, row[key])
    cols = {k: v for k, v in row.items() if k in t.c}
    if existing is None:
        if has_state:
            cols["stripe_state_at"] = state_at
        new_id = session.execute(t.insert().returning(t.c.id), cols).scalar_one()
        cache.forget_row(session, table, key, row[key])
        cache.remember_id(session, table, key, row[key], new_id)
        return "created", new_id, None
    cache.forget_row(session, table, key, row[key])
    before = dict(existing)
    if has_state and before.get("stripe_state_at") and state_at and before["stripe_state_at"] > state_at:
        return "stale", before["id"], before
    changed = {k: v for k, v in cols.items() if before.get(k) != v}
    if has_state and state_at and before.get("stripe_state_at") != state_at and (
        changed or before.get("stripe_state_at") is None or before["stripe_state_at"] < state_at
    ):
        changed_state = {"stripe_state_at": state_at}
    else:
        changed_state = {}
    if changed or changed_state:
        session.execute(update(t).where(t.c.id == before["id"]), {**changed, **changed_state})
    return ("updated" if changed else "unchanged"), before["id"], before


def _bump(session: Session, member_id: int | None) -> None:
    page = cache.current(session)
    if page is not None and member_id is not None:
        page.bumps[member_id] += 1  # written once per member at the end of the page
    elif member_id is not None:
        m = _t("members")
        session.execute(update(m).where(m.c.id == member_id).values(version=m.c.version + 1))


# ---------------------------------------------------------------- handlers


def _product(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    row = map_product(obj)
    t = _t("tiers")
    if row["created_at"] is None:
        row.pop("created_at")
    owner = session.execute(select(t.c.id, t.c.stripe_product_id).where(t.c.code == row["code"])).first()
    if owner is not None and owner.stripe_product_id is None:
        # A tier created before Stripe knew it (e.g. free): attach the product to it.
        session.execute(update(t).where(t.c.id == owner.id).values(stripe_product_id=row["stripe_product_id"]))
        cache.forget_row(session, "tiers", "stripe_product_id", row["stripe_product_id"])
    elif owner is not None and owner.stripe_product_id != row["stripe_product_id"]:
        row["code"] = f"{row['code']}-{row['stripe_product_id'][-8:]}"[:32]
    return _upsert(session, "tiers", "stripe_product_id", row, state_at)[0]


def _price(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    row = _resolve(session, "prices", map_price(obj))
    if row["created_at"] is None:
        row.pop("created_at")
    return _upsert(session, "prices", "stripe_price_id", row, state_at)[0]


def _customer(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    row = map_customer(obj)
    if row["created_at"] is None:
        row.pop("created_at")
    m = _t("members")
    if _existing(session, "members", "stripe_customer_id", row["stripe_customer_id"]) is None:
        owner = session.execute(select(m.c.id, m.c.stripe_customer_id).where(m.c.email == row["email"])).first()
        if owner is not None and owner.stripe_customer_id is None:
            # The app user already exists (free member): link the customer to them.
            session.execute(update(m).where(m.c.id == owner.id).values(stripe_customer_id=row["stripe_customer_id"]))
            cache.forget_row(session, "members", "stripe_customer_id", row["stripe_customer_id"])
        elif owner is not None:
            local, _, domain = row["email"].partition("@")
            row["email"] = f"{local}+{row['stripe_customer_id']}@{domain}"
    outcome, member_id, before = _upsert(session, "members", "stripe_customer_id", row, state_at)
    if outcome == "stale":
        return outcome
    if (before or {}).get("stripe_default_payment_method_id") != row["stripe_default_payment_method_id"]:
        derived.note_member_default(session, member_id)  # type: ignore[arg-type]
    if outcome in ("updated", "created"):
        session.execute(update(m).where(m.c.id == member_id).values(updated_at=state_at))
        if outcome == "updated":
            _bump(session, member_id)
    return outcome


def _payment_method(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    row = map_payment_method(obj)
    pm = _t("payment_methods")
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
        _bump(session, existing.member_id)
        return "updated"
    row = _resolve(session, "payment_methods", row)
    row["detached_at"] = None
    if row["created_at"] is None:
        row.pop("created_at")
    outcome, pm_id, before = _upsert(session, "payment_methods", "stripe_payment_method_id", row, state_at)
    if outcome != "stale" and (before is None or before["member_id"] != row["member_id"]
                               or before["detached_at"] is not None):
        derived.note_card(session, pm_id)  # type: ignore[arg-type]
    if outcome in ("created", "updated"):
        _bump(session, row["member_id"])
    return outcome


def _subscription(session: Session, obj: dict, state_at: datetime, event_id: str | None, source: str) -> str:
    mapped, items = map_subscription(obj, at=state_at)
    row = _resolve(session, "subscriptions", mapped)
    items = [_resolve(session, "subscription_items", i) for i in items]
    if row.get("tier_id") is None and row.get("price_id") is not None:
        p = _t("prices")
        row["tier_id"] = session.execute(select(p.c.tier_id).where(p.c.id == row["price_id"])).scalar_one()
    if row["created_at"] is None:
        row.pop("created_at")
    s = _t("subscriptions")
    current = _existing(session, "subscriptions", "stripe_subscription_id", row["stripe_subscription_id"])
    if current is not None and current["stripe_state_at"] and current["stripe_state_at"] > state_at:
        return "stale"
    row["past_due_since"] = past_due_since(current, row, state_at)
    outcome, sub_id, before = _upsert(session, "subscriptions", "stripe_subscription_id", row, state_at)
    items_changed = _sync_items(session, sub_id, items, obj, fresh=outcome == "created")  # type: ignore[arg-type]
    if outcome == "unchanged" and items_changed:
        outcome = "updated"
    if outcome == "updated":
        session.execute(update(s).where(s.c.id == sub_id).values(updated_at=state_at, version=s.c.version + 1))
    if outcome in ("created", "updated"):
        _bump(session, row["member_id"])
        _record_change(session, before, row, sub_id, state_at, event_id, source)  # type: ignore[arg-type]
    return outcome


def _sync_items(session: Session, sub_id: int, items: list[dict[str, Any]], obj: dict, *, fresh: bool) -> bool:
    """``fresh``: the subscription row was created just now, so it has no items to look up or remove."""
    it = _t("subscription_items")
    changed = False
    keep = []
    for item in items:
        item["subscription_id"] = sub_id
        keep.append(item["stripe_item_id"])
        outcome = _upsert(session, "subscription_items", "stripe_item_id", item, None, absent=fresh)[0]
        changed = changed or outcome != "unchanged"
    if not fresh and not (obj.get("items") or {}).get("has_more"):
        gone = session.execute(it.delete().where(it.c.subscription_id == sub_id, it.c.stripe_item_id.not_in(keep)))
        changed = changed or bool(gone.rowcount)
    return changed


def _record_change(session: Session, before: dict[str, Any] | None, after: dict[str, Any], sub_id: int,
                   at: datetime, event_id: str | None, source: str) -> None:
    tiers = _t("tiers")
    ranks = session.info.get("memberdesk_tier_ranks")
    if ranks is None or after.get("tier_id") not in ranks or (before or {}).get("tier_id", after["tier_id"]) not in ranks:
        ranks = {r.id: r.rank for r in session.execute(select(tiers.c.id, tiers.c.rank))}
        session.info["memberdesk_tier_ranks"] = ranks  # tiers rarely change: one read per session
    change = derive_changes(before, after, at, ranks)
    if change is None:
        return
    mc = _t("membership_changes")
    if event_id is not None and session.execute(
        select(mc.c.id).where(mc.c.stripe_event_id == event_id, mc.c.subscription_id == sub_id)
    ).first() is not None:
        return
    session.execute(mc.insert(), dict(member_id=after["member_id"], subscription_id=sub_id, source=source,
                                       stripe_event_id=event_id, recorded_at=at, **change))


def _invoice(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    mapped, lines = map_invoice(obj)
    refs = mapped.pop("payment_refs")
    row = _resolve(session, "invoices", mapped)
    lines = [_resolve(session, "invoice_lines", ln) for ln in lines]
    if row["created_at"] is None:
        row.pop("created_at")
    outcome, inv_id, before = _upsert(session, "invoices", "stripe_invoice_id", row, state_at)
    if outcome == "stale":
        return outcome
    il = _t("invoice_lines")
    fresh = outcome == "created"
    if fresh:
        # A new invoice has no lines yet: insert them all at once, nothing to compare or remove.
        if lines:
            session.execute(il.insert(), [{"invoice_id": inv_id, **line} for line in lines])
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
    refs_changed = _sync_payment_refs(session, inv_id, refs, obj, fresh=fresh)  # type: ignore[arg-type]
    if refs_changed and outcome == "unchanged":
        outcome = "updated"
    if refs_changed or (before is not None and before["billing_reason"] != row["billing_reason"]):
        derived.note_invoice(session, inv_id)  # type: ignore[arg-type]
    if outcome in ("created", "updated"):
        _bump(session, row["member_id"])
    return outcome


def _sync_payment_refs(session: Session, inv_id: int, refs: list[str], obj: dict, *, fresh: bool) -> bool:
    """Store the payment intents / charges the invoice names, as of its newest state; True if
    they changed. ``fresh``: the invoice was created just now and has none stored."""
    t = _t("invoice_payment_refs")
    have = set() if fresh else set(session.scalars(select(t.c.payment_ref).where(t.c.invoice_id == inv_id)))
    new = list(dict.fromkeys(r for r in refs if r not in have))
    if new:
        session.execute(t.insert(), [{"invoice_id": inv_id, "payment_ref": r} for r in new])
    # A partial list (more pages) says nothing about the refs it leaves out.
    gone = set() if (obj.get("payments") or {}).get("has_more") else have - set(refs)
    if gone:
        session.execute(t.delete().where(t.c.invoice_id == inv_id, t.c.payment_ref.in_(sorted(gone))))
    return bool(new or gone)


def _charge(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
    row = _resolve(session, "payments", map_charge(obj))
    if row["invoice_id"] is None:
        row.pop("invoice_id")  # today's charge names no invoice: keep the link its invoice made
    if row["created_at"] is None:
        row.pop("created_at")
    outcome, _, before = _upsert(session, "payments", "stripe_charge_id", row, state_at)
    if outcome == "created" or (outcome == "updated" and any(
            before[k] != row[k] for k in ("created_at", "invoice_id", "stripe_payment_intent_id") if k in row)):  # type: ignore[index]
        derived.note_payment(session, row["stripe_charge_id"], row["stripe_payment_intent_id"])
    if outcome in ("created", "updated"):
        _bump(session, row["member_id"])
    return outcome


def _child_of_payment(table: str, mapper: Callable[..., dict[str, Any]], key: str) -> Callable[..., str]:
    def handler(session: Session, obj: dict, state_at: datetime, **_: Any) -> str:
        row = _resolve(session, table, mapper(obj, state_at) if table == "disputes" else mapper(obj))
        p = _t("payments")
        row["member_id"] = session.execute(select(p.c.member_id).where(p.c.id == row["payment_id"])).scalar_one()
        if row["created_at"] is None:
            row.pop("created_at")
        if table == "disputes":
            t = _t(table)
            closed = session.execute(select(t.c.closed_at).where(t.c[key] == row[key])).scalar()
            if closed is not None:
                row["closed_at"] = closed  # the first time we saw it closed
        outcome, _, _ = _upsert(session, table, key, row, state_at)
        if outcome in ("created", "updated"):
            _bump(session, row["member_id"])
        return outcome

    return handler


HANDLERS: dict[str, Callable[..., str]] = {
    "product": _product,
    "price": _price,
    "customer": _customer,
    "payment_method": _payment_method,
    "subscription": _subscription,
    "invoice": _invoice,
    "charge": _charge,
    "refund": _child_of_payment("refunds", map_refund, "stripe_refund_id"),
    "dispute": _child_of_payment("disputes", map_dispute, "stripe_dispute_id"),
}


def apply(session: Session, obj: dict, *, state_at: datetime, event_id: str | None = None,
          source: str = "stripe") -> str:
    """Upsert one Stripe object. Returns ``created``, ``updated``, ``unchanged``, ``stale``,
    ``deleted`` or ``ignored`` (an object type we do not mirror). Raises ``MissingParent``."""
    kind = obj.get("object", "")
    if obj.get("deleted"):
        return mark_deleted(session, kind, obj["id"], state_at=state_at)
    if HANDLERS.get(kind) is None:
        return "ignored"
    # Parents are resolved before the first write, so MissingParent leaves nothing behind; the
    # savepoint also undoes a handler that fails half-way, so the caller (the sync) can record the
    # failure and go on with the next object in the same transaction.
    with session.begin_nested(), derived.collecting(session):
        return apply_one(session, obj, state_at=state_at, event_id=event_id, source=source)


def apply_one(session: Session, obj: dict, *, state_at: datetime, event_id: str | None = None,
              source: str = "stripe") -> str:
    """``apply`` without its own savepoint: the caller (``apply_many``) holds one for the page."""
    kind = obj.get("object", "")
    if obj.get("deleted"):
        return mark_deleted(session, kind, obj["id"], state_at=state_at)
    handler = HANDLERS.get(kind)
    if handler is None:
        return "ignored"
    outcome = handler(session, obj, state_at, event_id=event_id, source=source)
    log.debug("applied %s %s: %s", kind, obj.get("id"), outcome)
    return outcome


from core.stripe_store.bulk import apply_many  # noqa: E402  (uses apply_one above)


def mark_deleted(session: Session, object_type: str, stripe_id: str, *, state_at: datetime) -> str:
    """A deleted customer keeps its member (history, audit) with ``deleted_in_stripe_at``; a
    deleted price becomes inactive; a deleted (draft) invoice is voided. Others are ignored."""
    if object_type == "customer":
        m = _t("members")
        done = session.execute(update(m).where(m.c.stripe_customer_id == stripe_id,
                                               m.c.deleted_in_stripe_at.is_(None))
                               .values(deleted_in_stripe_at=state_at, stripe_state_at=state_at,
                                       version=m.c.version + 1)).rowcount
        return "deleted" if done else "unchanged"
    if object_type == "price":
        p = _t("prices")
        done = session.execute(update(p).where(p.c.stripe_price_id == stripe_id, p.c.active.is_(True))
                               .values(active=False)).rowcount
        return "deleted" if done else "unchanged"
    if object_type == "invoice":
        i = _t("invoices")
        done = session.execute(update(i).where(i.c.stripe_invoice_id == stripe_id, i.c.status != "void")
                               .values(status="void", voided_at=state_at, stripe_state_at=state_at)).rowcount
        return "deleted" if done else "unchanged"
    return "ignored"
