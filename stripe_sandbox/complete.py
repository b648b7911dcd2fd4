"""Fill in the fields an imported object left out, so partial objects (the demo world stores only
the fields Memberdesk reads) are served in full shape and can go through every action.

Only missing keys are added; nothing present is changed.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, overload

_NULL_ADDRESS = {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None}

_TEMPLATES: dict[str, dict[str, Any]] = {
    "customer": {
        "address": None, "balance": 0, "currency": None, "default_source": None, "delinquent": False,
        "description": None, "discount": None, "email": None, "livemode": False, "metadata": {}, "name": None,
        "next_invoice_sequence": 1, "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
        "test_clock": None,
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None,
                             "rendering_options": None},
    },
    "product": {
        "active": True, "default_price": None, "description": None, "images": [], "livemode": False,
        "marketing_features": [], "metadata": {}, "package_dimensions": None, "shippable": None,
        "statement_descriptor": None, "tax_code": None, "type": "service", "unit_label": None, "url": None,
    },
    "price": {
        "active": True, "billing_scheme": "per_unit", "custom_unit_amount": None, "livemode": False,
        "lookup_key": None, "metadata": {}, "nickname": None, "recurring": None, "tax_behavior": "unspecified",
        "tiers_mode": None, "transform_quantity": None, "type": "one_time",
    },
    "payment_method": {
        "allow_redisplay": "unspecified", "customer": None, "customer_account": None, "livemode": False, "metadata": {}, "type": "card",
        "billing_details": {"address": _NULL_ADDRESS, "email": None, "name": None, "phone": None},
    },
    "subscription": {
        "application": None, "application_fee_percent": None,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
        "billing_cycle_anchor_config": None, "billing_schedules": [], "customer_account": None,
        "managed_payments": None, "billing_mode": {"flexible": None, "type": "classic", "updated_at": None},
        "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False, "canceled_at": None,
        "cancellation_details": {"comment": None, "feedback": None, "reason": None},
        "collection_method": "charge_automatically", "days_until_due": None, "default_payment_method": None,
        "default_source": None, "default_tax_rates": [], "description": None, "discounts": [], "ended_at": None,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}}, "latest_invoice": None,
        "livemode": False, "metadata": {}, "next_pending_invoice_item_invoice": None, "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                             "save_default_payment_method": "off"},
        "pending_invoice_item_interval": None, "pending_setup_intent": None, "pending_update": None,
        "schedule": None, "test_clock": None, "transfer_data": None, "trial_end": None,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}}, "trial_start": None,
    },
    "invoice": {
        "account_country": "US", "account_name": "Memberdesk Sandbox", "account_tax_ids": None, "amount_overpaid": 0,
        "amount_shipping": 0, "application": None, "attempt_count": 0, "attempted": False, "auto_advance": False,
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None,
                          "status": None},
        "automatically_finalizes_at": None, "collection_method": "charge_automatically", "confirmation_secret": None,
        "custom_fields": None, "customer_account": None, "customer_address": None, "customer_email": None, "customer_name": None,
        "customer_phone": None, "customer_shipping": None, "customer_tax_exempt": "none", "customer_tax_ids": [],
        "default_payment_method": None, "default_source": None, "default_tax_rates": [], "description": None,
        "discounts": [], "due_date": None, "effective_at": None, "ending_balance": None, "footer": None,
        "from_invoice": None, "hosted_invoice_url": None, "invoice_pdf": None, "issuer": {"type": "self"},
        "last_finalization_error": None, "latest_revision": None, "livemode": False, "metadata": {},
        "next_payment_attempt": None, "number": None, "on_behalf_of": None, "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0, "receipt_number": None,
        "rendering": None, "shipping_cost": None, "shipping_details": None, "starting_balance": 0,
        "statement_descriptor": None, "subtotal_excluding_tax": None, "test_clock": None,
        "total_discount_amounts": [], "total_excluding_tax": None, "total_pretax_credit_amounts": [],
        "total_taxes": [], "webhooks_delivered_at": None,
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None,
                               "voided_at": None},
    },
    "payment_intent": {
        "amount_capturable": 0, "amount_details": {"tip": {}}, "amount_received": 0, "application": None,
        "application_fee_amount": None, "automatic_payment_methods": None, "canceled_at": None,
        "cancellation_reason": None, "capture_method": "automatic_async", "client_secret": None,
        "customer_account": None, "excluded_payment_method_types": None, "managed_payments": None,
        "payment_method_configuration_details": None, "source": None,
        "confirmation_method": "automatic", "customer": None, "description": None, "last_payment_error": None,
        "latest_charge": None, "livemode": False, "metadata": {}, "next_action": None, "on_behalf_of": None,
        "payment_method": None, "payment_method_options": None, "payment_method_types": ["card"], "processing": None,
        "receipt_email": None, "review": None, "setup_future_usage": None, "shipping": None,
        "statement_descriptor": None, "statement_descriptor_suffix": None, "transfer_data": None,
        "transfer_group": None,
    },
    "charge": {
        "amount_refunded": 0, "application": None, "application_fee": None,
        "application_fee_amount": None, "balance_transaction": None, "calculated_statement_descriptor": None,
        "customer": None, "description": None, "disputed": False,
        "failure_balance_transaction": None, "failure_code": None, "failure_message": None, "fraud_details": {},
        "livemode": False, "metadata": {}, "on_behalf_of": None, "outcome": None,
        "payment_intent": None, "payment_method": None, "payment_method_details": None, "receipt_email": None,
        "receipt_number": None, "receipt_url": None, "refunded": False, "review": None, "shipping": None,
        "source": None, "source_transfer": None, "statement_descriptor": None, "statement_descriptor_suffix": None,
        "transfer_data": None, "transfer_group": None,
    },
    "refund": {
        # Stripe leaves description, failure_*, instructions_email, next_action and pending_reason out
        # of a refund that has none (its published example has none of them).
        "balance_transaction": None, "customer": None, "customer_account": None, "destination_details": None,
        "metadata": {}, "payment_intent": None, "payment_method": None, "reason": None, "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
        "transfer_reversal": None,
    },
    "dispute": {
        "balance_transactions": [], "enhanced_eligibility_types": [], "is_charge_refundable": False,
        "livemode": False, "metadata": {}, "payment_intent": None, "payment_method_details": None,
        "evidence": {"customer_email_address": None, "customer_name": None, "product_description": None,
                     "uncategorized_text": None},
        "evidence_details": {"due_by": None, "enhanced_eligibility": {}, "has_evidence": False, "past_due": False,
                             "submission_count": 0},
    },
}


def _clone(value: Any) -> Any:
    return copy.deepcopy(value) if isinstance(value, dict | list) and value else (
        {} if isinstance(value, dict) else [] if isinstance(value, list) else value)


# Per template, the keys whose default is a dict (their own missing keys are filled in too).
_NESTED: dict[str, list[tuple[str, dict[str, Any]]]] = {
    kind: [(k, v) for k, v in template.items() if isinstance(v, dict) and v] for kind, template in _TEMPLATES.items()}


def _has_all(obj: dict[str, Any], kind: str, template: dict[str, Any]) -> bool:
    """Whether ``obj`` already has every template field (a stored object usually has: ``import_objects``
    completes objects once, so a list of them is not completed again key by key)."""
    if not obj.keys() >= template.keys():
        return False
    return all(not isinstance(obj[k], dict) or obj[k].keys() >= v.keys() for k, v in _NESTED[kind])


def plan_of(price: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` Stripe still answers on a subscription item: the recurring price, as a plan."""
    recurring = price.get("recurring") or {}
    amount = price.get("unit_amount")
    return {
        "id": price.get("id"), "object": "plan", "active": price.get("active", True), "amount": amount,
        "amount_decimal": None if amount is None else str(amount), "billing_scheme": price.get("billing_scheme", "per_unit"),
        "created": price.get("created"), "currency": price.get("currency"), "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1), "livemode": False, "metadata": price.get("metadata") or {},
        "meter": recurring.get("meter"), "nickname": price.get("nickname"), "product": price.get("product"),
        "tiers_mode": price.get("tiers_mode"), "transform_usage": None,
        "trial_period_days": recurring.get("trial_period_days"), "usage_type": recurring.get("usage_type", "licensed"),
    }


