"""Second refunds that look like the first: "a refund like one made on the same payment minutes
ago" is what a double submit after "Done." (or two agents answering the same ticket) produces.

The idempotency key cannot catch it: after "Done." the member's version moved on, so the same
values typed again are a new request. So the refund's plan asks here, and an identical refund of
the same payment within ``WINDOW`` is refused until the form confirms it by naming the earlier
request (``repeat_of``). The sentence says who made the earlier one, when and for how much.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.changes.errors import RepeatSuspected
from core.models import ChangeRequest
from core.money import format_money

WINDOW = timedelta(minutes=30)
# A request in any of these states has refunded, is refunding or may refund once approved.
LIVE = ("applied", "applying", "pending_approval", "approved")


def earlier_refund(session: Session, *, member_id: int, payment_id: int, amount: int, now: datetime,
                   exclude: int | None = None) -> dict[str, Any] | None:
    """The latest refund request of the same amount on the same payment within the window."""
    rows = session.scalars(
        select(ChangeRequest).where(ChangeRequest.member_id == member_id, ChangeRequest.action == "refund",
                                    ChangeRequest.status.in_(LIVE), ChangeRequest.requested_at >= now - WINDOW,
                                    ChangeRequest.id != (exclude or 0))
        .order_by(ChangeRequest.requested_at.desc(), ChangeRequest.id.desc())).all()
    for req in rows:
        params = req.params or {}
        if params.get("payment_id") == payment_id and params.get("amount") == amount:
            return {"request_id": req.id, "requested_by": req.requested_by, "requested_at": req.requested_at,
                    "amount": amount, "currency": params.get("currency"), "status": req.status}
    return None


def describe(earlier: dict[str, Any], now: datetime) -> str:
    minutes = max(0, int((now - earlier["requested_at"]).total_seconds() // 60))
    ago = "less than a minute ago" if minutes == 0 else f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    verb = "waits for approval" if earlier["status"] == "pending_approval" else "was made"
    return (f"A refund of {format_money(earlier['amount'], earlier['currency'])} on this payment {verb} by "
            f"{earlier['requested_by']} at {earlier['requested_at']:%Y-%m-%d %H:%M} UTC ({ago}, request "
            f"#{earlier['request_id']}).")


def check_refund(session: Session, *, member_id: int, payment_id: int, amount: int, now: datetime,
                 confirmed: Any, exclude: int | None = None) -> None:
    """Raise ``RepeatSuspected`` unless no such refund exists or ``confirmed`` names it."""
    earlier = earlier_refund(session, member_id=member_id, payment_id=payment_id, amount=amount, now=now,
                             exclude=exclude)
    if earlier is None or confirmed == earlier["request_id"] or str(confirmed) == str(earlier["request_id"]):
        return
    raise RepeatSuspected(describe(earlier, now) + " Is this a second refund? Nothing was refunded now; "
                          "confirm that you mean to refund again to go ahead.", earlier)
