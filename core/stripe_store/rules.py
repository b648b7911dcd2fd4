"""Which subscription changes are membership changes: one pure rule shared by every writer.

``derive_changes(before, after, at)`` compares two subscription rows (our column names, integer
foreign keys already resolved) and returns the ``membership_changes`` row describing the move, or
``None`` when nothing a membership history cares about changed. The Stripe store calls it on every
applied subscription; the demo loader calls it over each subscription's state history, so demo and
synced histories follow exactly the same rules.

One change per transition: when several things move at once the most significant kind wins
(status, then price/tier, quantity, cancellation flag, pause, then MRR alone), and the row still
carries the full MRR before and after, so movements sum correctly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

Row = Mapping[str, Any]
ENDED = ("canceled", "incomplete_expired")


def past_due_since(before: Row | None, after: Row, at: datetime) -> datetime | None:
    """When the current past_due spell began: kept while it lasts, cleared when it ends."""
    if after.get("status") != "past_due":
        return None
    if before is not None and before.get("status") == "past_due" and before.get("past_due_since"):
        since: datetime = before["past_due_since"]
        return since
    return at


def _status_kind(fr: str | None, to: str) -> str:
    if to == "canceled":
        return "canceled"
    if fr in ENDED:
        return "reactivated"
    if fr in ("trialing", "incomplete") and to == "active":
        return "converted"
    if to in ("past_due", "unpaid"):
        return "past_due"
    if fr in ("past_due", "unpaid") and to == "active":
        return "recovered"
    if to == "paused":
        return "paused"
    if fr == "paused":
        return "resumed"
    return "status_changed"


def _rank(tier_rank: Mapping[int, int], tier_id: int | None) -> int:
    return 0 if tier_id is None else tier_rank.get(tier_id, 0)


def _price_kind(before: Row, after: Row, tier_rank: Mapping[int, int] | None) -> str:
    if before.get("tier_id") != after.get("tier_id") and tier_rank:
        old, new = _rank(tier_rank, before.get("tier_id")), _rank(tier_rank, after.get("tier_id"))
        if new != old:
            return "upgraded" if new > old else "downgraded"
    if before.get("tier_id") != after.get("tier_id"):
        diff = (after.get("mrr_minor") or 0) - (before.get("mrr_minor") or 0)
        if diff:
            return "upgraded" if diff > 0 else "downgraded"
    return "price_changed"


def _canceling(row: Row) -> bool:
    return bool(row.get("cancel_at_period_end") or row.get("cancel_at"))


def derive_changes(before: Row | None, after: Row, at: datetime,
                   tier_rank: Mapping[int, int] | None = None) -> dict[str, Any] | None:
    """The membership change from ``before`` (None for a new subscription) to ``after``, effective
    at ``at``; None if the move is not a membership change. ``tier_rank`` (tier id -> rank) tells
    an upgrade from a downgrade; without it the MRR direction decides."""
    status = after.get("status") or ""
    if before is None:
        kind: str | None = "trial_started" if status == "trialing" else "created"
    elif before.get("status") != status:
        kind = _status_kind(before.get("status"), status)
    elif before.get("price_id") != after.get("price_id") or before.get("tier_id") != after.get("tier_id"):
        kind = _price_kind(before, after, tier_rank)
    elif (before.get("quantity") or 1) != (after.get("quantity") or 1):
        kind = "quantity_changed"
    elif _canceling(before) != _canceling(after):
        kind = "cancel_scheduled" if _canceling(after) else "cancel_unscheduled"
    elif before.get("pause_behavior") != after.get("pause_behavior"):
        kind = "paused" if after.get("pause_behavior") else "resumed"
    elif (before.get("mrr_minor") or 0) != (after.get("mrr_minor") or 0):
        kind = "discount_changed"
    else:
        kind = None
    if kind is None:
        return None
    churny = kind in ("canceled", "cancel_scheduled")
    reason = None
    if churny:
        reason = after.get("cancellation_feedback") or after.get("cancellation_reason")
    return {
        "effective_at": at,
        "kind": kind,
        "from_status": before.get("status") if before else None,
        "to_status": status,
        "from_price_id": before.get("price_id") if before else None,
        "to_price_id": after.get("price_id"),
        "from_tier_id": before.get("tier_id") if before else None,
        "to_tier_id": after.get("tier_id"),
        "currency": after.get("currency") or (before or {}).get("currency") or "",
        "mrr_before_minor": int((before or {}).get("mrr_minor") or 0),
        "mrr_after_minor": int(after.get("mrr_minor") or 0),
        "churn_kind": after.get("churn_kind") if churny else None,
        "reason": reason,
    }
