"""Charges become payment attempts; refunds and disputes hang off them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.stripe_mapping import map_charge, map_dispute, map_refund
from core.stripe_store import derived
from core.stripe_store.parents import resolve_parents
from core.stripe_store.upsert import bump_version, db_table, upsert


def apply_charge(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
    row = resolve_parents(session, "payments", map_charge(obj))
    if row["invoice_id"] is None:
        row.pop("invoice_id")  # today's charge names no invoice: keep the link its invoice made
    if row["created_at"] is None:
        row.pop("created_at")
    if isinstance(obj.get("balance_transaction"), str):
        row.pop("fee")  # not expanded (an event's payload): says nothing about the fee we hold
    outcome, _row_id, before = upsert(session, "payments", "stripe_charge_id", row, state_at)
    if outcome == "created" or (outcome == "updated" and before is not None and any(
            before[k] != row[k] for k in ("created_at", "invoice_id", "stripe_payment_intent_id") if k in row)):
        derived.note_payment(session, row["stripe_charge_id"], row["stripe_payment_intent_id"])
    if outcome in ("created", "updated"):
        bump_version(session, row["member_id"])
    return outcome


def _child_of_payment(table: str, mapper: Callable[..., dict[str, Any]], key: str) -> Callable[..., str]:
    def handler(session: Session, obj: dict[str, Any], state_at: datetime, **_: Any) -> str:
        row = resolve_parents(session, table, mapper(obj, state_at) if table == "disputes" else mapper(obj))
        p = db_table("payments")
        row["member_id"] = session.execute(select(p.c.member_id).where(p.c.id == row["payment_id"])).scalar_one()
        if row["created_at"] is None:
            row.pop("created_at")
        earlier_close = None
        if table == "disputes":
            t = db_table(table)
            closed = session.execute(select(t.c.closed_at).where(t.c[key] == row[key])).scalar()
            if closed is not None:
                # Closed at the earliest event time that showed it won or lost, whatever order the
                # events arrive in: a later delivery never moves the date, an earlier one does.
                row["closed_at"] = min(closed, row["closed_at"]) if row["closed_at"] else closed
                earlier_close = row["closed_at"] if row["closed_at"] < closed else None
        outcome, row_id, _before = upsert(session, table, key, row, state_at)
        if outcome == "stale" and earlier_close is not None:
            session.execute(update(db_table(table)).where(db_table(table).c.id == row_id).values(closed_at=earlier_close))
        if outcome in ("created", "updated"):
            bump_version(session, row["member_id"])
        return outcome

    return handler



apply_refund = _child_of_payment("refunds", map_refund, "stripe_refund_id")
apply_dispute = _child_of_payment("disputes", map_dispute, "stripe_dispute_id")
