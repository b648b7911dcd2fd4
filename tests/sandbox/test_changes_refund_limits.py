"""Refund limits and the four-eyes threshold cannot be split: they count what the payment (and the
member, within the limits' window) already had refunded. Against the sandbox over HTTP with the
real client; Stripe's own ``amount_refunded`` is the proof of what left the account.

The default limits make approval reachable: support may refund more than the approval amount,
and the demo sells payments above it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from core.changes import (
    REASONS,
    Actor,
    ChangeInput,
    ChangeRefused,
    decide,
    load_limits,
    preview,
    save_limits,
    submit,
    withdraw,
)
from core.changes.limits import DEFAULTS, Approval, Limits, approval_for
from core.db import session_scope
from core.models import Member, Payment
from core.money import SUPPORTED_CURRENCIES
from core.settings.business import save_rate
from demo.catalogue import PRICES
from tests.support.changes_world import mirror, version

SUPPORT = Actor.of("sam", ["support"])
MANAGER = Actor.of("mia", ["manager"])
FINANCE = Actor.of("fin", ["finance"])
ADMIN = Actor.of("root", ["admin"])


def _annual_platinum(engine: Any, client: Any) -> tuple[int, int, str]:
    """A member who paid $199.99 (the demo's annual Platinum): (member id, payment id, charge id)."""
    product = client.v1.products.create({"name": "Platinum", "metadata": {"tier": "platinum"}})
    price = client.v1.prices.create({"product": product.id, "currency": "usd", "unit_amount": 19999,
                                     "recurring": {"interval": "year"}})
    cus = client.v1.customers.create({"email": "pat@example.com", "name": "Pat Doe", "payment_method": "pm_card_visa",
                                      "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    client.v1.subscriptions.create({"customer": cus.id, "items": [{"price": price.id}]})
    mirror(engine, client, cus.id)
    with session_scope(engine) as s:
        member = s.scalar(select(Member).where(Member.stripe_customer_id == cus.id))
        payment = s.scalar(select(Payment).where(Payment.member_id == member.id))
        assert payment.amount == 19999
        return member.id, payment.id, payment.stripe_charge_id


def _refund(engine: Any, member_id: int, payment_id: int, amount: str, repeat_of: int | None = None) -> ChangeInput:
    params: dict[str, Any] = {"payment_id": payment_id, "amount": amount}
    if repeat_of is not None:  # the person confirmed a second refund like an earlier one
        params["repeat_of"] = repeat_of
    return ChangeInput("refund", member_id, version(engine, member_id), REASONS["refund"][0], "customer asked", params)


def _set(engine: Any, **changes: Any) -> None:
    with session_scope(engine) as s:
        limits = load_limits(s)
    for key, value in changes.items():
        getattr(limits, key).update(value)
    save_limits(engine, actor=ADMIN, limits=limits)


def test_support_with_a_50_limit_cannot_refund_199_99_in_four_refunds(engine, stripe_env):
    member_id, payment_id, charge = _annual_platinum(engine, stripe_env.client)
    _set(engine, refund_max={"support": {"USD": 5000}}, approval_refund_above={"USD": 1_000_000})
    first = submit(engine, _refund(engine, member_id, payment_id, "50.00"), SUPPORT, stripe=stripe_env.client)
    assert first.status == "applied"
    for amount in ("50.00", "50.00", "49.99"):
        with pytest.raises(ChangeRefused) as refused:
            submit(engine, _refund(engine, member_id, payment_id, amount), SUPPORT, stripe=stripe_env.client)
        assert str(refused.value) == (
            "Your role may refund at most $50.00 per payment and per member in 24 hours; $50.00 was already "
            "refunded on this payment, so $0.00 more at most. A manager or finance must make larger refunds.")
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 5000
    # finance has no cap: the rest is still refundable by the right person
    assert submit(engine, _refund(engine, member_id, payment_id, "49.99"), FINANCE,
                  stripe=stripe_env.client).status == "applied"


def test_a_manager_cannot_stay_under_the_approval_amount_with_two_refunds_of_99_99(engine, stripe_env):
    member_id, payment_id, charge = _annual_platinum(engine, stripe_env.client)
    # the default approval amount: $100.00
    first = submit(engine, _refund(engine, member_id, payment_id, "99.99"), MANAGER, stripe=stripe_env.client)
    assert first.status == "applied"
    # The same amount again minutes later is asked about first; confirmed, it needs a second person.
    second = submit(engine, _refund(engine, member_id, payment_id, "99.99", repeat_of=first.request_id), MANAGER,
                    stripe=stripe_env.client)
    assert second.status == "pending_approval"
    assert "with the $99.99 already refunded on this payment this makes $199.98" in second.message
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 9999
    done = decide(engine, second.request_id, FINANCE, approve=True, note="duplicate charge, checked",
                  stripe=stripe_env.client)
    assert done.status == "applied"
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 19998


def test_the_member_s_refunds_within_a_day_count_across_payments(engine, stripe_env):
    member_id, payment_id, _ = _annual_platinum(engine, stripe_env.client)
    _set(engine, refund_max={"support": {"USD": 5000}}, approval_refund_above={"USD": 1_000_000})
    assert submit(engine, _refund(engine, member_id, payment_id, "40.00"), SUPPORT,
                  stripe=stripe_env.client).status == "applied"
    # another payment of the same member, refunded an hour later: the day's $40.00 counts
    client = stripe_env.client
    with session_scope(engine) as s:
        customer = s.get(Member, member_id).stripe_customer_id
    card = client.v1.customers.retrieve(customer).invoice_settings.default_payment_method
    intent = client.v1.payment_intents.create({"amount": 3000, "currency": "usd", "customer": customer,
                                               "payment_method": card, "confirm": True})
    mirror(engine, client, customer)
    with session_scope(engine) as s:
        other = s.scalar(select(Payment.id).where(Payment.member_id == member_id, Payment.id != payment_id,
                                                  Payment.stripe_payment_intent_id == intent.id))
    assert other is not None
    with pytest.raises(ChangeRefused, match=r"\$40\.00 was already refunded to this member in the last 24 hours"):
        submit(engine, _refund(engine, member_id, other, "20.00"), SUPPORT, stripe=client)
    assert submit(engine, _refund(engine, member_id, other, "10.00"), SUPPORT, stripe=client).status == "applied"


def test_by_default_a_support_refund_of_an_annual_platinum_payment_asks_for_approval(engine, stripe_env):
    member_id, payment_id, charge = _annual_platinum(engine, stripe_env.client)
    change = ChangeInput("refund", member_id, version(engine, member_id), REASONS["refund"][0], "never used it",
                         {"payment_id": payment_id, "full": True})
    out = submit(engine, change, SUPPORT, stripe=stripe_env.client)
    assert out.status == "pending_approval"
    assert decide(engine, out.request_id, MANAGER, approve=True, note="ok", stripe=stripe_env.client).status == "applied"
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 19999


def test_default_limits_make_approval_reachable_in_every_currency() -> None:
    limits = Limits.from_value(None)
    assert limits.refund_window_hours == 24 == DEFAULTS["refund_window_hours"]
    for currency in SUPPORTED_CURRENCIES:
        threshold = limits.approval_refund_above[currency]
        support_cap = limits.max_refund(["support"], currency)
        largest_demo_payment = max(prices[currency] for prices in PRICES.values())
        # a support refund above the approval amount is possible, so it reaches approval ...
        assert support_cap is not None and support_cap > threshold, currency
        # ... and the demo sells payments above the approval amount that support may refund whole
        assert threshold < largest_demo_payment <= support_cap, currency


def test_refunds_waiting_for_approval_count_like_refunds_made(engine, stripe_env):
    # Three refunds of $99.99 each waited for approval under a $250 support limit, each preview
    # counting only what had been refunded; two approvals paid more than the person who asked may.
    member_id, payment_id, charge = _annual_platinum(engine, stripe_env.client)
    _set(engine, refund_max={"support": {"USD": 25000}})  # approval above $100 (the default)
    first = submit(engine, _refund(engine, member_id, payment_id, "150.00"), SUPPORT, stripe=stripe_env.client)
    assert first.status == "pending_approval"
    with pytest.raises(ChangeRefused) as refused:
        submit(engine, _refund(engine, member_id, payment_id, "120.00"), SUPPORT, stripe=stripe_env.client)
    assert str(refused.value) == ("At most $49.99 of this payment can still be refunded (the rest waits for "
                                  "approval); $120.00 is too much.")
    second = submit(engine, _refund(engine, member_id, payment_id, "49.99"), SUPPORT, stripe=stripe_env.client)
    assert second.status == "pending_approval"
    assert "with the $150.00 already refunded or waiting for approval on this payment this makes $199.99" in (
        second.message)
    # The whole payment is now asked for: another request is refused, whoever asks.
    with pytest.raises(ChangeRefused, match=r"The rest of this payment \(\$199\.99\) is already asked for"):
        submit(engine, _refund(engine, member_id, payment_id, "1.00"), FINANCE, stripe=stripe_env.client)
    # Approving one does not count it twice; both together refund the payment once.
    for request in (first, second):
        assert decide(engine, request.request_id, MANAGER, approve=True, note="checked",
                      stripe=stripe_env.client).status == "applied"
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 19999


def test_the_requester_withdraws_a_request_that_waits_and_may_then_refund_the_rest(engine, stripe_env):
    """Support asked for $150.00 (above the approval amount) and then learned it was the wrong
    payment: the request waited for someone else's Reject and blocked the payment's other refunds."""
    from core.models import AuditEntry, ChangeRequest

    member_id, payment_id, charge = _annual_platinum(engine, stripe_env.client)
    _set(engine, refund_max={"support": {"USD": 25000}})
    asked = submit(engine, _refund(engine, member_id, payment_id, "150.00"), SUPPORT, stripe=stripe_env.client)
    assert asked.status == "pending_approval"
    with pytest.raises(ChangeRefused, match="Only the person who asked for a change can withdraw it"):
        withdraw(engine, asked.request_id, MANAGER, note="not mine")
    with pytest.raises(ChangeRefused, match="note"):
        withdraw(engine, asked.request_id, SUPPORT, note=" ")
    out = withdraw(engine, asked.request_id, SUPPORT, note="Wrong payment; the member meant March's.")
    assert (out.status, out.message) == ("rejected", "The request was withdrawn; nothing was changed.")
    with session_scope(engine) as s:
        req = s.get(ChangeRequest, asked.request_id)
        assert (req.status, req.decided_by) == ("rejected", "sam")
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "change.refund.withdrawn"))
    with pytest.raises(ChangeRefused, match="no longer waiting"):
        withdraw(engine, asked.request_id, SUPPORT, note="again")
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 0
    # The payment is free again: a refund within the support limit goes through at once.
    assert submit(engine, _refund(engine, member_id, payment_id, "50.00"), SUPPORT,
                  stripe=stripe_env.client).status == "applied"


# --- currencies without an approval amount of their own -------------------------------------------

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)  # the refunds' moment: it picks the month's FX rate


