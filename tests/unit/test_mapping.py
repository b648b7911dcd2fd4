"""The mapping layer: Stripe objects in both API shapes become the same rows."""

from __future__ import annotations

import copy
import json
from decimal import Decimal

from core.stripe_mapping import (
    map_charge,
    map_customer,
    map_dispute,
    map_invoice,
    map_payment_method,
    map_price,
    map_product,
    map_refund,
    map_subscription,
)
from tests.support.factories import at
from tests.support.payloads import (
    CHARGE_FAILED,
    T0,
    T1,
    new_invoice,
    new_subscription,
    old_invoice,
    old_subscription,
)

YEARLY_JPY = {"id": "price_py", "object": "price", "product": {"id": "prod_p"}, "currency": "jpy",
              "unit_amount": 12000, "recurring": {"interval": "year", "interval_count": 1}, "created": T0}


class TestCatalogue:
    def test_product_tier_code_from_metadata_or_name(self) -> None:
        assert map_product({"id": "prod_p", "name": "Premium Plus", "metadata": {"tier": "premium"},
                            "created": T0})["code"] == "premium"
        row = map_product({"id": "prod_x", "name": "Platinum", "metadata": {}, "created": T0})
        assert (row["code"], row["rank"], row["created_at"]) == ("platinum", 2, at("2026-01-01 00:00"))

    def test_price_yen_and_product_expanded(self) -> None:
        row = map_price(YEARLY_JPY)
        assert row == {"stripe_price_id": "price_py", "stripe_product_id": "prod_p", "currency": "JPY",
                       "unit_amount": 12000, "interval": "year", "interval_count": 1, "active": True,
                       "nickname": None, "created_at": at("2026-01-01 00:00")}


class TestCustomer:
    def test_email_lowercased_address_json_country(self) -> None:
        row = map_customer({"id": "cus_1", "email": " Ann@Example.COM ", "name": "Ann", "phone": "+44 20 1234",
                            "address": {"line1": "1 High St", "city": "London", "country": "GB", "state": None},
                            "created": T0, "invoice_settings": {"default_payment_method": "pm_1"}})
        assert row["email"] == "ann@example.com"
        assert row["country"] == "GB" and row["phone"] == "+44 20 1234"
        assert json.loads(row["address"]) == {"line1": "1 High St", "city": "London", "country": "GB"}
        assert row["stripe_default_payment_method_id"] == "pm_1"


class TestPaymentMethod:
    def test_only_safe_card_fields(self) -> None:
        pm = {"id": "pm_1", "object": "payment_method", "type": "card", "customer": "cus_1", "created": T0,
              "billing_details": {"name": "Ann", "email": None, "address": {"country": "GB"}},
              "card": {"brand": "mastercard", "last4": "4444", "exp_month": 12, "exp_year": 2026, "country": "GB",
                       "funding": "credit", "wallet": None, "number": "5555555555554444", "cvc": "123"}}
        row = map_payment_method(pm)
        assert (row["brand"], row["last4"], row["exp_month"], row["exp_year"], row["funding"]) == (
            "mastercard", "4444", 12, 2026, "credit")
        assert row["billing_details"] == {"name": "Ann", "address": {"country": "GB"}}
        flat = json.dumps(row, default=str)
        assert "5555555555554444" not in flat and "123" not in flat.replace("2026", "")


