"""The webhook echo of a staff change does not make the agent's next form stale; an outside change does.

Real sandbox over HTTP: its webhook deliveries go through the real receiver into the ledger and
are applied by the server's background pass (``ApplyLoop``, woken on each new event, as the
server does), on SQLite and PostgreSQL. The member's version protects what the agent saw: an
event whose content our rows already hold (the echo of our own write) must not move it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from core import stripe_store
from core.changes import Actor, ChangeInput, StaleMember, preview, submit
from core.db import make_engine, session_scope
from core.models import Invoice, InvoiceLine, Payment, Subscription
from core.stripe_gateway import make_client
from core.stripe_webhooks.apply_loop import ApplyLoop
from core.timeutil import utc_now
from tests.support.changes_world import World, build, mirror, version
from tests.support.sandbox import SandboxProcess, WebhookEndpoint, webhook_endpoint

SAM = Actor.of("sam", ["support"])


@pytest.fixture
def hooked(engine: Engine, stripe_env: Any, sandbox: SandboxProcess) -> Iterator[tuple[World, WebhookEndpoint, ApplyLoop]]:
    world = build(engine, stripe_env.client)
    loop = ApplyLoop(engine, lambda: make_client(sandbox.api_key, api_base=sandbox.url))
    loop.start()
    try:
        with webhook_endpoint(engine, sandbox.client(), loop.wake) as hook:
            yield world, hook, loop
    finally:
        loop.stop()


def _applied(engine: Engine, hook: WebhookEndpoint, seconds: float = 30) -> None:
    """Every event delivered so far recorded and applied by the background pass."""
    from core.models.stripe_sync import StripeEvent

    ids = hook.settle()
    deadline = time.monotonic() + seconds
    while True:
        with Session(engine) as s:
            left = s.scalar(select(StripeEvent.id).where(StripeEvent.id.in_(ids), StripeEvent.processed_at.is_(None)))
        if left is None:
            return
        assert time.monotonic() < deadline, f"event {left} not applied in {seconds:.0f} s"
        time.sleep(0.1)


def test_a_second_change_after_the_first_ones_webhooks_is_accepted(engine, stripe_env, hooked) -> None:
    world, hook, _loop = hooked
    cancel = ChangeInput("cancel", world.member_id, version(engine, world.member_id), "customer_request",
                         "Moving abroad next month.", {"when": "period_end"})
    assert submit(engine, cancel, SAM, stripe=stripe_env.client).message == "Done."
    opened = version(engine, world.member_id)  # the form as it opens after "Done."
    _applied(engine, hook)  # the sandbox's webhook for the cancellation, delivered and applied
    undo = ChangeInput("uncancel", world.member_id, opened, "customer_request", "Changed their mind.", {})
    assert preview(engine, undo, SAM, stripe=stripe_env.client).summary
    assert submit(engine, undo, SAM, stripe=stripe_env.client).message == "Done."
    # Twice more, as agents do (refund, then refund again): each echo leaves the next form current.
    for cents in (100, 150):
        opened = version(engine, world.member_id)
        refund = ChangeInput("refund", world.member_id, opened, "goodwill", "Outage.",
                             {"payment_id": world.payment_id, "amount": cents})
        _applied(engine, hook)
        assert submit(engine, refund, SAM, stripe=stripe_env.client).message == "Done."
    _applied(engine, hook)
    assert stripe_env.client.v1.charges.retrieve(world.charge).amount_refunded == 250
    with session_scope(engine) as s:
        assert s.scalar(select(Subscription.cancel_at_period_end)) is False


def test_an_outside_change_between_opening_and_confirming_still_refuses(engine, stripe_env, hooked) -> None:
    world, hook, _loop = hooked
    opened = version(engine, world.member_id)
    # Someone cancels at period end in Stripe's dashboard while the agent's form is open.
    stripe_env.client.v1.subscriptions.update(world.subscription, {"cancel_at_period_end": True})
    _applied(engine, hook)
    extend = ChangeInput("extend", world.member_id, opened, "goodwill", "Outage.", {"days": 5})
    with pytest.raises(StaleMember) as refused:
        preview(engine, extend, SAM, stripe=stripe_env.client)
    assert refused.value.fresh_state["subscription"]["cancel_at_period_end"] is True
    with pytest.raises(StaleMember):
        submit(engine, extend, SAM, stripe=stripe_env.client)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_echo_waiting_on_the_mirrors_row_lock_finds_its_content_stored(database_url, engine, stripe_env) -> None:
    """PostgreSQL: the webhook pass reads the subscription before the staff change commits, then
    waits for the row's lock; once the change commits, the same content is already there."""
    world = build(engine, stripe_env.client)
    answer = stripe_env.client.v1.subscriptions.update(world.subscription, {"cancel_at_period_end": True})
    obj = answer.to_dict() if hasattr(answer, "to_dict") else dict(answer)
    before = version(engine, world.member_id)
    mirror = Session(engine)
    stripe_store.apply(mirror, obj, state_at=utc_now(), source="staff")  # holds the row's lock
    other = make_engine(database_url)
    outcome: list[str] = []

    def echo() -> None:
        with Session(other) as s:
            outcome.append(stripe_store.apply(s, obj, state_at=utc_now()))
            s.commit()

    thread = threading.Thread(target=echo)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        with other.connect() as watch:  # the echo has read the row and waits for its lock
            while not watch.scalar(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                                        " AND datname = current_database()")):
                assert time.monotonic() < deadline, "the echo never waited for the row's lock"
                time.sleep(0.05)
        mirror.commit()
    finally:
        mirror.close()
        thread.join(timeout=30)
        other.dispose()
    assert outcome == ["unchanged"]
    assert version(engine, world.member_id) == before + 1  # the staff change's one step, not the echo's



