"""Plain values passed between the forms, the service and the actions (no ORM objects)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# The acting staff member is core's one type for "who does this" (kept importable from here).
from core.permissions import Actor

__all__ = ["Actor", "ChangeInput", "Outcome", "Preview"]


@dataclass(frozen=True)
class ChangeInput:
    """What a form submits. ``params`` are raw values as typed; the action validates them."""

    action: str
    member_id: int
    member_version: int
    reason: str
    comment: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preview:
    """What the change will do, shown before the agent confirms.

    ``amount_minor`` is what the member is charged (``amount_kind="charge"``) or refunded
    (``"refund"``), taken from Stripe when Stripe decides it (invoice preview, refundable rest).
    """

    action: str
    summary: list[str]
    amount_minor: int | None = None
    amount_kind: str | None = None  # charge, refund, credit
    currency: str | None = None
    new_period_end: datetime | None = None
    mrr_before_minor: int | None = None
    mrr_after_minor: int | None = None
    needs_approval: bool = False
    approval_reason: str | None = None
    # What the preview fixed that the confirmation must reuse, merged into the submitted params:
    # a tier change's proration moment, so the amount charged is the amount shown.
    pinned: dict[str, Any] = field(default_factory=dict)

    @property
    def mrr_change_minor(self) -> int | None:
        if self.mrr_before_minor is None or self.mrr_after_minor is None:
            return None
        return self.mrr_after_minor - self.mrr_before_minor


@dataclass
class Outcome:
    """The answer to a submitted change.

    status: ``applied`` (done, now or earlier for the same action), ``pending_approval`` (waits
    in the queue), ``rejected``.
    """

    status: str
    request_id: int
    message: str
    idempotency_key: str
    replayed: bool = False
    result: dict[str, Any] | None = None
