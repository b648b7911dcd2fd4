"""Stripe writes for manual membership changes (and the reads that prove a write happened).

Guarantees:
- every write carries ``options={"idempotency_key": idempotency_key(request_key)}`` derived from
  our ``change_requests.idempotency_key``, and ``metadata.memberdesk_request`` = that key where
  the object takes metadata, so a retry is answered with the first result and a lost answer can
  be found again (``find_*``);
- every call runs inside ``translate_errors()``: callers only ever see ``GatewayError``;
- results are plain dicts (``to_dict()``), ready for the mapping layer.
"""

from __future__ import annotations

from typing import Any

from core.stripe_gateway.errors import idempotency_key, translate_errors

META_KEY = "memberdesk_request"
# Stripe's own refund reasons; anything else we record ourselves and send as requested_by_customer.
STRIPE_REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")


def stripe_refund_reason(reason: str | None) -> str:
    """Our refund reason as Stripe's enum: its own three pass through, every other reason (goodwill,
    a service outage, a billing error, none) is the member's request as far as Stripe is concerned."""
    return reason if reason in STRIPE_REFUND_REASONS else "requested_by_customer"


def _opts(key: str) -> dict[str, Any]:
    return {"idempotency_key": idempotency_key(key)}


def _dict(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


# ----------------------------------------------------------------- reads used by previews and recovery

def retrieve_customer(client: Any, customer_id: str) -> dict[str, Any]:
    with translate_errors():
        return _dict(client.v1.customers.retrieve(customer_id))


# A subscription write (and the reads that find one) answers with its latest invoice and the
# invoice's payments (includable: absent unless asked for), in the same request: what Stripe
# invoiced because of the write (a proration charged now, a new membership's first invoice) is
# then stored with the change, not first by its webhooks (core/changes/created.py).
SUBSCRIPTION_EXPAND = ["latest_invoice.payments"]


def retrieve_subscription(client: Any, subscription_id: str) -> dict[str, Any]:
    """The subscription, its ``latest_invoice`` expanded with the invoice's payments."""
    with translate_errors():
        return _dict(client.v1.subscriptions.retrieve(subscription_id, {"expand": SUBSCRIPTION_EXPAND}))


def retrieve_charge(client: Any, charge_id: str) -> dict[str, Any]:
    with translate_errors():
        # The fee is on the balance transaction, an id unless expanded.
        return _dict(client.v1.charges.retrieve(charge_id, {"expand": ["balance_transaction"]}))


def retrieve_invoice(client: Any, invoice_id: str) -> dict[str, Any]:
    with translate_errors():
        # ``payments`` is includable: absent unless expanded, and the mirror links payments through it.
        return _dict(client.v1.invoices.retrieve(invoice_id, {"expand": ["payments"]}))


def charges_of(client: Any, payment_refs: list[str]) -> list[dict[str, Any]]:
    """The charges of these payment intents (or these charges), each with its balance transaction
    (the fee), as the mirror stores them: one read per reference. An invoice names its payments by
    payment intent; reaching the charge in the write's own answer would take an expansion deeper
    than Stripe's four levels (``latest_invoice.payments.data.payment.payment_intent.latest_charge``)."""
    found: list[dict[str, Any]] = []
    with translate_errors():
        for ref in payment_refs:
            if ref.startswith("ch_"):
                found.append(_dict(client.v1.charges.retrieve(ref, {"expand": ["balance_transaction"]})))
                continue
            page = client.v1.charges.list({"payment_intent": ref, "limit": 100, "expand": ["data.balance_transaction"]})
            found += [_dict(c) for c in page.auto_paging_iter()]
    return found


def preview_price_change(client: Any, *, customer_id: str, subscription_id: str, item_id: str, price_id: str,
                         proration_behavior: str, proration_date: int) -> dict[str, Any]:
    """Stripe's invoice preview of switching ``item_id`` to ``price_id`` (nothing is changed)."""
    params: dict[str, Any] = {
        "customer": customer_id,
        "subscription": subscription_id,
        "subscription_details": {
            "items": [{"id": item_id, "price": price_id}],
            "proration_behavior": proration_behavior,
            "proration_date": proration_date,
        },
    }
    with translate_errors():
        return _dict(client.v1.invoices.create_preview(params))


def preview_new_subscription(client: Any, *, customer_id: str, price_id: str) -> dict[str, Any]:
    with translate_errors():
        return _dict(client.v1.invoices.create_preview(
            {"customer": customer_id, "subscription_details": {"items": [{"price": price_id}]}}))


# ----------------------------------------------------------------- writes

def update_customer(client: Any, customer_id: str, fields: dict[str, Any], *, key: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in ("email", "name", "phone"):
        if name in fields:
            params[name] = fields[name] or ""
    if "address" in fields:
        params["address"] = fields["address"] or ""
    with translate_errors():
        return _dict(client.v1.customers.update(customer_id, params, options=_opts(key)))


def customer_matches(customer: dict[str, Any], fields: dict[str, Any]) -> bool:
    for name in ("email", "name", "phone"):
        if name in fields and (customer.get(name) or None) != (fields[name] or None):
            return False
    if "address" in fields:
        theirs = {k: v for k, v in (customer.get("address") or {}).items() if v}
        if theirs != (fields["address"] or {}):
            return False
    return True


# A refund comes back with its charge as it is after the refund (and the charge's fee), so the
# caller records both without reading the charge again.
REFUND_EXPAND = ["charge", "charge.balance_transaction"]


def refund(client: Any, *, charge_id: str, amount: int, reason: str | None, key: str) -> dict[str, Any]:
    """The refund, its ``charge`` expanded (with the balance transaction)."""
    params: dict[str, Any] = {"charge": charge_id, "amount": amount, "reason": stripe_refund_reason(reason),
                              "metadata": {META_KEY: key}, "expand": REFUND_EXPAND}
    with translate_errors():
        return _dict(client.v1.refunds.create(params, options=_opts(key)))


def find_refund(client: Any, *, charge_id: str, key: str) -> dict[str, Any] | None:
    """The refund made with ``key`` on the charge, its ``charge`` expanded like ``refund``'s, or None."""
    expand = [f"data.{path}" for path in REFUND_EXPAND]
    with translate_errors():
        for r in client.v1.refunds.list({"charge": charge_id, "limit": 100, "expand": expand}).auto_paging_iter():
            refund = _dict(r)
            if (refund.get("metadata") or {}).get(META_KEY) == key:
                return refund
    return None


def update_subscription(client: Any, subscription_id: str, params: dict[str, Any], *, key: str) -> dict[str, Any]:
    """The subscription after the update, its ``latest_invoice`` expanded with its payments."""
    with translate_errors():
        return _dict(client.v1.subscriptions.update(subscription_id, params | {"expand": SUBSCRIPTION_EXPAND},
                                                    options=_opts(key)))


def cancel_subscription(client: Any, subscription_id: str, *, comment: str, feedback: str | None,
                        key: str) -> dict[str, Any]:
    details: dict[str, Any] = {"comment": comment[:500]}
    if feedback:
        details["feedback"] = feedback
    with translate_errors():
        return _dict(client.v1.subscriptions.cancel(subscription_id, {"cancellation_details": details},
                                                    options=_opts(key)))


def create_subscription(client: Any, *, customer_id: str, price_id: str, key: str) -> dict[str, Any]:
    """A new subscription, paid now or not created at all (``error_if_incomplete``)."""
    params = {"customer": customer_id, "items": [{"price": price_id}], "metadata": {META_KEY: key},
              "payment_behavior": "error_if_incomplete", "expand": SUBSCRIPTION_EXPAND}
    with translate_errors():
        return _dict(client.v1.subscriptions.create(params, options=_opts(key)))


def find_subscription(client: Any, *, customer_id: str, key: str) -> dict[str, Any] | None:
    with translate_errors():
        subs = client.v1.subscriptions.list({"customer": customer_id, "status": "all", "limit": 100,
                                             "expand": [f"data.{path}" for path in SUBSCRIPTION_EXPAND]})
        for s in subs.auto_paging_iter():
            sub = _dict(s)
            if (sub.get("metadata") or {}).get(META_KEY) == key:
                return sub
    return None


def pay_invoice(client: Any, invoice_id: str, *, key: str) -> dict[str, Any]:
    with translate_errors():
        return _dict(client.v1.invoices.pay(invoice_id, {"expand": ["payments"]}, options=_opts(key)))
