"""What Stripe answered a change, in a sentence for the person who made it.

"Done." and the preview's summary told an agent what was asked ("Charges the member's default card
$19.99 now… If the card is declined, nothing changes here."), not what happened: after a retry the
agent could not tell whether the card had been charged. The change's stored detail (the result
of ``Action.write``) says it.
"""

from __future__ import annotations

from typing import Any

from core.labels import INVOICE_STATUS
from core.money import format_money


def done_sentence(action: str, detail: dict[str, Any] | None) -> str:
    """The outcome of an applied change in words, or "" when its detail says nothing more than
    the preview did."""
    detail = detail or {}
    currency = detail.get("currency")
    if action == "retry_invoice" and detail.get("invoice_status"):
        status = INVOICE_STATUS.get(str(detail["invoice_status"]), str(detail["invoice_status"]))
        paid = detail.get("amount_paid")
        collected = f", {format_money(int(paid), currency)} collected" if currency and paid else ""
        return f"Stripe answered: the invoice is {status.lower()}{collected}."
    if action == "refund" and currency and detail.get("amount"):
        return f"Stripe answered: {format_money(int(detail['amount']), currency)} refunded."
    return ""
