"""Stripe objects -> row dicts. Pure functions, no database, no clock.

Each ``map_*`` function takes one Stripe object as a plain dict (``obj.to_dict()``, a parsed
event's ``data.object``, or JSON) and returns a dict whose keys are our column names. Parents are
referenced by Stripe id under ``stripe_*_id`` keys that ``core.stripe_store`` resolves to our
integer foreign keys (see ``REFS``); those keys are not columns unless the table has one of that
name (``members.stripe_customer_id``).

Guarantees:
- Both API shapes are accepted (see docs/demo-data.md and the Stripe notes):
  today's (2026-10-28: ``current_period_*`` on subscription items, ``invoice.parent.
  subscription_details.subscription``, ``invoice.payments`` of invoice payments,
  ``line.pricing.price_details.price``, ``discounts`` with ``source.coupon``, ``total_taxes``)
  and the older one (top-level ``current_period_*``, ``invoice.subscription``, ``invoice.charge``
  / ``invoice.payment_intent``, ``charge.invoice``, ``line.price``, ``discount.coupon``, ``tax``).
- Epoch seconds become aware UTC datetimes here and nowhere else.
- Currencies are upper-case ISO codes; amounts stay integer minor units as Stripe sends them.
- Card numbers and CVCs are never read, so they can never reach a row.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from decimal import Decimal
from typing import Any

from core.metrics.subscription_mrr import Discount, Item, subscription_mrr
from core.models.enums import ChurnKind
from core.timeutil import from_epoch

log = logging.getLogger(__name__)

Row = dict[str, Any]

TIER_RANKS = {"free": 0, "premium": 1, "platinum": 2}

# Reference keys per table: ref key -> (our FK column, the parent's table, the parent's Stripe-id column).
REFS: dict[str, dict[str, tuple[str, str, str]]] = {
    "prices": {"stripe_product_id": ("tier_id", "tiers", "stripe_product_id")},
    "payment_methods": {"stripe_customer_id": ("member_id", "members", "stripe_customer_id")},
    "subscriptions": {
        "stripe_customer_id": ("member_id", "members", "stripe_customer_id"),
        "stripe_price_id": ("price_id", "prices", "stripe_price_id"),
        "stripe_product_id": ("tier_id", "tiers", "stripe_product_id"),
        "stripe_default_payment_method_id": ("default_payment_method_id", "payment_methods",
                                             "stripe_payment_method_id"),
    },
    "subscription_items": {"stripe_price_id": ("price_id", "prices", "stripe_price_id")},
    "invoices": {
        "stripe_customer_id": ("member_id", "members", "stripe_customer_id"),
        "stripe_subscription_id": ("subscription_id", "subscriptions", "stripe_subscription_id"),
    },
    "invoice_lines": {"stripe_price_id": ("price_id", "prices", "stripe_price_id")},
    "payments": {
        "stripe_customer_id": ("member_id", "members", "stripe_customer_id"),
        "stripe_invoice_id": ("invoice_id", "invoices", "stripe_invoice_id"),
        "stripe_payment_method_id": ("payment_method_id", "payment_methods", "stripe_payment_method_id"),
    },
    "refunds": {"stripe_charge_id": ("payment_id", "payments", "stripe_charge_id")},
    "disputes": {"stripe_charge_id": ("payment_id", "payments", "stripe_charge_id")},
}


def stripe_id(value: Any) -> str | None:
    """The id of an expandable field, whether Stripe sent the id or the expanded object."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return value.get("id")
    return None


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _currency(value: str | None) -> str:
    return (value or "").upper()


# ---------------------------------------------------------------- catalogue


def map_product(obj: dict) -> Row:
    """product -> tiers row. The tier code is ``metadata.tier``, else the lower-cased name."""
    meta = obj.get("metadata") or {}
    code = (meta.get("tier") or obj.get("name") or obj["id"]).strip().lower()
    rank = meta.get("rank")
    return {
        "stripe_product_id": obj["id"],
        "code": code[:32],
        "name": (obj.get("name") or code.title())[:80],
        "rank": int(rank) if rank not in (None, "") else TIER_RANKS.get(code, 1),
        "created_at": from_epoch(obj.get("created")),
    }


