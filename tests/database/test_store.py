"""The Stripe store: idempotent upserts, stale refusal, missing parents, membership changes."""

from __future__ import annotations

import copy
import itertools

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import models
from core.stripe_store import MissingParent, apply, derive_changes
from tests.support.factories import at
from tests.support.payloads import (
    CHARGE_FAILED,
    CUSTOMER,
    PM,
    PRICE,
    PRODUCT,
    T1,
    new_invoice,
    new_subscription,
    old_invoice,
)

PLAT_PRODUCT = {"id": "prod_x", "object": "product", "name": "Platinum", "metadata": {"tier": "platinum"}, "created": 0}
PLAT_PRICE = dict(PRICE, id="price_xm", product="prod_x", unit_amount=1999)
CHARGE_OK = dict(CHARGE_FAILED, id="ch_1", status="succeeded", failure_code=None, failure_message=None,
                 outcome={"type": "authorized", "reason": None}, created=T1 + 3 * 86400)
REFUND = {"id": "re_1", "object": "refund", "charge": "ch_1", "amount": 300, "currency": "usd", "status": "succeeded",
          "reason": "requested_by_customer", "created": T1 + 5 * 86400}
DISPUTE = {"id": "dp_1", "object": "dispute", "charge": "ch_1", "amount": 999, "currency": "usd",
           "status": "needs_response", "reason": "fraudulent", "created": T1 + 6 * 86400}
WHEN = at("2026-03-01 00:00")


def world() -> list[dict]:
    # Today's charges name no invoice: the invoice (invoice.paid comes after the charges) links them.
    return [PRODUCT, PLAT_PRODUCT, PRICE, PLAT_PRICE, CUSTOMER, PM, new_subscription(), CHARGE_FAILED, CHARGE_OK,
            new_invoice(), REFUND, DISPUTE]


def counts(session: Session) -> dict[str, int]:
    mirrored = (models.Tier, models.Price, models.Member, models.PaymentMethod, models.Subscription,
                models.SubscriptionItem, models.Invoice, models.InvoiceLine, models.Payment, models.Refund,
                models.Dispute, models.MembershipChange)
    return {m.__tablename__: session.scalar(select(func.count()).select_from(m)) for m in mirrored}


def apply_all(session: Session, objs: list[dict], when=WHEN) -> list[str]:
    return [apply(session, copy.deepcopy(o), state_at=when, event_id=None) for o in objs]


class TestApply:
    def test_whole_world_lands_and_links(self, session: Session) -> None:
        assert set(apply_all(session, world())) == {"created"}
        session.commit()
        member = session.scalar(select(models.Member))
        assert (member.email, member.phone, member.country) == ("ann@example.com", "+1 555", "US")
        pay_ok = session.scalar(select(models.Payment).where(models.Payment.stripe_charge_id == "ch_1"))
        pay_failed = session.scalar(select(models.Payment).where(models.Payment.stripe_charge_id == "ch_2"))
        inv = session.scalar(select(models.Invoice))
        # Today's invoice names its payment intent; both attempts on it are linked to it.
        assert pay_ok.invoice_id == pay_failed.invoice_id == inv.id
        assert (pay_failed.attempt_number, pay_ok.attempt_number) == (1, 2)
        assert pay_ok.is_renewal is True and pay_failed.decline_code == "insufficient_funds"
        assert session.scalar(select(models.Refund)).member_id == member.id
        # The customer came before its card: the card still knows it is the default.
        assert session.scalar(select(models.PaymentMethod)).is_default is True
        assert apply(session, dict(CUSTOMER), state_at=at("2026-03-02 00:00")) == "unchanged"
        assert session.scalar(select(models.PaymentMethod)).is_default is True
        sub = session.scalar(select(models.Subscription))
        assert (sub.mrr_minor, sub.status, sub.current_period_end) == (999, "active", at("2026-02-01 00:00"))

    def test_same_objects_twice_change_nothing(self, session: Session) -> None:
        apply_all(session, world())
        before = counts(session)
        version = session.scalar(select(models.Member.version))
        assert set(apply_all(session, world())) == {"unchanged"}
        assert counts(session) == before
        assert session.scalar(select(models.Member.version)) == version

    def test_invoice_first_then_charges_then_invoice_paid(self, session: Session) -> None:
        apply_all(session, [PRODUCT, PRICE, CUSTOMER, PM, new_subscription(), new_invoice(payments=None), CHARGE_OK])
        assert session.scalar(select(models.Payment.invoice_id)) is None
        assert apply(session, new_invoice(), state_at=at("2026-03-02 00:00")) == "updated"
        assert session.scalar(select(models.Payment.invoice_id)) == session.scalar(select(models.Invoice.id))

    def test_older_shape_invoice_links_by_charge(self, session: Session) -> None:
        apply_all(session, [PRODUCT, PRICE, CUSTOMER, PM, new_subscription(), CHARGE_OK])
        inv = old_invoice()
        inv["payment_intent"] = None
        apply(session, inv, state_at=WHEN)
        assert session.scalar(select(models.Payment.invoice_id)) == session.scalar(select(models.Invoice.id))

    def test_older_shape_charge_names_its_invoice(self, session: Session) -> None:
        apply_all(session, [PRODUCT, PRICE, CUSTOMER, PM, new_subscription(), old_invoice()])
        apply(session, dict(CHARGE_OK, invoice="in_1", payment_intent=None), state_at=WHEN)
        assert session.scalar(select(models.Payment.invoice_id)) == session.scalar(select(models.Invoice.id))