@overload
def complete(obj: dict[str, Any]) -> dict[str, Any]: ...


@overload
def complete(obj: None) -> None: ...


def complete(obj: dict[str, Any] | None) -> dict[str, Any] | None:
    """``obj`` with every missing standard field filled in (in place; also returned)."""
    if not obj or obj.get("deleted"):
        return obj
    kind = obj.get("object")
    template = _TEMPLATES.get(kind or "")
    if template is not None and not _has_all(obj, kind or "", template):
        for key, value in template.items():
            if key not in obj:
                obj[key] = _clone(value)
            elif isinstance(value, dict) and isinstance(obj[key], dict):
                for k2, v2 in value.items():
                    if k2 not in obj[key]:
                        obj[key][k2] = _clone(v2)
    if kind == "customer":
        obj.setdefault("invoice_prefix", obj["id"][4:12].upper())
    elif kind == "product":
        obj.setdefault("updated", obj.get("created"))
    elif kind == "price":
        obj.setdefault("unit_amount_decimal", str(obj.get("unit_amount")))
    elif kind == "payment_method" and isinstance(obj.get("card"), dict):
        card = obj["card"]
        card.setdefault("checks", {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": None})
        card.setdefault("display_brand", card.get("brand"))
        card.setdefault("fingerprint", hashlib.sha256(obj["id"].encode()).hexdigest()[:16])
        card.setdefault("funding", "credit")
        card.setdefault("country", None)
        for k in ("generated_from", "wallet"):
            card.setdefault(k, None)
        card.setdefault("networks", {"available": [card.get("brand")], "preferred": None})
        card.setdefault("regulated_status", "unregulated")
        card.setdefault("three_d_secure_usage", {"supported": True})
    elif kind == "subscription":
        for item in (obj.get("items") or {}).get("data") or []:
            for k, v in (("billing_thresholds", None), ("discounts", []), ("metadata", {}), ("tax_rates", []),
                         ("subscription", obj["id"]), ("created", obj.get("created"))):
                item.setdefault(k, v)
        obj.setdefault("billing_cycle_anchor", obj.get("created"))
        obj.setdefault("start_date", obj.get("created"))
    elif kind == "invoice":
        obj.setdefault("_sandbox", {"intent": None, "first_failed_at": None, "dunning_ends_at": None, "hard": False})
        obj.setdefault("payments", {"object": "list", "data": [], "has_more": False,
                                    "url": f"/v1/invoice_payments?invoice={obj['id']}"})
        obj.setdefault("lines", {"object": "list", "data": [], "has_more": False,
                                 "url": f"/v1/invoices/{obj['id']}/lines"})
        sub_id = ((obj.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        for line in obj["lines"].get("data") or []:
            if "quantity_decimal" not in line and "quantity" in line:
                line["quantity_decimal"] = None if line["quantity"] is None else str(line["quantity"])
            if "taxes" not in line:  # an imported line: the fields every line has
                for k, v in (("discount_amounts", []), ("discountable", True), ("pretax_credit_amounts", []),
                             ("subscription", sub_id), ("taxes", [])):
                    line.setdefault(k, v)
        for k in ("amount_due", "amount_paid", "amount_remaining", "subtotal", "total"):
            obj.setdefault(k, 0)
        if obj.get("subtotal_excluding_tax") is None:
            obj["subtotal_excluding_tax"] = obj.get("subtotal")
        if obj.get("total_excluding_tax") is None:
            obj["total_excluding_tax"] = obj.get("total")
    elif kind == "charge":
        ok = obj.get("status") == "succeeded"
        obj.setdefault("amount_captured", obj.get("amount") if ok else 0)
        obj.setdefault("captured", ok)
        obj.setdefault("paid", ok)
    return obj