def map_price(obj: dict) -> Row:
    recurring = obj.get("recurring") or {}
    return {
        "stripe_price_id": obj["id"],
        "stripe_product_id": stripe_id(obj.get("product")),
        "currency": _currency(obj.get("currency")),
        "unit_amount": int(obj.get("unit_amount") or 0),
        "interval": recurring.get("interval") or "month",
        "interval_count": int(recurring.get("interval_count") or 1),
        "active": bool(obj.get("active", True)),
        "nickname": obj.get("nickname"),
        "created_at": from_epoch(obj.get("created")),
    }


# ---------------------------------------------------------------- customers


MAX_CUSTOMER_NAME = 256  # Stripe refuses longer names; members.name holds exactly that


def _customer_name(obj: dict) -> str:
    name = obj.get("name") or ""
    if len(name) > MAX_CUSTOMER_NAME:  # not from Stripe as documented: say so rather than cut in silence
        log.warning("customer %s: name of %d characters kept to the first %d", obj.get("id"), len(name),
                    MAX_CUSTOMER_NAME)
        return name[:MAX_CUSTOMER_NAME]
    return name


def map_customer(obj: dict) -> Row:
    """customer -> members row. Phone and address land in encrypted columns (address as JSON)."""
    address = obj.get("address") or None
    address = {k: v for k, v in address.items() if v not in (None, "")} if address else None
    return {
        "stripe_customer_id": obj["id"],
        "email": (obj.get("email") or f"{obj['id']}@customers.invalid").strip().lower(),
        "name": _customer_name(obj),
        "country": (address or {}).get("country"),
        "phone": obj.get("phone") or None,
        "address": json.dumps(address, sort_keys=True) if address else None,
        "created_at": from_epoch(obj.get("created")),
        "stripe_default_payment_method_id": stripe_id(_get(obj, "invoice_settings", "default_payment_method")),
    }


def map_payment_method(obj: dict) -> Row:
    """payment_method -> payment_methods row: brand, last four, expiry, country, funding, wallet.

    Only those named fields are read from ``card``: a number or CVC, even if some caller put one
    there, is never copied."""
    card = obj.get("card") or {}
    billing = obj.get("billing_details") or None
    if billing:
        billing = {k: v for k, v in billing.items() if v not in (None, "", {})} or None
    return {
        "stripe_payment_method_id": obj["id"],
        "stripe_customer_id": stripe_id(obj.get("customer")),
        "type": obj.get("type") or "card",
        "brand": card.get("brand"),
        "last4": card.get("last4"),
        "exp_month": card.get("exp_month"),
        "exp_year": card.get("exp_year"),
        "country": card.get("country"),
        "funding": card.get("funding"),
        "wallet": _get(card, "wallet", "type"),
        "billing_details": billing,
        "created_at": from_epoch(obj.get("created")),
    }


# ---------------------------------------------------------------- subscriptions


def _discount(obj: dict) -> Discount | None:
    """The recurring discount in force: today's ``discounts`` list (expanded objects with
    ``source.coupon``) or the older single ``discount`` with ``coupon``. Unexpanded ids carry no
    coupon, so they map to no discount."""
    candidates: list[Any] = []
    if obj.get("discount"):
        candidates.append(obj["discount"])
    candidates.extend(obj.get("discounts") or [])
    for disc in candidates:
        if not isinstance(disc, dict):
            continue
        coupon = _get(disc, "source", "coupon") or disc.get("coupon")
        if not isinstance(coupon, dict):
            continue
        percent = coupon.get("percent_off")
        return Discount(
            percent_off=Decimal(str(percent)) if percent is not None else None,
            amount_off=coupon.get("amount_off"),
            duration=coupon.get("duration") or "forever",
            end=from_epoch(disc.get("end")),
        )
    return None


def _item_price(item: dict) -> dict:
    price = item.get("price") or item.get("plan") or {}
    return price if isinstance(price, dict) else {"id": price}