def _cad_payment(engine: Any, client: Any, amount: int) -> tuple[int, int, str]:
    """A member who paid ``amount`` Canadian cents (a currency with no approval amount of its
    own): (member id, payment id, charge id)."""
    cus = client.v1.customers.create({"email": "cam@example.com", "name": "Cam Doe", "payment_method": "pm_card_visa",
                                      "invoice_settings": {"default_payment_method": "pm_card_visa"}})
    card = client.v1.customers.retrieve(cus.id).invoice_settings.default_payment_method
    intent = client.v1.payment_intents.create({"amount": amount, "currency": "cad", "customer": cus.id,
                                               "payment_method": card, "confirm": True})
    mirror(engine, client, cus.id)
    with session_scope(engine) as s:
        payment = s.scalar(select(Payment).where(Payment.stripe_payment_intent_id == intent.id))
        assert (payment.amount, payment.currency) == (amount, "CAD")
        return payment.member_id, payment.id, payment.stripe_charge_id


def test_a_refund_in_a_currency_without_an_approval_amount_or_a_rate_always_waits(engine, stripe_env):
    member_id, payment_id, charge = _cad_payment(engine, stripe_env.client, 50000)
    change = _refund(engine, member_id, payment_id, "20.00")
    shown = preview(engine, change, MANAGER, stripe=stripe_env.client, now=NOW)
    assert shown.needs_approval and shown.approval_reason == (
        "CAD has no approval amount of its own and no exchange rate to compare it with the USD one, so every "
        "CAD refund needs a second person")
    out = submit(engine, change, MANAGER, stripe=stripe_env.client, now=NOW)
    assert out.status == "pending_approval"
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 0  # nothing left without approval
    assert decide(engine, out.request_id, FINANCE, approve=True, note="checked", stripe=stripe_env.client,
                  now=NOW).status == "applied"
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 2000


