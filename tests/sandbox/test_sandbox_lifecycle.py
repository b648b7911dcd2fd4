"""Subscriptions through test clocks: renewals, failed renewals with retries and the final cancel,
trials, pauses, cancel at period end, proration previews that match the real change."""

from __future__ import annotations

import pytest
import stripe

T0 = 1_780_000_000  # 2026-05-28 20:26:40 UTC
DAY = 86400


def _setup(client: stripe.StripeClient, card: str = "pm_card_visa", **sub_params):
    clock = client.v1.test_helpers.test_clocks.create(params={"frozen_time": T0, "name": "t"})
    cus = client.v1.customers.create(params={"email": "c@example.com", "test_clock": clock.id})
    prod = client.v1.products.create(params={"name": "Premium"})
    price = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": 1000,
                                            "recurring": {"interval": "month"}})
    pm = client.v1.payment_methods.attach(card, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}], **sub_params})
    return clock, cus, price, sub


def _advance(client, clock, to):
    return client.v1.test_helpers.test_clocks.advance(clock.id, params={"frozen_time": to})


def _switch_card(client, cus, card):
    pm = client.v1.payment_methods.attach(card, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})


def _events(client, cus_id=None, types=None):
    params = {"limit": 100}
    if types:
        params["types"] = types
    events = list(client.v1.events.list(params=params).auto_paging_iter())
    return [e for e in reversed(events)]