def map_subscription_items(obj: dict) -> list[Row]:
    rows = []
    for item in _get(obj, "items", "data") or []:
        price = _item_price(item)
        rows.append({
            "stripe_item_id": item.get("id"),
            "stripe_price_id": price.get("id"),
            "quantity": int(item.get("quantity") or 1),
            # Today's shape keeps the period on each item; the older one on the subscription.
            "current_period_start": from_epoch(item.get("current_period_start", obj.get("current_period_start"))),
            "current_period_end": from_epoch(item.get("current_period_end", obj.get("current_period_end"))),
        })
    return rows


def subscription_mrr_of(obj: dict, at: datetime | None = None) -> int:
    """MRR of a Stripe subscription dict through the one definition in ``core.metrics.subscription_mrr``."""
    items = []
    for item in _get(obj, "items", "data") or []:
        price = _item_price(item)
        recurring = price.get("recurring") or {}
        interval = recurring.get("interval") or price.get("interval")
        if not interval or price.get("unit_amount") is None:
            continue
        items.append(Item(int(price["unit_amount"]), int(item.get("quantity") or 1), interval,
                          int(recurring.get("interval_count") or price.get("interval_count") or 1)))
    return subscription_mrr(items, obj.get("status") or "", pause_behavior=_get(obj, "pause_collection", "behavior"),
                            discount=_discount(obj), at=at)


def churn_kind_of(status: str | None, cancellation_reason: str | None, canceling: bool) -> str | None:
    """Involuntary when Stripe canceled for failed payment; voluntary for any other cancellation."""
    if status != "canceled" and not canceling:
        return None
    return ChurnKind.INVOLUNTARY.value if cancellation_reason == "payment_failed" else ChurnKind.VOLUNTARY.value


def _moments(source: dict, **fields: str) -> Row:
    """Column -> the moment of ``source``'s epoch field named for it (None when absent)."""
    return {column: from_epoch(source.get(field)) for column, field in fields.items()}


def map_subscription(obj: dict, at: datetime | None = None) -> tuple[Row, list[Row]]:
    """subscription -> (subscriptions row, subscription_items rows).

    ``at`` is when this state held (the event's ``created``); it decides whether a discount with
    an end date still reduces MRR."""
    items = map_subscription_items(obj)
    first_item = (_get(obj, "items", "data") or [{}])[0]
    first_price = _item_price(first_item) if first_item else {}
    details = obj.get("cancellation_details") or {}
    pause = obj.get("pause_collection") or {}
    discount = _discount(obj)
    status = obj.get("status") or ""
    canceling = bool(obj.get("cancel_at_period_end") or obj.get("cancel_at"))
    period_start = obj.get("current_period_start", first_item.get("current_period_start") if first_item else None)
    period_end = obj.get("current_period_end", first_item.get("current_period_end") if first_item else None)
    row: Row = {
        "stripe_subscription_id": obj["id"],
        "stripe_customer_id": stripe_id(obj.get("customer")),
        "stripe_price_id": first_price.get("id"),
        "stripe_product_id": stripe_id(first_price.get("product")),
        "stripe_default_payment_method_id": stripe_id(obj.get("default_payment_method")),
        "status": status,
        "currency": _currency(obj.get("currency") or first_price.get("currency")),
        "quantity": int(first_item.get("quantity") or 1) if first_item else 1,
        "mrr_minor": subscription_mrr_of(obj, at),
        "current_period_start": from_epoch(period_start),
        "current_period_end": from_epoch(period_end),
        **_moments(obj, created_at="created", started_at="start_date", trial_start="trial_start",
                   trial_end="trial_end", cancel_at="cancel_at", canceled_at="canceled_at", ended_at="ended_at"),
        "cancel_at_period_end": bool(obj.get("cancel_at_period_end")),
        "cancellation_reason": details.get("reason"),
        "cancellation_feedback": details.get("feedback"),
        "cancellation_comment": details.get("comment"),
        "churn_kind": churn_kind_of(status, details.get("reason"), canceling),
        "pause_behavior": pause.get("behavior"),
        "pause_resumes_at": from_epoch(pause.get("resumes_at")),
        "discount_percent_off": discount.percent_off if discount else None,
        "discount_amount_off": discount.amount_off if discount else None,
        "discount_duration": discount.duration if discount else None,
        "discount_end": discount.end if discount else None,
    }
    return row, items


