"""Stripe objects and events as tests feed them to the mapping, the store and the webhook receiver.

- ``PRODUCT``, ``PRICE``, ``CUSTOMER``, ``PM``, ``CHARGE_FAILED`` and ``new_subscription()``/
  ``new_invoice()`` (today's API shape) or ``old_subscription()``/``old_invoice()`` (an older one):
  one member's objects, in February 2026 (``T0``, ``T1``: epoch seconds).
- ``backfill_order(members)``: the demo world's objects, parents first, as a backfill lists them;
  ``pages(objects)``: cut into pages of one type.
- ``stripe_fields(kind)``: the fields the pinned ``stripe`` library's class for an object kind
  declares (what a sandbox answer may hold).
- ``WEBHOOK_SECRET`` and ``sign(payload, secret, timestamp)``: a ``Stripe-Signature`` header
  computed with ``hmac`` as Stripe documents it (not with our own signer).
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
from datetime import UTC, datetime
from typing import Any

from stripe._object_classes import OBJECT_CLASSES

from demo import iter_stripe_objects
from demo.world import World

T0 = 1767225600  # 2026-01-01 00:00 UTC
T1 = T0 + 31 * 86400  # 2026-02-01

PRICE = {"id": "price_pm", "object": "price", "product": "prod_p", "currency": "usd", "unit_amount": 999,
         "recurring": {"interval": "month", "interval_count": 1}, "active": True, "created": T0}


def new_subscription(**over: object) -> dict:
    sub = {
        "id": "sub_1", "object": "subscription", "customer": "cus_1", "status": "active", "currency": "usd",
        "created": T0, "start_date": T0, "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None,
        "ended_at": None, "trial_start": None, "trial_end": None, "default_payment_method": "pm_1",
        "cancellation_details": {"reason": None, "feedback": None, "comment": None},
        "pause_collection": None, "discounts": [],
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item", "price": PRICE,
                                              "quantity": 1, "current_period_start": T0,
                                              "current_period_end": T1}]},
    }
    sub.update(over)
    return sub


def old_subscription(**over: object) -> dict:
    sub = new_subscription(**over)
    item = sub["items"]["data"][0]
    sub["current_period_start"] = item.pop("current_period_start")
    sub["current_period_end"] = item.pop("current_period_end")
    if sub.get("discounts"):
        disc = sub.pop("discounts")[0]
        sub["discount"] = {"id": disc["id"], "coupon": disc["source"]["coupon"], "end": disc.get("end")}
    else:
        sub.pop("discounts")
        sub["discount"] = None
    return sub


def new_invoice(**over: object) -> dict:
    inv = {
        "id": "in_1", "object": "invoice", "customer": "cus_1", "status": "paid", "currency": "usd",
        "billing_reason": "subscription_cycle", "number": "A-0001", "subtotal": 999, "total": 999,
        "total_taxes": [], "amount_due": 999, "amount_paid": 999, "amount_remaining": 0,
        "period_start": T0, "period_end": T1, "created": T1, "attempt_count": 2, "next_payment_attempt": None,
        "status_transitions": {"finalized_at": T1, "paid_at": T1 + 3 * 86400, "voided_at": None},
        "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_1"}},
        "payments": {"object": "list", "data": [{"object": "invoice_payment", "payment": {
            "type": "payment_intent", "payment_intent": "pi_1"}}]},
        "lines": {"object": "list", "data": [{
            "id": "il_1", "object": "line_item", "amount": 999, "currency": "usd", "quantity": 1,
            "description": "1 x Premium", "period": {"start": T1, "end": T1 + 28 * 86400},
            "pricing": {"type": "price_details", "price_details": {"price": "price_pm", "product": "prod_p"}},
            "parent": {"type": "subscription_item_details",
                       "subscription_item_details": {"proration": False, "subscription_item": "si_1"}}}]},
    }
    inv.update(over)
    return inv


def old_invoice() -> dict:
    inv = new_invoice()
    del inv["parent"], inv["payments"], inv["total_taxes"]
    inv["subscription"] = "sub_1"
    inv["charge"] = "ch_1"
    inv["payment_intent"] = "pi_1"
    inv["tax"] = 0
    line = inv["lines"]["data"][0]
    del line["pricing"], line["parent"]
    line["price"] = PRICE
    line["proration"] = False
    return inv


CHARGE_FAILED = {
    "id": "ch_2", "object": "charge", "amount": 999, "currency": "usd", "customer": "cus_1", "status": "failed",
    "created": T1, "payment_intent": "pi_1", "payment_method": "pm_1", "failure_code": "card_declined",
    "failure_message": "Your card has insufficient funds.",
    "outcome": {"type": "issuer_declined", "reason": "insufficient_funds", "network_status": "declined_by_network"},
    "payment_method_details": {"type": "card", "card": {"brand": "visa", "country": "GB", "last4": "9995",
                                                        "exp_month": 4, "exp_year": 2027,
                                                        "wallet": {"type": "apple_pay"}}},
    "amount_refunded": 0, "disputed": False, "refunded": False, "balance_transaction": None,
}


PRODUCT = {"id": "prod_p", "object": "product", "name": "Premium", "metadata": {"tier": "premium"}, "created": 0}
CUSTOMER = {"id": "cus_1", "object": "customer", "email": "Ann@Example.com", "name": "Ann", "phone": "+1 555",
            "address": {"country": "US", "city": "Austin"}, "created": 1700000000,
            "invoice_settings": {"default_payment_method": "pm_1"}}
PM = {"id": "pm_1", "object": "payment_method", "type": "card", "customer": "cus_1", "created": 1700000000,
      "billing_details": {"name": "Ann"},
      "card": {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2027, "country": "US", "funding": "credit"}}

BACKFILL_NOW = datetime(2026, 11, 27, tzinfo=UTC)
ORDER = ("product", "price", "customer", "payment_method", "subscription", "charge", "invoice", "refund", "dispute")


def backfill_order(members: int, seed: int = 5) -> list[dict[str, Any]]:
    """The demo world's objects grouped by type, parents first, as a backfill lists them."""
    objects = list(iter_stripe_objects(World(seed=seed, members=members, now=BACKFILL_NOW)))
    return sorted((o for o in objects if o.get("object") in ORDER), key=lambda o: ORDER.index(o["object"]))


def pages(objects: list[dict[str, Any]], size: int = 100) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    for obj in objects:
        if not out or len(out[-1]) == size or out[-1][0]["object"] != obj["object"]:
            out.append([])
        out[-1].append(obj)
    return out


WEBHOOK_SECRET = "whsec_" + "5e" * 16


def sign(payload: str, secret: str, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def stripe_fields(kind: str) -> set[str]:
    """The fields the ``stripe`` library's class for ``kind`` (and its bases) declares."""
    module, name = OBJECT_CLASSES[kind]
    cls = getattr(importlib.import_module(module), name)
    out: set[str] = set()
    for c in cls.__mro__:
        out |= set(getattr(c, "__annotations__", {}))
    return out