class TestArrivalOrder:
    """Columns that depend on several objects come out the same whatever order those arrive in."""

    def test_charges_and_their_invoice_in_every_order(self, session: Session) -> None:
        retry = dict(CHARGE_FAILED, id="ch_3", created=T1 + 86400)  # a second failure between the two
        seen = set()
        for order in itertools.permutations([CHARGE_FAILED, retry, CHARGE_OK, new_invoice()]):
            trial = session.begin_nested()
            apply_all(session, [PRODUCT, PRICE, CUSTOMER, PM, new_subscription(), *order])
            inv_id = session.scalar(select(models.Invoice.id))
            rows = session.execute(select(models.Payment.stripe_charge_id, models.Payment.invoice_id == inv_id, models.Payment.attempt_number,
                                          models.Payment.is_renewal).order_by(models.Payment.stripe_charge_id)).all()
            seen.add(tuple(tuple(r) for r in rows))
            trial.rollback()
        assert seen == {(("ch_1", True, 3, True), ("ch_2", True, 1, True), ("ch_3", True, 2, True))}

    def test_a_charge_arriving_after_its_invoice_is_linked(self, session: Session) -> None:
        apply_all(session, [PRODUCT, PRICE, CUSTOMER, PM, new_subscription(), new_invoice(billing_reason="manual")])
        assert apply(session, CHARGE_OK, state_at=WHEN) == "created"
        pay = session.scalar(select(models.Payment))
        assert (pay.invoice_id, pay.is_renewal, pay.attempt_number) == (session.scalar(select(models.Invoice.id)), False, 1)
        # The invoice's billing reason is corrected later: the renewal flag follows it.
        assert apply(session, new_invoice(), state_at=at("2026-03-02 00:00")) == "updated"
        session.expire_all()
        assert session.scalar(select(models.Payment.is_renewal)) is True

    def test_default_card_named_before_the_card_arrives(self, session: Session) -> None:
        pm2 = dict(PM, id="pm_2", card=dict(PM["card"], last4="0005"))
        customer = dict(CUSTOMER, invoice_settings={"default_payment_method": "pm_2"})
        apply_all(session, [customer, PM, pm2])
        flags = dict(session.execute(select(models.PaymentMethod.stripe_payment_method_id, models.PaymentMethod.is_default)).all())
        assert flags == {"pm_1": False, "pm_2": True}
        assert apply(session, CUSTOMER, state_at=at("2026-03-02 00:00")) == "updated"  # default back to pm_1
        session.expire_all()
        flags = dict(session.execute(select(models.PaymentMethod.stripe_payment_method_id, models.PaymentMethod.is_default)).all())
        assert flags == {"pm_1": True, "pm_2": False}
        assert apply(session, dict(PM, customer=None), state_at=at("2026-03-03 00:00")) == "updated"  # detached
        session.expire_all()
        assert session.scalar(select(models.PaymentMethod.is_default).where(models.PaymentMethod.stripe_payment_method_id == "pm_1")) \
            is False


class TestStale:
    def test_older_state_never_overwrites_newer(self, session: Session) -> None:
        apply_all(session, world()[:6])
        assert apply(session, new_subscription(status="past_due"), state_at=at("2026-03-02 00:00")) == "created"
        assert apply(session, new_subscription(status="active"), state_at=at("2026-03-01 00:00")) == "stale"
        assert session.scalar(select(models.Subscription.status)) == "past_due"
        assert apply(session, dict(CUSTOMER, name="Old Name"), state_at=at("2026-01-01 00:00")) == "stale"
        assert session.scalar(select(models.Member.name)) == "Ann"


class TestMissingParent:
    def test_subscription_before_its_customer(self, session: Session) -> None:
        apply_all(session, [PRODUCT, PRICE])
        with pytest.raises(MissingParent) as err:
            apply(session, new_subscription(), state_at=WHEN)
        assert (err.value.object_type, err.value.stripe_id) == ("customer", "cus_1")
        assert counts(session)["subscriptions"] == 0

    def test_refund_before_its_charge(self, session: Session) -> None:
        with pytest.raises(MissingParent) as err:
            apply(session, REFUND, state_at=WHEN)
        assert err.value.object_type == "charge"