# ---------------------------------------------------------------- invoices


def invoice_subscription_id(obj: dict) -> str | None:
    return stripe_id(_get(obj, "parent", "subscription_details", "subscription")) or stripe_id(obj.get("subscription"))


def invoice_payment_refs(obj: dict) -> list[str]:
    """Payment intent / charge ids paying this invoice, in either shape."""
    refs: list[str] = []
    for entry in _get(obj, "payments", "data") or []:
        payment = entry.get("payment") or {}
        ref = stripe_id(payment.get("payment_intent")) or stripe_id(payment.get("charge"))
        if ref:
            refs.append(ref)
    for key in ("payment_intent", "charge"):
        ref = stripe_id(obj.get(key))
        if ref and ref not in refs:
            refs.append(ref)
    return refs


def map_invoice_lines(obj: dict) -> list[Row]:
    rows = []
    currency = _currency(obj.get("currency"))
    for line in _get(obj, "lines", "data") or []:
        price = stripe_id(_get(line, "pricing", "price_details", "price")) or stripe_id(line.get("price"))
        parent = line.get("parent") or {}
        proration = _get(parent, "subscription_item_details", "proration")
        if proration is None:
            proration = _get(parent, "invoice_item_details", "proration")
        if proration is None:
            proration = line.get("proration")
        period = line.get("period") or {}
        rows.append({
            "stripe_line_id": line.get("id"),
            "stripe_price_id": price,
            "description": (line.get("description") or None) and line["description"][:500],
            "amount": int(line.get("amount") or 0),
            "currency": _currency(line.get("currency")) or currency,
            "quantity": int(line.get("quantity") or 1),
            "period_start": from_epoch(period.get("start")),
            "period_end": from_epoch(period.get("end")),
            "proration": bool(proration),
        })
    return rows


def map_invoice(obj: dict) -> tuple[Row, list[Row]]:
    """invoice -> (invoices row, invoice_lines rows). The row's ``payment_refs`` (not a column)
    lists the payment intents/charges that pay it, so the store can link payments either way."""
    transitions = obj.get("status_transitions") or {}
    if obj.get("total_taxes") is not None:
        tax = sum(int(t.get("amount") or 0) for t in obj["total_taxes"])
    else:
        tax = int(obj.get("tax") or 0)
    row: Row = {
        "stripe_invoice_id": obj["id"],
        "stripe_customer_id": stripe_id(obj.get("customer")),
        "stripe_subscription_id": invoice_subscription_id(obj),
        "payment_refs": invoice_payment_refs(obj),
        "number": obj.get("number"),
        "status": obj.get("status") or "draft",
        "billing_reason": obj.get("billing_reason"),
        "currency": _currency(obj.get("currency")),
        "tax": tax,
        **{name: int(obj.get(name) or 0)
           for name in ("subtotal", "total", "amount_due", "amount_paid", "amount_remaining", "attempt_count")},
        **_moments(obj, period_start="period_start", period_end="period_end", created_at="created",
                   due_at="due_date"),
        **_moments(transitions, finalized_at="finalized_at", paid_at="paid_at", voided_at="voided_at"),
        "next_payment_attempt_at": from_epoch(obj.get("next_payment_attempt")),
        "hosted_invoice_url": obj.get("hosted_invoice_url"),
    }
    return row, map_invoice_lines(obj)


# ---------------------------------------------------------------- payments


def decline_code_of(obj: dict) -> str | None:
    """Stripe puts an issuer's decline code in ``outcome.reason``; codes such as ``expired_card``
    or ``processing_error`` come as the ``failure_code`` itself."""
    if obj.get("status") != "failed" and not obj.get("failure_code"):
        return None
    reason = _get(obj, "outcome", "reason")
    if reason:
        return reason
    code = obj.get("failure_code")
    return code if code and code != "card_declined" else ("generic_decline" if code else None)


