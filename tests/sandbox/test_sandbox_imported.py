"""Objects bulk-imported with only the fields Memberdesk reads are served in full shape and go
through the dashboard's actions (change price with a preview, refund, retry an invoice, cancel)."""

from __future__ import annotations

import time

import stripe

from stripe_sandbox.store import SandboxStore

DAY = 86400


def _partial_world(now: int) -> list[dict]:
    start, end = now - 10 * DAY, now + 20 * DAY
    price = {"id": "price_imp_m", "object": "price", "product": "prod_imp", "currency": "eur", "unit_amount": 1200,
             "type": "recurring", "recurring": {"interval": "month", "interval_count": 1}, "created": now - 400 * DAY}
    gold = {**price, "id": "price_imp_gold",
            "unit_amount": 3000}
    return [
        {"id": "prod_imp", "object": "product", "name": "Premium", "created": now - 400 * DAY},
        price, gold,
        {"id": "cus_imp", "object": "customer", "created": now - 100 * DAY, "email": "imp@example.com",
         "invoice_settings": {"default_payment_method": "pm_imp"}},
        {"id": "pm_imp", "object": "payment_method", "type": "card", "customer": "cus_imp", "created": now - 100 * DAY,
         "card": {"brand": "visa", "last4": "4242", "exp_month": 1, "exp_year": 2030, "country": "DE"}},
        {"id": "sub_imp", "object": "subscription", "customer": "cus_imp", "status": "past_due", "currency": "eur",
         "created": now - 100 * DAY,
         "items": {"object": "list", "data": [{"id": "si_imp", "object": "subscription_item", "price": price,
                                                "quantity": 1, "current_period_start": start,
                                                "current_period_end": end}]}},
        {"id": "in_imp_open", "object": "invoice", "customer": "cus_imp", "status": "open", "currency": "eur",
         "created": start, "billing_reason": "subscription_cycle", "amount_due": 1200, "amount_paid": 0,
         "amount_remaining": 1200, "attempt_count": 2, "subtotal": 1200, "total": 1200,
         "parent": {"type": "subscription_details", "subscription_details": {"subscription": "sub_imp"}}},
        {"id": "pi_imp", "object": "payment_intent", "amount": 1200, "currency": "eur", "customer": "cus_imp",
         "status": "succeeded", "created": start - 30 * DAY},
        {"id": "ch_imp", "object": "charge", "amount": 1200, "currency": "eur", "customer": "cus_imp",
         "status": "succeeded", "payment_intent": "pi_imp", "created": start - 30 * DAY, "amount_refunded": 0},
    ]


def test_imported_partial_objects_work_through_actions(sandbox):
    now = int(time.time())
    store = SandboxStore(sandbox.state_path)
    store.import_objects(_partial_world(now))
    store.close()
    client = sandbox.client()
    sub = client.v1.subscriptions.retrieve("sub_imp")
    assert isinstance(sub, stripe.Subscription) and sub.cancel_at_period_end is False
    pm = client.v1.payment_methods.retrieve("pm_imp")
    assert pm.card.fingerprint and pm.card.last4 == "4242"

    paid = client.v1.invoices.pay("in_imp_open")
    assert paid.status == "paid" and paid.attempt_count == 3
    assert client.v1.subscriptions.retrieve("sub_imp").status == "active"

    refund = client.v1.refunds.create(params={"charge": "ch_imp", "amount": 200})
    assert refund.amount == 200 and client.v1.charges.retrieve("ch_imp").amount_refunded == 200

    change = {"items": [{"id": "si_imp", "price": "price_imp_gold"}], "proration_date": now,
              "proration_behavior": "always_invoice"}
    preview = client.v1.invoices.create_preview(params={"subscription": "sub_imp", "subscription_details": change})
    assert 0 < preview.amount_due < 3000 - 1200 + 1
    updated = client.v1.subscriptions.update("sub_imp", params=change)
    assert client.v1.invoices.retrieve(updated.latest_invoice).amount_paid == preview.amount_due

    canceled = client.v1.subscriptions.cancel("sub_imp")
    assert canceled.status == "canceled"


def test_imported_card_charges_like_the_test_card_with_its_last_four(sandbox):
    now = int(time.time())
    world = _partial_world(now)
    for obj in world:
        if obj["id"] == "pm_imp":
            obj["card"]["last4"] = "9995"
    store = SandboxStore(sandbox.state_path)
    store.import_objects(world)
    store.close()
    client = sandbox.client()
    try:
        client.v1.invoices.pay("in_imp_open")
    except stripe.CardError as exc:
        assert exc.error.decline_code == "insufficient_funds"
    else:
        raise AssertionError("expected a decline")
    inv = client.v1.invoices.retrieve("in_imp_open")
    assert inv.status == "open" and inv.attempt_count == 3
