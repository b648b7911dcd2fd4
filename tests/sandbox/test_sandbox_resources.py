"""The sandbox over HTTP with the real stripe client: each resource round-trips into stripe objects."""

from __future__ import annotations

import pytest
import stripe

from stripe_sandbox.forms import parse


def _world(client: stripe.StripeClient, card: str = "pm_card_visa", amount: int = 999):
    cus = client.v1.customers.create(params={"email": "ada@example.com", "name": "Ada", "metadata": {"member_id": "42"}})
    prod = client.v1.products.create(params={"name": "Premium"})
    price = client.v1.prices.create(params={"product": prod.id, "currency": "usd", "unit_amount": amount,
                                            "recurring": {"interval": "month"}})
    pm = client.v1.payment_methods.attach(card, params={"customer": cus.id})
    client.v1.customers.update(cus.id, params={"invoice_settings": {"default_payment_method": pm.id}})
    return cus, prod, price, pm


def test_form_encoding_nests_lists_and_dicts():
    got = parse("items[0][price]=p1&items[0][quantity]=2&items[1][id]=si&expand[]=a&expand[]=b"
                "&metadata[k]=&pause_collection=")
    assert got == {"items": [{"price": "p1", "quantity": "2"}, {"id": "si"}], "expand": ["a", "b"],
                   "metadata": {"k": ""}, "pause_collection": ""}


def test_customers_products_prices_round_trip(sandbox):
    client = sandbox.client()
    cus, prod, price, pm = _world(client)
    assert isinstance(cus, stripe.Customer) and cus.metadata["member_id"] == "42"
    assert isinstance(prod, stripe.Product) and isinstance(price, stripe.Price)
    assert price.recurring.interval == "month" and price.unit_amount == 999
    got = client.v1.customers.retrieve(cus.id, params={"expand": ["invoice_settings.default_payment_method"]})
    assert isinstance(got.invoice_settings.default_payment_method, stripe.PaymentMethod)
    updated = client.v1.customers.update(cus.id, params={"name": "Ada L.", "metadata": {"member_id": ""}})
    assert updated.name == "Ada L." and "member_id" not in updated.metadata
    assert [p.id for p in client.v1.prices.list(params={"product": prod.id}).data] == [price.id]
    deleted = client.v1.customers.delete(cus.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(cus.id).deleted is True
    assert client.v1.customers.list().data == []


def test_payment_methods_keep_only_card_facts(sandbox):
    client = sandbox.client()
    cus = client.v1.customers.create()
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {
        "number": "4000002760000016", "exp_month": 4, "exp_year": 2031, "cvc": "123"}})
    assert (pm.card.brand, pm.card.last4, pm.card.country, pm.card.exp_year) == ("visa", "0016", "DE", 2031)
    client.v1.payment_methods.attach(pm.id, params={"customer": cus.id})
    assert [p.id for p in client.v1.customers.payment_methods.list(cus.id).data] == [pm.id]
    detached = client.v1.payment_methods.detach(pm.id)
    assert detached.customer is None
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_methods.create(params={"type": "card", "card": {
            "number": "4242424242424241", "exp_month": 4, "exp_year": 2031}})
    assert err.value.code == "incorrect_number"
    blob = b"".join(p.read_bytes() for p in sandbox.state_path.parent.glob("sandbox.db*"))
    assert b"4000002760000016" not in blob


def test_subscription_invoice_charge_and_refunds(sandbox):
    client = sandbox.client()
    cus, _, price, _ = _world(client)
    sub = client.v1.subscriptions.create(params={"customer": cus.id, "items": [{"price": price.id}],
                                                 "expand": ["latest_invoice.payments"]})
    assert isinstance(sub, stripe.Subscription) and sub.status == "active"
    item = sub["items"].data[0]
    assert item.current_period_end > item.current_period_start
    inv = sub.latest_invoice
    assert isinstance(inv, stripe.Invoice) and inv.status == "paid" and inv.amount_paid == 999
    assert inv.parent.subscription_details.subscription == sub.id
    pay = inv.payments.data[0]
    assert isinstance(pay, stripe.InvoicePayment) and pay.status == "paid"
    charge = client.v1.charges.list(params={"payment_intent": pay.payment.payment_intent}).data[0]
    assert isinstance(charge, stripe.Charge) and charge.payment_method_details.card.last4 == "4242"
    # Stripe's default shapes: payments only when asked for, the balance transaction as an id.
    assert "payments" not in client.v1.invoices.retrieve(inv.id)
    assert client.v1.invoices.retrieve(inv.id, params={"include": ["payments"]}).payments.data[0].id == pay.id
    listed = client.v1.invoices.list(params={"customer": cus.id, "expand": ["data.payments"]}).data[0]
    assert listed.payments.data[0].id == pay.id
    assert isinstance(charge.balance_transaction, str) and charge.balance_transaction.startswith("txn_")
    txn = client.v1.charges.retrieve(charge.id, params={"expand": ["balance_transaction"]}).balance_transaction
    assert isinstance(txn, stripe.BalanceTransaction) and (txn.amount, txn.fee, txn.net) == (999, 59, 940)
    assert txn.source == charge.id
    assert client.v1.balance_transactions.retrieve(txn.id).fee == 59
    page = client.v1.charges.list(params={"customer": cus.id, "expand": ["data.balance_transaction"]})
    assert page.data[0].balance_transaction.fee == 59
    part = client.v1.refunds.create(params={"charge": charge.id, "amount": 400, "reason": "requested_by_customer"})
    assert isinstance(part, stripe.Refund) and part.amount == 400
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 600})
    assert err.value.http_status == 400 and err.value.code == "amount_too_large" and err.value.param == "amount"
    rest = client.v1.refunds.create(params={"payment_intent": charge.payment_intent})
    assert rest.amount == 599
    assert client.v1.charges.retrieve(charge.id).refunded is True
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.refunds.create(params={"charge": charge.id})
    assert err.value.code == "charge_already_refunded"
    assert len(client.v1.refunds.list(params={"charge": charge.id}).data) == 2


