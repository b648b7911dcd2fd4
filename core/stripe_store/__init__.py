"""The write side shared by the Stripe sync and the demo: one Stripe object in, rows upserted.

``apply(session, obj, state_at=..., event_id=..., source=...)`` maps ``obj`` through
``core.stripe_mapping`` and upserts it, keyed by its Stripe id. Guarantees:

- Idempotent: applying the same object twice changes nothing the second time (no new rows, no
  version bump, no second membership change), even when another transaction wrote the same
  content between this one's read and its write (the webhook echo of a staff change): the
  ``UPDATE`` compares again (``upsert.py``).
- Never stale: if the stored row's ``stripe_state_at`` is newer than ``state_at``, nothing
  changes and the answer is ``"stale"``.
- Parents first: a parent that is not in our database yet raises ``MissingParent(object_type,
  stripe_id)`` before anything is written, so the caller can fetch it and retry.
- Every change to a member's data bumps ``members.version`` (optimistic concurrency for staff
  forms) once per transaction, through ``bump_version`` (the one place the version is raised,
  the membership-change service's claim included), and every subscription move recognised by ``derive_changes`` writes one
  ``membership_changes`` row, unique per (event, subscription) so a replayed event adds nothing.

Columns that depend on several objects (a payment's invoice, renewal flag and attempt number; a
card's default flag) are derived from what each object says, whatever order they arrive in: see
``derived.py``. Today's charge names no invoice, so the invoice's payment refs are stored
(``invoice_payment_refs``) and whichever of the two arrives last completes the link.

``apply_many(session, objects, state_at=..., source=...)`` (``bulk.py``) applies a whole page with
the same handlers and the same result, reading what they need in a few queries per page and
writing in one savepoint; if any object raises, nothing of the page is written.

The caller owns the transaction (``session_scope``); this package only flushes.

Where things are: ``parents.py`` (Stripe references -> our foreign keys, ``MissingParent``),
``upsert.py`` (one row keyed by its Stripe id, stale refusal, version bumps), one module per
object family (``catalogue``, ``customers``, ``subscriptions``, ``invoices``, ``payments``,
``deleted``), ``derived.py`` (columns that depend on several objects), ``rules.py`` (which
subscription moves are membership changes), ``bulk.py`` and ``cache.py`` (a page at a time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.stripe_store import derived
from core.stripe_store.catalogue import apply_price, apply_product
from core.stripe_store.customers import apply_customer, apply_payment_method
from core.stripe_store.deleted import mark_deleted
from core.stripe_store.invoices import apply_invoice
from core.stripe_store.parents import OBJECT_TABLES, MissingParent
from core.stripe_store.payments import apply_charge, apply_dispute, apply_refund
from core.stripe_store.rules import derive_changes, past_due_since
from core.stripe_store.subscriptions import apply_subscription
from core.stripe_store.upsert import bump_version

__all__ = ["MissingParent", "apply", "apply_many", "bump_version", "derive_changes", "mark_deleted", "past_due_since", "OBJECT_TABLES"]

log = logging.getLogger(__name__)

# Stripe object type -> the handler that writes it (session, obj, state_at, event_id=, source=).
HANDLERS: dict[str, Callable[..., str]] = {
    "product": apply_product,
    "price": apply_price,
    "customer": apply_customer,
    "payment_method": apply_payment_method,
    "subscription": apply_subscription,
    "invoice": apply_invoice,
    "charge": apply_charge,
    "refund": apply_refund,
    "dispute": apply_dispute,
}


def apply(session: Session, obj: dict[str, Any], *, state_at: datetime, event_id: str | None = None,
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


def apply_one(session: Session, obj: dict[str, Any], *, state_at: datetime, event_id: str | None = None,
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
