"""Event handlers: a dict from Stripe event type to one small function.

A handler gets the run's ``Applier``, the session and the event dict, and writes through the
store; it returns normally when the event is handled (or deliberately ignored) and raises when it
is not. Events whose object we do not mirror (payment intents, test clocks, ...) are ignored:
the charge events carry each payment attempt, and ignoring still marks them processed so they
do not pile up.

Payloads may be rendered in an older API version than our client's; the store's mapping layer
reads both shapes. Invoice payloads embed only 10 lines: the rest are fetched before applying.
Payloads are never expanded: what the mapping needs beyond them (an invoice's payments, a charge's
balance transaction) is read from Stripe before applying.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.models import Base
from core.models.stripe_sync import StripeEvent
from core.stripe_gateway import GatewayError, reads
from core.stripe_gateway.errors import translate_errors
from core.stripe_mapping import CLOSED_AT_HINT, DISPUTE_CLOSED
from core.stripe_store import OBJECT_TABLES
from core.sync.apply import Applier
from core.timeutil import from_epoch, utc_now

Handler = Callable[[Applier, Session, dict[str, Any]], str]

HANDLED = "handled"
IGNORED = "ignored"


def _object(event: dict[str, Any]) -> dict[str, Any]:
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict):
        raise ValueError(f"Event {event.get('id')} has no object.")
    return obj


def apply_object(applier: Applier, session: Session, event: dict[str, Any],
                 complete: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> str:
    """The common case: the event's object is the new state of a row we mirror.

    Stripe's ``created`` has one-second resolution, which leaves two ties to settle by re-reading
    the object from Stripe and applying it as of the time it was read (once per object per run),
    so every delivery order ends with Stripe's current state:

    - two events about one object in the same second cannot be ordered (event ids carry no order),
      so whichever came last would win: when the ledger holds such a twin, re-read instead;
    - a read of ours (backfill, resync) stamped later in the same second than the event is not
      necessarily newer: the change may have happened after the read. The store refuses the event
      as stale, and the re-read settles which is newer.
    """
    obj = _object(event)
    state_at = from_epoch(event["created"])
    assert state_at is not None
    object_id = obj.get("id")
    if object_id and object_id in applier.refreshed:
        return HANDLED  # already re-read in this run: newer than this event
    candidate = applier.twin_candidates is None or (str(object_id), state_at) in applier.twin_candidates
    if object_id and candidate and _has_twin(session, event["id"], str(object_id), state_at, obj) and _reread(
        applier, session, event, obj
    ):
        return HANDLED
    # What the payload lacks is asked for only now: the twin check above compares payloads as delivered.
    outcome = applier.apply(session, complete(obj) if complete else obj, state_at=state_at, event_id=event["id"])
    if outcome == "stale" and object_id and _read_in_same_second(session, obj, state_at):
        _reread(applier, session, event, obj)
    return HANDLED


def _reread(applier: Applier, session: Session, event: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Apply the object as Stripe holds it now; False when Stripe no longer has it."""
    object_id = str(obj.get("id"))
    try:
        fresh = reads.retrieve(applier.client, str(obj.get("object")), object_id)
    except GatewayError as exc:
        if exc.kind != "not_found":
            raise
        return False
    applier.refreshed.add(object_id)
    if fresh.get("object") == "dispute" and obj.get("status") in DISPUTE_CLOSED:
        # Closed at this event's time at the latest, never at the time of this read.
        fresh = {**fresh, CLOSED_AT_HINT: event["created"]}
    # The state read now includes every event already emitted about it, including events of a
    # test clock whose simulated time runs ahead of ours.
    newest = session.scalar(select(func.max(StripeEvent.created_at)).where(StripeEvent.object_id == object_id))
    read_at = max(utc_now(), newest) if newest else utc_now()
    applier.apply(session, fresh, state_at=read_at, event_id=event["id"])
    return True


def _read_in_same_second(session: Session, obj: dict[str, Any], created: datetime) -> bool:
    """True when the stored row's state time falls in the event's second: stamped by a read of
    ours, so it cannot be ordered against the event."""
    table_key = OBJECT_TABLES.get(str(obj.get("object")))
    if table_key is None:
        return False
    table = Base.metadata.tables[table_key[0]]
    if "stripe_state_at" not in table.c:
        return False
    stored = session.scalar(select(table.c.stripe_state_at).where(table.c[table_key[1]] == obj["id"]))
    return stored is not None and created <= stored < created + timedelta(seconds=1)


def _has_twin(session: Session, event_id: str, object_id: str, created: datetime, obj: dict[str, Any]) -> bool:
    """True when another event about this object in the same second carries a different state."""
    stmt = select(StripeEvent.payload).where(
        StripeEvent.object_id == object_id, StripeEvent.created_at == created, StripeEvent.id != event_id
    )
    return any(((p or {}).get("data") or {}).get("object") != obj for p in session.scalars(stmt))