def map_charge(obj: dict) -> Row:
    """charge -> payments row (one payment attempt)."""
    card = _get(obj, "payment_method_details", "card") or {}
    balance = obj.get("balance_transaction")
    return {
        "stripe_charge_id": obj["id"],
        "stripe_payment_intent_id": stripe_id(obj.get("payment_intent")),
        "stripe_customer_id": stripe_id(obj.get("customer")),
        "stripe_invoice_id": stripe_id(obj.get("invoice")),  # older shape only
        "stripe_payment_method_id": stripe_id(obj.get("payment_method")),
        "amount": int(obj.get("amount") or 0),
        "currency": _currency(obj.get("currency")),
        "status": obj.get("status") or "pending",
        "created_at": from_epoch(obj.get("created")),
        "failure_code": obj.get("failure_code"),
        "decline_code": decline_code_of(obj),
        "failure_message": obj.get("failure_message"),
        "card_brand": card.get("brand"),
        "card_country": card.get("country"),
        "card_last4": card.get("last4"),
        "wallet": _get(card, "wallet", "type"),
        "amount_refunded": int(obj.get("amount_refunded") or 0),
        "disputed": bool(obj.get("disputed")),
        "fee": balance.get("fee") if isinstance(balance, dict) else None,
    }


def map_refund(obj: dict) -> Row:
    return {
        "stripe_refund_id": obj["id"],
        "stripe_charge_id": stripe_id(obj.get("charge")),
        "amount": int(obj.get("amount") or 0),
        "currency": _currency(obj.get("currency")),
        "status": obj.get("status") or "pending",
        "reason": obj.get("reason"),
        "created_at": from_epoch(obj.get("created")),
    }


DISPUTE_CLOSED = frozenset({"won", "lost"})


# Not a Stripe field: the close time a backfill found for a dispute (the time of its
# ``charge.dispute.closed`` event), set on the dict before it is applied.
CLOSED_AT_HINT = "memberdesk_closed_at"


def dispute_closed_at(obj: dict, at: datetime | None) -> datetime | None:
    """When a won or lost dispute closed, from Stripe's data (None while open). Stripe's dispute has
    no close timestamp; in order of preference:

    1. a won dispute's reinstatement: the balance transaction giving the amount back is created when
       the dispute closes (the newest positive one in ``balance_transactions``);
    2. the time of the ``charge.dispute.closed`` event a backfill found (``CLOSED_AT_HINT``);
    3. ``at``: the time of the event carrying the closed state (the store keeps the earliest seen);
       a backfill with no event (older than Stripe's 30 days of events) passes the evidence due
       date (``evidence_details.due_by``) instead: the decision came after it, how long after
       Stripe does not say.
    """
    if (obj.get("status") or "") not in DISPUTE_CLOSED:
        return None
    if obj.get("status") == "won":
        back = [t.get("created") for t in obj.get("balance_transactions") or []
                if isinstance(t, dict) and int(t.get("amount") or 0) > 0 and t.get("created")]
        if back:
            return from_epoch(max(back))
    hint = obj.get(CLOSED_AT_HINT)
    if hint is not None:
        return from_epoch(hint)
    return at


def with_close_time(dispute: dict, close_times: dict[str, int]) -> dict:
    """A dispute read outside an event (a backfill, a member resync) with the close time such a read
    can know (see ``dispute_closed_at``): its closed event's time (``close_times``, from the events
    API), else its evidence due date; never the time of our read."""
    if dispute.get("status") not in DISPUTE_CLOSED:
        return dispute
    at = close_times.get(str(dispute.get("id")))
    if at is None:
        at = (dispute.get("evidence_details") or {}).get("due_by") or dispute.get("created")
    return {**dispute, CLOSED_AT_HINT: at}


def map_dispute(obj: dict, at: datetime | None = None) -> Row:
    """dispute -> disputes row; ``closed_at`` by ``dispute_closed_at`` (``at``: the event time)."""
    status = obj.get("status") or "needs_response"
    return {
        "stripe_dispute_id": obj["id"],
        "stripe_charge_id": stripe_id(obj.get("charge")),
        "amount": int(obj.get("amount") or 0),
        "currency": _currency(obj.get("currency")),
        "status": status,
        "reason": obj.get("reason"),
        "created_at": from_epoch(obj.get("created")),
        "closed_at": dispute_closed_at(obj, at),
    }
