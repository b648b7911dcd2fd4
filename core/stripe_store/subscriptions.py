"""Subscriptions with their items, and the membership change each move records (``rules.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.stripe_mapping import map_subscription
from core.stripe_store import derived, pending
from core.stripe_store.parents import resolve_parents
from core.stripe_store.rules import derive_changes, past_due_since
from core.stripe_store.upsert import bump_version, db_table, stored_row, upsert


def apply_subscription(session: Session, obj: dict[str, Any], state_at: datetime, event_id: str | None, source: str) -> str:
    mapped, items = map_subscription(obj, at=state_at)
    row = resolve_parents(session, "subscriptions", mapped)
    items = [resolve_parents(session, "subscription_items", i) for i in items]
    if row.get("tier_id") is None and row.get("price_id") is not None:
        p = db_table("prices")
        row["tier_id"] = session.execute(select(p.c.tier_id).where(p.c.id == row["price_id"])).scalar_one()
    if row["created_at"] is None:
        row.pop("created_at")
    s = db_table("subscriptions")
    current = stored_row(session, "subscriptions", "stripe_subscription_id", row["stripe_subscription_id"])
    if current is not None and current["stripe_state_at"] and current["stripe_state_at"] > state_at:
        return "stale"
    row["past_due_since"] = past_due_since(current, row, state_at)
    outcome, sub_id, before = upsert(session, "subscriptions", "stripe_subscription_id", row, state_at)
    items_changed = _sync_items(session, sub_id, items, obj, fresh=outcome == "created")
    if outcome == "unchanged" and items_changed:
        outcome = "updated"
    if outcome == "updated":
        session.execute(update(s).where(s.c.id == sub_id).values(updated_at=state_at, version=s.c.version + 1))
    if outcome in ("created", "updated"):
        derived.note_subscription(session, sub_id)
        bump_version(session, row["member_id"])
        _record_change(session, before, row, sub_id, state_at, event_id, source)
    return outcome


def _sync_items(session: Session, sub_id: int, items: list[dict[str, Any]], obj: dict[str, Any], *, fresh: bool) -> bool:
    """``fresh``: the subscription row was created just now, so it has no items to look up or remove."""
    it = db_table("subscription_items")
    changed = False
    keep = []
    for item in items:
        item["subscription_id"] = sub_id
        keep.append(item["stripe_item_id"])
        outcome = upsert(session, "subscription_items", "stripe_item_id", item, None, absent=fresh)[0]
        changed = changed or outcome != "unchanged"
    if not fresh and not (obj.get("items") or {}).get("has_more"):
        gone = session.execute(it.delete().where(it.c.subscription_id == sub_id, it.c.stripe_item_id.not_in(keep)))
        changed = changed or bool(affected_rows(gone))
    return changed


def _record_change(session: Session, before: dict[str, Any] | None, after: dict[str, Any], sub_id: int,
                   at: datetime, event_id: str | None, source: str) -> None:
    tiers = db_table("tiers")
    ranks = session.info.get("memberdesk_tier_ranks")
    if ranks is None or after.get("tier_id") not in ranks or (before or {}).get("tier_id", after["tier_id"]) not in ranks:
        ranks = {r.id: r.rank for r in session.execute(select(tiers.c.id, tiers.c.rank))}
        session.info["memberdesk_tier_ranks"] = ranks  # tiers rarely change: one read per session
    change = derive_changes(before, after, at, ranks)
    if change is None:
        return
    mc = db_table("membership_changes")
    if event_id is not None and session.execute(
        select(mc.c.id).where(mc.c.stripe_event_id == event_id, mc.c.subscription_id == sub_id)
    ).first() is not None:
        return
    pending.insert_many(session, "membership_changes", [dict(
        member_id=after["member_id"], subscription_id=sub_id, source=source, stripe_event_id=event_id,
        recorded_at=at, **change)])