MIA = Actor.of("mia", ["manager"])


def _change_tier_now(engine: Engine, stripe_env: Any, world: World) -> None:
    tier = ChangeInput("change_price", world.member_id, version(engine, world.member_id), "customer_request",
                       "Wants the platinum perks.", {"price_id": world.prices["platinum_monthly"], "when": "now"})
    assert submit(engine, tier, MIA, stripe=stripe_env.client).message == "Done."


def test_a_tier_change_now_stores_the_proration_invoice_and_its_payment(engine, stripe_env) -> None:
    """Right after "Done." (no webhook endpoint here, so nothing but the change wrote)."""
    world = build(engine, stripe_env.client)
    _change_tier_now(engine, stripe_env, world)
    remote = stripe_env.client.v1.subscriptions.retrieve(world.subscription, {"expand": ["latest_invoice.payments"]})
    pi = remote.latest_invoice.payments.data[0].payment.payment_intent
    charge = stripe_env.client.v1.charges.list({"payment_intent": pi}).data[0]
    with session_scope(engine) as s:
        inv = s.scalar(select(Invoice).where(Invoice.stripe_invoice_id == remote.latest_invoice.id))
        assert inv is not None and (inv.billing_reason, inv.status) == ("subscription_update", "paid")
        assert 0 < inv.amount_paid == remote.latest_invoice.amount_paid <= 2000
        lines = s.scalars(select(InvoiceLine).where(InvoiceLine.invoice_id == inv.id)).all()
        assert lines and all(line.proration for line in lines)
        paid = s.scalars(select(Payment).where(Payment.invoice_id == inv.id)).one()
        assert (paid.stripe_charge_id, paid.status, paid.amount, paid.member_id) == (
            charge.id, "succeeded", inv.amount_paid, world.member_id)
        assert paid.fee is not None  # the balance transaction came with it: its webhook adds nothing


def test_change_tier_now_then_extend_after_the_webhooks_is_accepted(engine, stripe_env, hooked) -> None:
    """The proration invoice's and charge's webhooks are echoes: the form opened after "Done." stays current."""
    world, hook, _loop = hooked
    _change_tier_now(engine, stripe_env, world)
    opened = version(engine, world.member_id)  # the form as it opens after "Done."
    _applied(engine, hook)  # the sandbox's webhooks for the tier change, delivered and applied
    assert version(engine, world.member_id) == opened
    extend = ChangeInput("extend", world.member_id, opened, "goodwill", "Outage.", {"days": 5})
    assert preview(engine, extend, SAM, stripe=stripe_env.client).summary
    assert submit(engine, extend, SAM, stripe=stripe_env.client).message == "Done."