class TestSubscription:
    def test_periods_in_both_shapes(self) -> None:
        new_row, new_items = map_subscription(new_subscription())
        old_row, old_items = map_subscription(old_subscription())
        assert new_row == old_row
        assert new_items == old_items
        assert new_row["current_period_start"] == at("2026-01-01 00:00")
        assert new_row["current_period_end"] == at("2026-02-01 00:00")
        assert new_items[0]["current_period_end"] == at("2026-02-01 00:00")
        assert (new_row["stripe_price_id"], new_row["stripe_product_id"], new_row["mrr_minor"]) == (
            "price_pm", "prod_p", 999)

    def test_discount_in_both_shapes(self) -> None:
        disc = {"id": "di_1", "object": "discount", "end": None,
                "source": {"type": "coupon", "coupon": {"id": "c", "percent_off": 20.0, "duration": "forever"}}}
        new_row, _ = map_subscription(new_subscription(discounts=[disc]))
        old_row, _ = map_subscription(old_subscription(discounts=[copy.deepcopy(disc)]))
        assert new_row["discount_percent_off"] == Decimal("20.0") == old_row["discount_percent_off"]
        assert new_row["mrr_minor"] == old_row["mrr_minor"] == 799

    def test_involuntary_cancellation(self) -> None:
        row, _ = map_subscription(new_subscription(
            status="canceled", canceled_at=T1, ended_at=T1,
            cancellation_details={"reason": "payment_failed", "feedback": None, "comment": None}))
        assert (row["churn_kind"], row["cancellation_reason"], row["mrr_minor"]) == ("involuntary", "payment_failed", 0)
        assert row["ended_at"] == at("2026-02-01 00:00")

    def test_voluntary_scheduled_cancel_and_pause(self) -> None:
        row, _ = map_subscription(new_subscription(
            cancel_at_period_end=True, cancel_at=T1,
            cancellation_details={"reason": "cancellation_requested", "feedback": "too_expensive", "comment": "pricey"},
            pause_collection={"behavior": "void", "resumes_at": T1}))
        assert row["churn_kind"] == "voluntary" and row["cancellation_feedback"] == "too_expensive"
        assert row["pause_behavior"] == "void" and row["pause_resumes_at"] == at("2026-02-01 00:00")
        assert row["mrr_minor"] == 0  # collection paused with void

    def test_yearly_yen_mrr(self) -> None:
        sub = new_subscription(currency="jpy")
        sub["items"]["data"][0]["price"] = YEARLY_JPY
        row, _ = map_subscription(sub)
        assert (row["currency"], row["mrr_minor"]) == ("JPY", 1000)


class TestInvoice:
    def test_both_shapes_give_the_same_row(self) -> None:
        new_row, new_lines = map_invoice(new_invoice())
        old_row, old_lines = map_invoice(old_invoice())
        assert new_row["stripe_subscription_id"] == old_row["stripe_subscription_id"] == "sub_1"
        assert new_row["payment_refs"] == ["pi_1"]
        assert old_row["payment_refs"] == ["pi_1", "ch_1"]
        for key in ("paid_at", "finalized_at", "attempt_count", "billing_reason", "tax", "total", "currency"):
            assert new_row[key] == old_row[key], key
        assert new_row["paid_at"] == at("2026-02-04 00:00")
        assert new_lines == old_lines
        assert new_lines[0]["stripe_price_id"] == "price_pm" and new_lines[0]["proration"] is False

    def test_taxes_summed(self) -> None:
        row, _ = map_invoice(new_invoice(total_taxes=[{"amount": 100}, {"amount": 50}]))
        assert row["tax"] == 150


class TestCharge:
    def test_failed_charge_decline_code_and_card(self) -> None:
        row = map_charge(CHARGE_FAILED)
        assert (row["status"], row["failure_code"], row["decline_code"]) == ("failed", "card_declined",
                                                                             "insufficient_funds")
        assert (row["card_brand"], row["card_country"], row["card_last4"], row["wallet"]) == (
            "visa", "GB", "9995", "apple_pay")
        assert row["stripe_invoice_id"] is None  # today's charge carries no invoice
        assert row["created_at"] == at("2026-02-01 00:00")

    def test_older_shape_invoice_link_and_failure_code_as_decline(self) -> None:
        charge = dict(CHARGE_FAILED, invoice="in_1", failure_code="expired_card", outcome={"type": "issuer_declined"},
                      balance_transaction={"id": "txn_1", "fee": 59})
        row = map_charge(charge)
        assert (row["stripe_invoice_id"], row["decline_code"], row["fee"]) == ("in_1", "expired_card", 59)

    def test_succeeded_charge_has_no_decline(self) -> None:
        row = map_charge(dict(CHARGE_FAILED, status="succeeded", failure_code=None, failure_message=None,
                              outcome={"type": "authorized", "reason": None}, amount_refunded=300, disputed=True))
        assert row["decline_code"] is None and row["amount_refunded"] == 300 and row["disputed"] is True


class TestRefundDispute:
    def test_refund(self) -> None:
        row = map_refund({"id": "re_1", "charge": {"id": "ch_1"}, "amount": 500, "currency": "eur",
                          "status": "succeeded", "reason": "requested_by_customer", "created": T1})
        assert (row["stripe_charge_id"], row["currency"], row["amount"]) == ("ch_1", "EUR", 500)

    def test_dispute_closed_only_when_won_or_lost(self) -> None:
        base = {"id": "dp_1", "charge": "ch_1", "amount": 999, "currency": "usd", "reason": "fraudulent",
                "created": T0}
        assert map_dispute(dict(base, status="needs_response"), at("2026-02-01 00:00"))["closed_at"] is None
        assert map_dispute(dict(base, status="lost"), at("2026-02-01 00:00"))["closed_at"] == at("2026-02-01 00:00")
