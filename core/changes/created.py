"""What Stripe creates because of a staff change's write, stored with the change.

Changing tier "now" makes Stripe invoice the proration and charge it; reactivating a member opens
and pays a first invoice; retrying an invoice charges it. Those objects come from our own write,
so the change stores them in its own transaction, through the same store as the sync: their
webhooks then find them already there (or older than what we hold) and move nothing. Were they
first stored by their webhooks, they would be new rows after the agent saw "Done.", raising the
member's version, and the agent's next change on that member would be refused once.

The invoice comes in the write's own answer (``latest_invoice`` expanded with its payments, see
``core.stripe_gateway.writes.SUBSCRIPTION_EXPAND``; an invoice payment's answer has its payments).
The charges take one more read per payment intent, and only when our rows do not hold the
invoice as it is now with a payment for each of its payment references.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import stripe_store
from core.models import Invoice, Payment
from core.stripe_mapping import invoice_payment_refs
from core.timeutil import utc_now

log = logging.getLogger(__name__)


def with_invoice(session: Session, client: Any, result: dict[str, Any], invoice: Any) -> dict[str, Any]:
    """``result`` plus ``invoice`` (expanded, with its payments), the charges paying it and the
    moment they were read (``read_at``); ``result`` unchanged when ``invoice`` is only an id or
    our rows hold it as it is (a pause, an extension: nothing was invoiced)."""
    if not isinstance(invoice, dict) or not invoice.get("id"):
        return result
    refs = invoice_payment_refs(invoice)
    if _held(session, invoice, refs):
        return result
    from core.stripe_gateway import writes

    charges = writes.charges_of(client, refs) if refs else []
    return result | {"invoice": invoice, "charges": charges, "read_at": utc_now()}


def _held(session: Session, invoice: dict[str, Any], refs: list[str]) -> bool:
    """True when our rows hold ``invoice`` with its status and amount paid, and a payment for each ref."""
    stored = session.scalar(select(Invoice).where(Invoice.stripe_invoice_id == invoice["id"]))
    if stored is None or stored.status != invoice.get("status") or stored.amount_paid != int(invoice.get("amount_paid") or 0):
        return False
    if not refs:
        return True
    found = session.execute(select(Payment.stripe_payment_intent_id, Payment.stripe_charge_id).where(
        or_(Payment.stripe_payment_intent_id.in_(refs), Payment.stripe_charge_id.in_(refs)))).all()
    return set(refs) <= {ref for row in found for ref in row if ref}


def store(session: Session, result: dict[str, Any], *, now: datetime) -> None:
    """Store the invoice and charges ``with_invoice`` added (after the subscription they belong to).

    Stamped with the moment Stripe answered (never before the change's own ``now``): the events of
    the write are no newer, so an earlier state they carry (the invoice as a draft) is refused as
    stale instead of overwriting what was paid. An object that cannot be stored yet (its card is not
    in our database) is left to the sync."""
    if "invoice" not in result:
        return
    state_at = max(now, result["read_at"])
    for obj in [result["invoice"], *result["charges"]]:
        try:
            _apply(session, obj, state_at)
        except stripe_store.MissingParent as exc:
            log.info("left to the sync: %s %s (%s)", obj.get("object"), obj.get("id"), exc)


def _apply(session: Session, obj: dict[str, Any], state_at: datetime) -> None:
    try:
        stripe_store.apply(session, obj, state_at=state_at, source="staff")
    except IntegrityError:
        # Its webhook inserted the same row a moment ago (PostgreSQL waited for that insert): the
        # savepoint is undone, and applying again updates the row it wrote.
        stripe_store.apply(session, obj, state_at=state_at, source="staff")