def _stored_payments_of(engine: Engine, stripe_invoice_id: str) -> set[tuple[str, str]]:
    with session_scope(engine) as s:
        return {(p.stripe_charge_id, p.status) for p in s.scalars(
            select(Payment).join(Invoice, Payment.invoice_id == Invoice.id)
            .where(Invoice.stripe_invoice_id == stripe_invoice_id))}


def _remote_payments_of(client: Any, stripe_invoice_id: str) -> set[tuple[str, str]]:
    inv = client.v1.invoices.retrieve(stripe_invoice_id, {"expand": ["payments"]})
    return {(c.id, c.status) for pay in inv.payments.data
            for c in client.v1.charges.list({"payment_intent": pay.payment.payment_intent}).data}


def test_reactivating_stores_the_first_invoice_and_its_charge(engine, stripe_env) -> None:
    world = build(engine, stripe_env.client)
    cancel = ChangeInput("cancel", world.member_id, version(engine, world.member_id), "customer_request",
                         "Moving abroad.", {"when": "now"})
    assert submit(engine, cancel, SAM, stripe=stripe_env.client).message == "Done."
    back = ChangeInput("reactivate", world.member_id, version(engine, world.member_id), "customer_request",
                       "Came back.", {"price_id": world.prices["platinum_monthly"]})
    assert submit(engine, back, SAM, stripe=stripe_env.client).message == "Done."
    new = stripe_env.client.v1.subscriptions.list({"customer": world.customer, "status": "active"}).data[0]
    paid = _stored_payments_of(engine, new.latest_invoice)
    assert paid == _remote_payments_of(stripe_env.client, new.latest_invoice) and {st for _c, st in paid} == {"succeeded"}


def test_retrying_an_invoice_stores_the_charge_it_makes(engine, stripe_env) -> None:
    client = stripe_env.client
    world = build(engine, client, card="pm_card_chargeCustomerFail", email="bob@example.com")
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": world.customer})
    client.v1.customers.update(world.customer, {"invoice_settings": {"default_payment_method": pm.id}})
    mirror(engine, client, world.customer)
    with session_scope(engine) as s:
        invoice_id, stripe_invoice = s.execute(select(Invoice.id, Invoice.stripe_invoice_id)).one()
    retry = ChangeInput("retry_invoice", world.member_id, version(engine, world.member_id), "customer_updated_card",
                        "New card on file.", {"invoice_id": invoice_id})
    assert submit(engine, retry, SAM, stripe=client).message == "Done."
    paid = _stored_payments_of(engine, stripe_invoice)
    assert paid == _remote_payments_of(client, stripe_invoice) and {st for _c, st in paid} == {"failed", "succeeded"}


def test_the_audit_entry_s_before_is_the_member_before_the_change_when_the_webhook_came_first(
        engine, stripe_env, hooked, sandbox) -> None:
    """Stripe's answer held until its webhook was applied to our rows: the audit entry still shows
    the member before the cancel (it recorded the cancelled state on both sides, once in a few
    changes, when the webhook won the race)."""
    from core.audit import query as audit_query

    world, hook, _loop = hooked
    sandbox.fault(f"/v1/subscriptions/{world.subscription}", method="POST", mode="apply_then_delay", seconds=8)
    cancel = ChangeInput("cancel", world.member_id, version(engine, world.member_id), "customer_request",
                         "Moving abroad next month.", {"when": "period_end"})
    answers: list[Any] = []
    worker = threading.Thread(target=lambda: answers.append(submit(engine, cancel, SAM, stripe=stripe_env.client)))
    worker.start()
    deadline = time.monotonic() + 30
    while True:  # the webhook applied while the answer is held
        with session_scope(engine) as s:
            if s.scalar(select(Subscription.cancel_at_period_end)):
                break
        assert time.monotonic() < deadline, "the cancellation's webhook was not applied"
        time.sleep(0.05)
    sandbox.clear_faults()  # now Stripe answers
    worker.join(60)
    assert answers and answers[0].message == "Done."
    [entry] = audit_query.entries(engine, action="change.cancel").rows.to_dict("records")
    before, after = json.loads(entry["before"]), json.loads(entry["after"])
    assert before["subscription"]["cancel_at_period_end"] is False
    assert after["subscription"]["cancel_at_period_end"] is True
    assert "subscription.cancel_at_period_end: no → yes" in entry["what_changed"]
