"""The event ledger and handlers, end to end into our tables: each event once, never stale,
failures kept for the next run, older API shapes mapped.

These run the sync's processing path on events already in the ledger (as a webhook or an earlier
fetch would have left them); the HTTP paths are in test_sync_sandbox.py.
"""

from __future__ import annotations

import copy

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models import Invoice, Member, MembershipChange, Payment, Subscription
from core.models.stripe_sync import StripeEvent
from core.stripe_gateway import ClientOptions, GatewayError, make_client
from core.sync import ledger
from core.sync.apply import Applier
from core.sync.process import process_pending
from core.timeutil import from_epoch
from tests.support.payloads import (
    CHARGE_FAILED,
    CUSTOMER,
    PM,
    PRICE,
    PRODUCT,
    T0,
    T1,
    new_subscription,
    old_invoice,
    old_subscription,
)

OLD_VERSION = "2024-06-20"


def event(evt_id: str, type_: str, obj: dict, created: int, api_version: str = "2026-10-28.endive") -> dict:
    return {"id": evt_id, "object": "event", "type": type_, "created": created, "api_version": api_version,
            "data": {"object": copy.deepcopy(obj)}, "livemode": False, "pending_webhooks": 0}


def catalogue_events() -> list[dict]:
    return [
        event("evt_prod", "product.created", PRODUCT, T0 - 100),
        event("evt_price", "price.created", PRICE, T0 - 90),
        event("evt_cus", "customer.created", CUSTOMER, T0 - 80),
        event("evt_pm", "payment_method.attached", PM, T0 - 70),
    ]


def _applier() -> Applier:
    # Nothing listens on port 1: any attempt to fetch a parent fails as "unreachable".
    client = make_client("sk_test_x", api_base="http://127.0.0.1:1",
                         options=ClientOptions(max_network_retries=0, connect_timeout=0.5))
    return Applier(client)


def _record(engine: Engine, events: list[dict]) -> int:
    with Session(engine) as s:
        new = ledger.record(s, events)
        s.commit()
    return new


def _snapshot(engine: Engine) -> dict:
    with Session(engine) as s:
        return {
            "members": s.scalar(select(func.count()).select_from(Member)),
            "subs": [(x.stripe_subscription_id, x.status, x.current_period_end) for x in s.scalars(select(Subscription))],
            "invoices": [(x.stripe_invoice_id, x.status, x.total) for x in s.scalars(select(Invoice))],
            "payments": [(x.stripe_charge_id, x.status, x.decline_code) for x in s.scalars(select(Payment))],
            "changes": s.scalar(select(func.count()).select_from(MembershipChange)),
        }


class TestLedger:
    def test_same_event_twice_is_stored_once_and_changes_nothing(self, engine: Engine) -> None:
        events = [*catalogue_events(), event("evt_sub", "customer.subscription.created", new_subscription(), T0)]
        assert _record(engine, events) == len(events)
        assert _record(engine, events) == 0
        assert process_pending(engine, _applier()).handled == len(events)
        before = _snapshot(engine)
        # Delivered again (a webhook retry, an overlapping fetch): stored once, handled once.
        assert _record(engine, events) == 0
        result = process_pending(engine, _applier())
        assert (result.handled, result.failed) == (0, 0)
        assert _snapshot(engine) == before
        with Session(engine) as s:
            assert s.scalar(select(func.count()).select_from(StripeEvent)) == len(events)
            assert all(e.processed_at is not None and e.attempts == 1 for e in s.scalars(select(StripeEvent)))

    def test_older_state_never_overwrites_newer(self, engine: Engine) -> None:
        _record(engine, catalogue_events())
        newer = event("evt_new", "customer.subscription.updated", new_subscription(status="active"), T1 + 10)
        older = event("evt_old", "customer.subscription.updated", new_subscription(status="past_due"), T1)
        _record(engine, [newer])
        process_pending(engine, _applier())
        _record(engine, [older])  # arrives late
        assert process_pending(engine, _applier()).failed == 0
        with Session(engine) as s:
            assert s.scalar(select(Subscription.status)) == "active"
            assert s.get(StripeEvent, "evt_old").processed_at is not None  # handled: refused as stale

    def test_unknown_event_types_are_ignored_but_processed(self, engine: Engine) -> None:
        _record(engine, [event("evt_pi", "payment_intent.created", {"id": "pi_1", "object": "payment_intent"}, T0)])
        result = process_pending(engine, _applier())
        assert (result.ignored, result.handled) == (1, 0)
        assert ledger.counts(engine)["pending"] == 0