def test_a_refund_in_another_currency_is_held_to_the_reporting_amount_at_our_rate(engine, stripe_env):
    """With CAD rates, a CAD refund is compared with the $100.00 approval amount at the rate of the
    refund's month (not an earlier month's), counted like every refund."""
    save_rate(engine, actor=ADMIN, currency="CAD", month="2026-02", usd_per_unit="0.50")
    save_rate(engine, actor=ADMIN, currency="CAD", month="2026-03", usd_per_unit="0.75",
              confirm_move=True)  # a test world: the two months differ on purpose
    member_id, payment_id, charge = _cad_payment(engine, stripe_env.client, 50000)
    first = submit(engine, _refund(engine, member_id, payment_id, "130.00"), MANAGER, stripe=stripe_env.client,
                   now=NOW)
    assert first.status == "applied"  # CA$130.00 is $97.50: under $100.00
    second = submit(engine, _refund(engine, member_id, payment_id, "10.00"), MANAGER, stripe=stripe_env.client,
                    now=NOW)
    assert second.status == "pending_approval"
    assert ("refunds above $100.00 need a second person, in CAD too; with the CA$130.00 already refunded on this "
            "payment this makes CA$140.00, about $105.00 at our March 2026 exchange rate") in second.message
    assert stripe_env.client.v1.charges.retrieve(charge).amount_refunded == 13000


def test_the_four_currencies_keep_their_own_approval_amounts(engine):
    with session_scope(engine) as s:
        limits = load_limits(s)
        for currency, amount in DEFAULTS["approval_refund_above"].items():
            assert approval_for(s, limits, amount, currency, NOW) == Approval(False, amount, currency)
            assert approval_for(s, limits, amount + 1, currency, NOW) == Approval(True, amount, currency)