def test_declined_payment_intent_and_dispute_card(sandbox):
    client = sandbox.client()
    cus = client.v1.customers.create()
    with pytest.raises(stripe.CardError) as err:
        client.v1.payment_intents.create(params={"amount": 500, "currency": "eur", "customer": cus.id,
                                                 "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
                                                 "confirm": True})
    assert err.value.code == "card_declined" and err.value.http_status == 402
    assert err.value.error.decline_code == "insufficient_funds"
    failed = client.v1.charges.list(params={"customer": cus.id}).data[0]
    assert failed.status == "failed" and failed.outcome.reason == "insufficient_funds"
    assert failed.failure_code == "card_declined"
    pi = client.v1.payment_intents.create(params={"amount": 700, "currency": "eur", "customer": cus.id,
                                                  "payment_method": "pm_card_createDispute", "confirm": True})
    assert pi.status == "succeeded"
    disputes = client.v1.disputes.list(params={"charge": pi.latest_charge}).data
    assert len(disputes) == 1 and isinstance(disputes[0], stripe.Dispute)
    assert disputes[0].status == "needs_response" and disputes[0].amount == 700
    assert client.v1.charges.retrieve(pi.latest_charge).disputed is True


def test_lists_page_newest_first_with_created_filters(sandbox):
    client = sandbox.client()
    ids = [client.v1.customers.create(params={"email": f"m{i}@example.com"}).id for i in range(7)]
    seen = [c.id for c in client.v1.customers.list(params={"limit": 3}).auto_paging_iter()]
    assert seen == list(reversed(ids))
    page = client.v1.customers.list(params={"limit": 2, "starting_after": ids[4]})
    assert [c.id for c in page.data] == [ids[3], ids[2]] and page.has_more
    back = client.v1.customers.list(params={"limit": 2, "ending_before": ids[2]})
    assert [c.id for c in back.data] == [ids[4], ids[3]]
    created = client.v1.customers.retrieve(ids[0]).created
    assert len(client.v1.customers.list(params={"created": {"gte": created}, "limit": 100}).data) == 7
    assert client.v1.customers.list(params={"created": {"lt": created}}).data == []
    events = client.v1.events.list(params={"type": "customer.*", "limit": 100}).data
    assert [e.data.object.id for e in events] == list(reversed(ids))
    assert all(isinstance(e, stripe.Event) for e in events)


def test_errors_have_stripes_shape(sandbox):
    client = sandbox.client()
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.subscriptions.retrieve("sub_missing")
    assert err.value.http_status == 404 and err.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.prices.create(params={"product": "prod_x", "currency": "usd", "unit_amount": 5})
    assert err.value.param == "product"
    wrong = stripe.StripeClient("sk_test_wrong_key_123456", base_addresses={"api": sandbox.url})
    with pytest.raises(stripe.AuthenticationError) as err:
        wrong.v1.customers.list()
    assert err.value.http_status == 401


def test_unknown_parameters_are_refused_like_stripe(sandbox):
    client = sandbox.client()
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.customers.create(params={"emial": "typo@example.com"})
    assert err.value.code == "parameter_unknown" and err.value.param == "emial"
    assert client.v1.customers.list().data == []


def _stringify(value):
    if isinstance(value, dict):
        return {k: _stringify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify(v) for v in value]
    return str(value)


def test_form_decoding_inverts_the_stripe_librarys_encoding():
    from urllib.parse import urlencode

    from hypothesis import given, settings
    from hypothesis import strategies as st
    from stripe._encode import _api_encode

    keys = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
    leaves = st.one_of(st.integers(-5, 10**6), st.text(alphabet="xyz é&=[]", min_size=1, max_size=5))
    values = st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3), st.dictionaries(keys, inner, min_size=1, max_size=3)),
        max_leaves=8)

    @settings(max_examples=150, deadline=None)
    @given(st.dictionaries(keys, values, min_size=1, max_size=4))
    def check(params):
        assert parse(urlencode(list(_api_encode(params)))) == _stringify(params)

    check()
