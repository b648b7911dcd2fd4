"""Write what Stripe answered into our rows through the shared store (``core.stripe_store``), so
the next sync finds exactly what we wrote: same mapping, same MRR definition, same
``stripe_state_at``, and the sync's own ``derive_changes`` rule for membership changes.

On top of the store, a staff change signs the ``membership_changes`` row it caused with the
actor and the reason (source "staff").
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import stripe_store
from core.models import MembershipChange, Subscription


def apply(session: Session, obj: dict[str, Any], *, state_at: datetime) -> str:
    return stripe_store.apply(session, obj, state_at=state_at, source="staff")


def subscription(session: Session, obj: dict[str, Any], *, state_at: datetime, actor: str,
                 reason: str | None) -> Subscription | None:
    """Apply a subscription Stripe returned; sign the membership change it produced."""
    stripe_store.apply(session, obj, state_at=state_at, source="staff")
    sub = session.scalar(select(Subscription).where(Subscription.stripe_subscription_id == obj["id"]))
    if sub is not None:
        session.execute(update(MembershipChange).where(
            MembershipChange.subscription_id == sub.id, MembershipChange.source == "staff",
            MembershipChange.actor.is_(None), MembershipChange.stripe_event_id.is_(None),
        ).values(actor=actor, reason=reason))
        session.refresh(sub)
    return sub