class TestMembershipChanges:
    def test_lifecycle_rows_and_replay(self, session: Session) -> None:
        apply_all(session, world()[:6])
        steps = [
            ("evt_1", at("2026-01-01 00:00"), new_subscription()),
            ("evt_2", at("2026-02-01 00:00"), new_subscription(status="past_due")),
            ("evt_3", at("2026-02-04 00:00"), new_subscription(status="active")),
            ("evt_4", at("2026-02-10 00:00"), _with_price(new_subscription(), PLAT_PRICE)),
            ("evt_5", at("2026-02-20 00:00"), _with_price(new_subscription(
                cancel_at_period_end=True, cancellation_details={"reason": "cancellation_requested",
                                                                 "feedback": "too_expensive", "comment": None}),
                PLAT_PRICE)),
            ("evt_6", at("2026-03-01 00:00"), _with_price(new_subscription(
                status="canceled", canceled_at=T1, ended_at=T1,
                cancellation_details={"reason": "cancellation_requested", "feedback": "too_expensive",
                                      "comment": None}), PLAT_PRICE)),
        ]
        for event_id, when, obj in steps:
            apply(session, obj, state_at=when, event_id=event_id, source="stripe")
        rows = session.scalars(select(models.MembershipChange).order_by(models.MembershipChange.effective_at)).all()
        assert [(r.kind, r.mrr_before_minor, r.mrr_after_minor) for r in rows] == [
            ("created", 0, 999), ("past_due", 999, 999), ("recovered", 999, 999), ("upgraded", 999, 1999),
            ("cancel_scheduled", 1999, 1999), ("canceled", 1999, 0)]
        assert rows[-1].churn_kind == "voluntary" and rows[-1].reason == "too_expensive"
        assert rows[-1].stripe_event_id == "evt_6"
        for event_id, when, obj in steps:  # replay: nothing new
            apply(session, obj, state_at=when, event_id=event_id)
        assert counts(session)["membership_changes"] == 6
        sub = session.scalar(select(models.Subscription))
        assert sub.past_due_since is None and sub.churn_kind == "voluntary"

    def test_past_due_since_kept_while_past_due(self, session: Session) -> None:
        apply_all(session, world()[:6])
        apply(session, new_subscription(status="past_due"), state_at=at("2026-02-01 00:00"))
        apply(session, new_subscription(status="past_due", default_payment_method=None), state_at=at("2026-02-05 00:00"))
        assert session.scalar(select(models.Subscription.past_due_since)) == at("2026-02-01 00:00")


def _with_price(sub: dict, price: dict) -> dict:
    sub["items"]["data"][0]["price"] = price
    return sub


class TestDeriveChanges:
    def test_trial_conversion_and_involuntary_churn(self) -> None:
        base = {"status": "trialing", "price_id": 1, "tier_id": 1, "mrr_minor": 0, "currency": "EUR"}
        started = derive_changes(None, base, WHEN)
        assert started["kind"] == "trial_started"
        active = dict(base, status="active", mrr_minor=899)
        assert derive_changes(base, active, WHEN)["kind"] == "converted"
        gone = dict(active, status="canceled", mrr_minor=0, churn_kind="involuntary", cancellation_reason="payment_failed")
        change = derive_changes(active, gone, WHEN)
        assert (change["kind"], change["churn_kind"], change["reason"], change["mrr_before_minor"]) == (
            "canceled", "involuntary", "payment_failed", 899)
        assert derive_changes(active, dict(active), WHEN) is None


class TestDeleted:
    def test_deleted_customer_keeps_its_member(self, session: Session) -> None:
        apply_all(session, [CUSTOMER])
        version = session.scalar(select(models.Member.version))
        assert apply(session, {"id": "cus_1", "object": "customer", "deleted": True}, state_at=WHEN) == "deleted"
        assert apply(session, {"id": "cus_1", "object": "customer", "deleted": True}, state_at=WHEN) == "unchanged"
        member = session.scalar(select(models.Member))
        assert member.deleted_in_stripe_at == WHEN and member.version == version + 1

    def test_detached_card_and_unknown_objects(self, session: Session) -> None:
        apply_all(session, [CUSTOMER, PM])
        assert apply(session, dict(PM, customer=None), state_at=WHEN) == "updated"
        assert session.scalar(select(models.PaymentMethod.detached_at)) == WHEN
        assert apply(session, {"id": "cs_1", "object": "checkout.session"}, state_at=WHEN) == "ignored"