class TestFailures:
    def test_outage_while_fetching_a_parent_leaves_the_event_for_the_next_run(self, engine: Engine) -> None:
        # The subscription arrives before its customer; fetching the customer fails (Stripe unreachable).
        _record(engine, [event("evt_sub", "customer.subscription.created", new_subscription(), T0)])
        with pytest.raises(GatewayError) as info:
            process_pending(engine, _applier())
        assert info.value.retryable
        with Session(engine) as s:
            ev = s.get(StripeEvent, "evt_sub")
            assert ev.processed_at is None and ev.attempts == 1 and "could not be reached" in ev.last_error
            assert s.scalar(select(func.count()).select_from(Subscription)) == 0  # nothing half-written
        assert ledger.counts(engine)["failing"] == 1
        # Next run: the parents have arrived meanwhile; the event is retried and succeeds.
        _record(engine, catalogue_events())
        result = process_pending(engine, _applier())
        assert result.failed == 0
        with Session(engine) as s:
            ev = s.get(StripeEvent, "evt_sub")
            assert ev.processed_at is not None and ev.attempts == 2 and ev.last_error is None
            assert s.scalar(select(Subscription.status)) == "active"

    def test_a_failing_handler_is_recorded_and_the_others_go_on(self, engine: Engine) -> None:
        broken = new_subscription(id="sub_bad")
        broken["items"] = {"object": "list", "data": [{"id": "si_x", "object": "subscription_item", "price": None,
                                                      "quantity": 1}]}
        _record(engine, [*catalogue_events(), event("evt_bad", "customer.subscription.created", broken, T0),
                         event("evt_good", "customer.subscription.created", new_subscription(), T0 + 1)])
        result = process_pending(engine, _applier())
        assert result.failed == 1 and result.handled == 5
        with Session(engine) as s:
            bad = s.get(StripeEvent, "evt_bad")
            assert bad.processed_at is None and bad.last_error and bad.attempts == 1
            assert s.scalars(select(Subscription.stripe_subscription_id)).all() == ["sub_1"]
        # The next run tries it again (and records the second failure).
        process_pending(engine, _applier())
        with Session(engine) as s:
            assert s.get(StripeEvent, "evt_bad").attempts == 2


class TestOlderApiShape:
    def test_old_shape_payloads_in_the_ledger_are_mapped(self, engine: Engine) -> None:
        sub = old_subscription()
        charge = dict(CHARGE_FAILED, invoice="in_1")
        _record(engine, [
            *catalogue_events(),
            event("evt_sub", "customer.subscription.created", sub, T0, OLD_VERSION),
            # Stripe creates the invoice before charging it; the older charge names its invoice.
            event("evt_in0", "invoice.created", dict(old_invoice(), status="draft", amount_paid=0, charge=None,
                                                     amount_remaining=999), T1 - 1, OLD_VERSION),
            event("evt_ch", "charge.failed", charge, T1, OLD_VERSION),
            event("evt_in", "invoice.payment_failed", dict(old_invoice(), status="open", amount_paid=0,
                                                           amount_remaining=999, charge="ch_2"), T1 + 1, OLD_VERSION),
        ])
        assert process_pending(engine, _applier()).failed == 0
        with Session(engine) as s:
            row = s.scalar(select(Subscription))
            # current_period_end lived on the subscription in the older shape.
            assert row.current_period_end == from_epoch(T1)
            inv = s.scalar(select(Invoice))
            assert (inv.status, inv.total, inv.subscription_id) == ("open", 999, row.id)
            pay = s.scalar(select(Payment))
            assert (pay.invoice_id, pay.decline_code, pay.status) == (inv.id, "insufficient_funds", "failed")
            assert s.get(StripeEvent, "evt_sub").api_version == OLD_VERSION


def test_the_sync_page_names_the_newest_event_a_webhook_delivered(engine: Engine) -> None:
    # With webhooks and no sync run yet, the page said "Newest event: None yet" beside applied events.
    from core.sync.status import status

    assert status(engine).newest_event_at is None
    with Session(engine) as s:
        ledger.record(s, [event("evt_new", "product.created", PRODUCT, T0), event("evt_old", "price.created", PRICE,
                                                                                  T0 - 60)], source="webhook")
        s.commit()
    assert status(engine).newest_event_at == from_epoch(T0)