def test_renewal_charges_the_card_at_the_clock_time(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    assert sub.status == "active" and sub.created == T0
    end = sub["items"].data[0].current_period_end
    assert end == 1_782_678_400  # one calendar month later, same time of day
    _advance(client, clock, end + 3600)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active"
    assert sub["items"].data[0].current_period_start == end
    invoices = client.v1.invoices.list(params={"subscription": sub.id}).data
    assert [i.billing_reason for i in invoices] == ["subscription_cycle", "subscription_create"]
    assert invoices[0].status == "paid" and invoices[0].amount_paid == 1000 and invoices[0].created == end
    paid = [e for e in _events(client, types=["invoice.paid"])]
    assert [e.created for e in paid] == [T0, end]


def test_failed_renewal_retries_then_cancels(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    _switch_card(client, cus, "pm_card_chargeDeclinedInsufficientFunds")
    end = sub["items"].data[0].current_period_end
    _advance(client, clock, end + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "past_due"
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert (inv.status, inv.attempt_count, inv.next_payment_attempt) == ("open", 1, end + 3 * DAY)
    _advance(client, clock, end + 6 * DAY)
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.attempt_count, inv.next_payment_attempt) == (3, end + 7 * DAY)
    assert client.v1.subscriptions.retrieve(sub.id).status == "past_due"
    _advance(client, clock, end + 8 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.cancellation_details.reason == "payment_failed"
    assert sub.ended_at == end + 7 * DAY
    inv = client.v1.invoices.retrieve(inv.id)
    assert (inv.status, inv.attempt_count, inv.next_payment_attempt) == ("open", 4, None)
    failed = client.v1.charges.list(params={"customer": cus.id, "limit": 100}).data
    declined = [c for c in failed if c.status == "failed"]
    assert len(declined) == 4
    assert {(c.failure_code, c.outcome.reason) for c in declined} == {("card_declined", "insufficient_funds")}
    types = [e.type for e in _events(client, types=["invoice.payment_failed", "customer.subscription.updated",
                                                    "customer.subscription.deleted"])]
    assert types.count("invoice.payment_failed") == 4
    assert types[-1] == "customer.subscription.deleted"
    updated = [e for e in _events(client, types=["customer.subscription.updated"])
               if "status" in (e.data.to_dict().get("previous_attributes") or {})]
    assert [(e.data.previous_attributes["status"], e.data.object.status) for e in updated] == [("active", "past_due")]
    assert updated[0].created == end
    assert client.v1.subscriptions.list(params={"customer": cus.id}).data == []
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": cus.id, "status": "all"}).data] == [sub.id]


def test_hard_decline_is_not_retried(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    _switch_card(client, cus, "pm_card_chargeDeclinedLostCard")
    end = sub["items"].data[0].current_period_end
    _advance(client, clock, end + 10 * DAY)
    inv = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert inv.attempt_count == 1
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == end + 7 * DAY


def test_retry_now_with_a_new_card_recovers(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    _switch_card(client, cus, "pm_card_chargeDeclined")
    end = sub["items"].data[0].current_period_end
    _advance(client, clock, end + 60)
    inv_id = client.v1.subscriptions.retrieve(sub.id).latest_invoice
    with pytest.raises(stripe.CardError) as err:
        client.v1.invoices.pay(inv_id)
    assert err.value.error.decline_code == "generic_decline"
    _switch_card(client, cus, "pm_card_mastercard")
    inv = client.v1.invoices.pay(inv_id)
    assert inv.status == "paid" and inv.attempt_count == 3
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"
    _advance(client, clock, end + 10 * DAY)  # no retries, no cancel left over
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"


def test_trial_ends_into_active_or_past_due(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client, trial_period_days=14)
    assert sub.status == "trialing" and sub.trial_end == T0 + 14 * DAY
    first = client.v1.invoices.retrieve(sub.latest_invoice)
    assert first.amount_due == 0 and first.status == "paid"
    _advance(client, clock, T0 + 15 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "active" and client.v1.invoices.retrieve(sub.latest_invoice).amount_paid == 1000

    clock2, cus2, _, sub2 = _setup(client, trial_period_days=7)
    _switch_card(client, cus2, "pm_card_chargeDeclinedExpiredCard")
    _advance(client, clock2, T0 + 8 * DAY)
    assert client.v1.subscriptions.retrieve(sub2.id).status == "past_due"


def test_pause_collection_voids_renewals_then_resumes(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    end = sub["items"].data[0].current_period_end
    sub = client.v1.subscriptions.update(sub.id, params={
        "pause_collection": {"behavior": "void", "resumes_at": end + 5 * DAY}})
    assert sub.pause_collection.behavior == "void" and sub.status == "active"
    _advance(client, clock, end + 6 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.pause_collection is None and sub.status == "active"
    assert client.v1.invoices.retrieve(sub.latest_invoice).status == "void"
    sub = client.v1.subscriptions.update(sub.id, params={"pause_collection": {"behavior": "keep_as_draft"}})
    sub = client.v1.subscriptions.update(sub.id, params={"pause_collection": ""})
    assert sub.pause_collection is None


def test_cancel_at_period_end_and_immediate_cancel(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    end = sub["items"].data[0].current_period_end
    sub = client.v1.subscriptions.update(sub.id, params={"cancel_at_period_end": True})
    assert sub.cancel_at_period_end and sub.cancel_at == end and sub.status == "active"
    _advance(client, clock, end + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "canceled" and sub.ended_at == end
    assert sub.cancellation_details.reason == "cancellation_requested"
    assert len(client.v1.invoices.list(params={"subscription": sub.id}).data) == 1

    _, _, _, other = _setup(client)
    gone = client.v1.subscriptions.cancel(other.id, params={
        "cancellation_details": {"comment": "moved abroad", "feedback": "unused"}})
    assert gone.status == "canceled" and gone.cancellation_details.comment == "moved abroad"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.subscriptions.cancel(other.id)


def test_price_change_preview_matches_the_change(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    platinum = client.v1.prices.create(params={"product": price.product, "currency": "usd", "unit_amount": 3000,
                                               "recurring": {"interval": "month"}})
    item = sub["items"].data[0]
    half = (item.current_period_start + item.current_period_end) // 2
    _advance(client, clock, half)
    change = {"items": [{"id": item.id, "price": platinum.id}], "proration_date": half}
    preview = client.v1.invoices.create_preview(params={
        "customer": cus.id, "subscription": sub.id,
        "subscription_details": {**change, "proration_behavior": "always_invoice"}})
    assert preview.amount_due == 1000  # half a month: -500 credit + 1500 charge
    assert sorted(line.amount for line in preview.lines.data) == [-500, 1500]
    next_preview = client.v1.invoices.create_preview(params={
        "customer": cus.id, "subscription": sub.id, "subscription_details": change})
    assert next_preview.amount_due == 1000 + 3000
    assert client.v1.subscriptions.retrieve(sub.id)["items"].data[0].price.id == price.id  # nothing applied
    updated = client.v1.subscriptions.update(sub.id, params={**change, "proration_behavior": "always_invoice"})
    inv = client.v1.invoices.retrieve(updated.latest_invoice)
    assert inv.amount_paid == preview.amount_due and inv.billing_reason == "subscription_update"
    assert updated["items"].data[0].price.id == platinum.id


def test_invoice_lines_page_beyond_ten(sandbox):
    from stripe_sandbox.store import SandboxStore

    lines = [{"id": f"il_{i:03d}", "object": "line_item", "amount": 100, "currency": "usd"} for i in range(25)]
    inv = {"id": "in_many", "object": "invoice", "created": T0, "customer": "cus_x", "status": "paid",
           "lines": {"object": "list", "data": lines, "has_more": False, "url": "/v1/invoices/in_many/lines"}}
    SandboxStore(sandbox.state_path).import_objects([inv])
    client = sandbox.client()
    got = client.v1.invoices.retrieve("in_many")
    assert len(got.lines.data) == 10 and got.lines.has_more
    all_lines = list(client.v1.invoices.line_items.list("in_many", params={"limit": 10}).auto_paging_iter())
    assert [line.id for line in all_lines] == [line["id"] for line in lines]


def test_after_retries_unpaid_keeps_invoicing_without_charging(sandbox):
    client = sandbox.client()
    sandbox.after_retries("unpaid")
    clock, cus, price, sub = _setup(client)
    _switch_card(client, cus, "pm_card_chargeDeclinedInsufficientFunds")
    end = sub["items"].data[0].current_period_end
    _advance(client, clock, end + 8 * DAY)
    sub = client.v1.subscriptions.retrieve(sub.id)
    assert sub.status == "unpaid"
    next_end = sub["items"].data[0].current_period_end
    _advance(client, clock, next_end + 60)
    sub = client.v1.subscriptions.retrieve(sub.id)
    latest = client.v1.invoices.retrieve(sub.latest_invoice)
    assert sub.status == "unpaid" and latest.status == "open" and latest.attempt_count == 0


def test_incomplete_then_paid_or_expired(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client, card="pm_card_chargeDeclined")
    assert sub.status == "incomplete"
    inv = client.v1.invoices.retrieve(sub.latest_invoice)
    assert inv.status == "open" and inv.attempt_count == 1
    _switch_card(client, cus, "pm_card_visa")
    client.v1.invoices.pay(inv.id)
    assert client.v1.subscriptions.retrieve(sub.id).status == "active"

    clock2, cus2, _, sub2 = _setup(client, card="pm_card_chargeDeclined")
    with pytest.raises(stripe.CardError):
        client.v1.subscriptions.create(params={"customer": cus2.id, "items": [{"price": price.id}],
                                               "payment_behavior": "error_if_incomplete"})
    assert [s.id for s in client.v1.subscriptions.list(params={"customer": cus2.id, "status": "all"}).data] == [sub2.id]
    _advance(client, clock2, T0 + DAY)
    sub2 = client.v1.subscriptions.retrieve(sub2.id)
    assert sub2.status == "incomplete_expired"
    assert client.v1.invoices.retrieve(sub2.latest_invoice).status == "void"


def test_trial_will_end_three_days_before(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client, trial_period_days=10)
    _advance(client, clock, T0 + 8 * DAY)
    warned = _events(client, types=["customer.subscription.trial_will_end"])
    assert [(e.data.object.id, e.created) for e in warned] == [(sub.id, T0 + 7 * DAY)]
    assert client.v1.subscriptions.retrieve(sub.id).status == "trialing"


def test_downgrade_credit_goes_to_the_balance_and_lowers_the_next_invoice(sandbox):
    client = sandbox.client()
    clock, cus, price, sub = _setup(client)
    basic = client.v1.prices.create(params={"product": price.product, "currency": "usd", "unit_amount": 400,
                                            "recurring": {"interval": "month"}})
    item = sub["items"].data[0]
    half = (item.current_period_start + item.current_period_end) // 2
    _advance(client, clock, half)
    updated = client.v1.subscriptions.update(sub.id, params={
        "items": [{"id": item.id, "price": basic.id}], "proration_behavior": "always_invoice", "proration_date": half})
    now_inv = client.v1.invoices.retrieve(updated.latest_invoice)
    assert now_inv.total == -300 and now_inv.amount_due == 0 and now_inv.status == "paid"
    assert client.v1.customers.retrieve(cus.id).balance == -300
    preview = client.v1.invoices.create_preview(params={"subscription": sub.id})
    assert preview.total == 400 and preview.amount_due == 100
    _advance(client, clock, item.current_period_end + 60)
    renewal = client.v1.invoices.retrieve(client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (renewal.amount_paid, renewal.starting_balance, renewal.ending_balance) == (100, -300, 0)
    assert client.v1.customers.retrieve(cus.id).balance == 0