def apply_invoice(applier: Applier, session: Session, event: dict[str, Any]) -> str:
    """An invoice event: its lines completed, and its payments asked for. Stripe never expands an
    event's payload, so today's invoice arrives without ``payments`` (includable); they are read from
    the invoice payments API, once per invoice per run. A payment never leaves its invoice, so the
    list read now is a superset of the one at the event's time and links nothing wrongly."""

    def complete(obj: dict[str, Any]) -> dict[str, Any]:
        if (obj.get("lines") or {}).get("has_more") and obj.get("id"):
            with translate_errors():
                obj = reads._complete_lines(applier.client, obj)
        if "payments" in obj or not obj.get("id") or not _pays_through_payments(obj):
            return obj
        found = fetch_invoice_payments(applier, str(obj["id"]))
        return obj if found is None else {**obj, "payments": found}

    return apply_object(applier, session, event, complete)


def fetch_invoice_payments(applier: Applier, invoice_id: str) -> dict[str, Any] | None:
    """An invoice's payments list, read once per run (None: Stripe no longer has the invoice, a
    deleted draft: nothing to link)."""
    return _read_once(applier.invoice_payments, invoice_id, lambda: reads.invoice_payments(applier.client, invoice_id))


def fetch_balance_transaction(applier: Applier, txn_id: str) -> dict[str, Any] | None:
    """A balance transaction, read once per run (None: not found)."""
    return _read_once(applier.balance_transactions, txn_id,
                      lambda: reads.balance_transaction(applier.client, txn_id))


def _read_once(memo: dict[str, Any], key: str, read: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
    """``read()`` the first time ``key`` is asked for in this run, remembered in ``memo``; an object
    Stripe does not have is remembered as None."""
    if key not in memo:
        try:
            memo[key] = read()
        except GatewayError as exc:
            if exc.kind != "not_found":
                raise
            memo[key] = None
    found: dict[str, Any] | None = memo[key]
    return found


def reads_wanted(event: dict[str, Any]) -> tuple[str, str] | None:
    """("invoice_payments" | "balance_transaction", id) the handler of ``event`` will read, if any."""
    obj = (event.get("data") or {}).get("object")
    if not isinstance(obj, dict) or not obj.get("id"):
        return None
    kind = str(event.get("type") or "")
    if kind.startswith("invoice.") and handler_for(kind) is apply_invoice and "payments" not in obj \
            and _pays_through_payments(obj):
        return "invoice_payments", str(obj["id"])
    txn = obj.get("balance_transaction")
    if kind.startswith("charge.") and handler_for(kind) is apply_charge and isinstance(txn, str) and txn:
        return "balance_transaction", txn
    return None


def _pays_through_payments(obj: dict[str, Any]) -> bool:
    """Today's shape (payments, not the older ``charge`` / ``payment_intent``), past the draft."""
    return "charge" not in obj and "payment_intent" not in obj and obj.get("status") not in (None, "draft")


def apply_charge(applier: Applier, session: Session, event: dict[str, Any]) -> str:
    """A charge event: its balance transaction (Stripe's fee) is an id in the payload, never
    expanded; it is read once (it never changes) and put in place of the id."""

    def complete(obj: dict[str, Any]) -> dict[str, Any]:
        txn = obj.get("balance_transaction")
        if not isinstance(txn, str) or not txn:
            return obj
        found = fetch_balance_transaction(applier, txn)
        return obj if found is None else {**obj, "balance_transaction": found}

    return apply_object(applier, session, event, complete)


def ignore(applier: Applier, session: Session, event: dict[str, Any]) -> str:
    return IGNORED


def _types(prefix: str, *actions: str) -> list[str]:
    return [f"{prefix}.{a}" for a in actions]


#: Event type -> handler (Stripe's event names, https://docs.stripe.com/api/events/types).
HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(_types("customer", "created", "updated", "deleted"), apply_object),
    **dict.fromkeys(_types("product", "created", "updated", "deleted"), apply_object),
    **dict.fromkeys(_types("price", "created", "updated", "deleted"), apply_object),
    **dict.fromkeys(
        _types("payment_method", "attached", "updated", "automatically_updated", "detached"), apply_object
    ),
    **dict.fromkeys(
        _types(
            "customer.subscription", "created", "updated", "deleted", "paused", "resumed",
            "trial_will_end", "pending_update_applied", "pending_update_expired",
        ),
        apply_object,
    ),
    **dict.fromkeys(
        _types(
            "invoice", "created", "updated", "deleted", "finalized", "finalization_failed", "paid",
            "payment_succeeded", "payment_failed", "payment_action_required", "voided",
            "marked_uncollectible", "sent", "overdue", "will_be_due", "overpaid",
        ),
        apply_invoice,
    ),
    **dict.fromkeys(
        _types("charge", "succeeded", "failed", "pending", "captured", "refunded", "updated", "expired"),
        apply_charge,
    ),
    **dict.fromkeys(_types("charge.refund", "updated"), apply_object),
    **dict.fromkeys(_types("refund", "created", "updated", "failed"), apply_object),
    **dict.fromkeys(_types("charge.dispute", "created", "updated", "closed"), apply_object),
    # Not mirrored: the charge events carry each payment attempt; the rest is not ours.
    "invoice.upcoming": ignore,  # a preview: no id, nothing to store
    "charge.dispute.funds_withdrawn": ignore,
    "charge.dispute.funds_reinstated": ignore,
}


def handler_for(event_type: str) -> Handler:
    """The handler for an event type; types we do not mirror are ignored (and marked processed)."""
    return HANDLERS.get(event_type, ignore)
