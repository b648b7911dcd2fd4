"""What the sandbox stores and answers uses only today's field names (the installed stripe classes)
and Stripe's published enums and error object (the OpenAPI description)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stripe
from stripe._object_classes import OBJECT_CLASSES

from stripe_sandbox.store import SandboxStore
from tests.support.payloads import stripe_fields

SPEC = Path("/work/shared/stripe/spec3-2023-08-16.json")
T0 = 1_780_000_000


def _fields(kind: str) -> set[str]:
    return stripe_fields(kind) | {"deleted"}


def _objects(node, found):
    if isinstance(node, dict):
        kind = node.get("object")
        if isinstance(kind, str) and kind in OBJECT_CLASSES and "id" in node:
            found.setdefault(kind, []).append(node)
        for k, v in node.items():
            if k != "_sandbox":
                _objects(v, found)
    elif isinstance(node, list):
        for v in node:
            _objects(v, found)
    return found


def _busy_world(client: stripe.StripeClient) -> None:
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0})
    cus = client.v1.customers.create(params={"test_clock": clock.id, "email": "s@example.com"})
    prod = client.v1.products.create(params={"name": "Premium"})
    p1 = client.v1.prices.create(params={"product": prod.id, "currency": "gbp", "unit_amount": 1000,
                                         "recurring": {"interval": "month"}})
    p2 = client.v1.prices.create(params={"product": prod.id, "currency": "gbp", "unit_amount": 2500,
                                         "recurring": {"interval": "month"}})
    pm = client.v1.payment_methods.attach("pm_card_visa", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": p1.id}]})
    client.v1.subscriptions.update(sub.id, params={"items": [{"id": sub["items"].data[0].id, "price": p2.id}]})
    client.v1.payment_intents.create(params={"amount": 900, "currency": "gbp", "customer": cus.id,
                                                  "payment_method": "pm_card_createDispute", "confirm": True})
    card = client.v1.payment_intents.create(params={"amount": 900, "currency": "gbp", "customer": cus.id,
                                                    "payment_method": "pm_card_visa", "confirm": True})
    client.v1.refunds.create(params={"payment_intent": card.id, "amount": 100})
    client.v1.invoice_items.create(params={"customer": cus.id, "amount": 300, "currency": "gbp",
                                           "description": "Replacement card"})  # the renewal takes it
    new_pm = client.v1.payment_methods.attach("pm_card_chargeDeclined", params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": new_pm.id}})
    client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": T0 + 50 * 86400})
    client.v1.webhook_endpoints.create(params={"url": "http://127.0.0.1:9/unused", "enabled_events": ["none.x"]})


def test_every_field_is_a_field_of_todays_stripe_objects(sandbox):
    _busy_world(sandbox.client())
    store = SandboxStore(sandbox.state_path)
    found: dict[str, list[dict]] = {}
    for kind in ("customer", "product", "price", "payment_method", "subscription", "invoice", "invoiceitem",
                 "invoice_payment", "payment_intent", "charge", "refund", "dispute", "event",
                 "test_helpers.test_clock", "webhook_endpoint"):
        _objects(store.select(kind), found)
    store.close()
    assert {"subscription_item", "line_item", "dispute", "refund", "invoice_payment"} <= set(found)
    extra = {kind: sorted({k for o in objs for k in o if k != "_sandbox"} - _fields(kind))
             for kind, objs in found.items()}
    assert {k: v for k, v in extra.items() if v} == {}


def test_enums_and_error_object_follow_the_published_description(sandbox):
    spec = json.loads(SPEC.read_text())["components"]["schemas"]
    client = sandbox.client()
    _busy_world(client)
    enums = {("subscription", "status"), ("invoice", "status"), ("invoice", "billing_reason"), ("charge", "status"),
             ("dispute", "status"), ("refund", "reason")}
    store = SandboxStore(sandbox.state_path)
    for kind, field in enums:
        allowed = set(spec[kind]["properties"][field]["enum"]) | {None}
        assert {o.get(field) for o in store.select(kind)} <= allowed, (kind, field)
    store.close()
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(params={"amount": 500, "currency": "usd", "confirm": True,
                                                 "payment_method": "pm_card_chargeDeclinedStolenCard"})
    body = err.value.json_body
    assert set(body) == {"error"}
    assert set(body["error"]) <= set(spec["api_errors"]["properties"])
    assert body["error"]["decline_code"] == "stolen_card"
    page = client.v1.customers.list(params={"limit": 1})
    assert set(page.to_dict()) == {"object", "data", "has_more", "url"}
