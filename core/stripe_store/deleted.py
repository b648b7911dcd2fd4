"""Deleted Stripe objects: what each leaves behind."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from core.db import affected_rows
from core.stripe_store.upsert import db_table


def mark_deleted(session: Session, object_type: str, stripe_id: str, *, state_at: datetime) -> str:
    """A deleted customer keeps its member (history, audit) with ``deleted_in_stripe_at``; a
    deleted price becomes inactive; a deleted (draft) invoice is voided. Others are ignored."""
    if object_type == "customer":
        m = db_table("members")
        done = affected_rows(session.execute(update(m).where(m.c.stripe_customer_id == stripe_id,
                                               m.c.deleted_in_stripe_at.is_(None))
                               .values(deleted_in_stripe_at=state_at, stripe_state_at=state_at,
                                       version=m.c.version + 1)))
        return "deleted" if done else "unchanged"
    if object_type == "price":
        p = db_table("prices")
        done = affected_rows(session.execute(update(p).where(p.c.stripe_price_id == stripe_id, p.c.active.is_(True))
                               .values(active=False)))
        return "deleted" if done else "unchanged"
    if object_type == "invoice":
        i = db_table("invoices")
        done = affected_rows(session.execute(update(i).where(i.c.stripe_invoice_id == stripe_id, i.c.status != "void")
                               .values(status="void", voided_at=state_at, stripe_state_at=state_at)))
        return "deleted" if done else "unchanged"
    return "ignored"
