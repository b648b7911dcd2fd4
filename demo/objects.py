"""Builders of Stripe-shaped dicts in today's API shape (2026-10-28), as the sandbox serves them.

Times are epoch seconds, currencies lower-case, amounts integer minor units: exactly what
``obj.to_dict()`` gives for a real object. Only the fields Memberdesk reads, plus the identity
fields every Stripe object has, are filled.
"""

from __future__ import annotations

from typing import Any

from demo.catalogue import CATALOGUE_CREATED, PRICES, TIERS, price_id
from stripe_sandbox.balance import dispute_reinstatement, dispute_withdrawal

Obj = dict[str, Any]


def products() -> list[Obj]:
    return [{"id": pid, "object": "product", "name": name, "active": True, "created": CATALOGUE_CREATED,
             "metadata": {"tier": code, "rank": str(rank)}, "livemode": False, "type": "service"}
            for code, name, rank, pid in TIERS if pid]


def prices() -> list[Obj]:
    out = []
    for (tier, interval), amounts in PRICES.items():
        for currency, amount in amounts.items():
            out.append({
                "id": price_id(tier, interval, currency), "object": "price", "active": True,
                "product": f"prod_demo_{tier}", "currency": currency.lower(), "unit_amount": amount,
                "unit_amount_decimal": str(amount), "type": "recurring", "billing_scheme": "per_unit",
                "recurring": {"interval": interval, "interval_count": 1, "usage_type": "licensed"},
                "nickname": f"{tier.title()} {interval}ly {currency}", "created": CATALOGUE_CREATED,
                "livemode": False, "metadata": {}, "lookup_key": f"{tier}_{interval}_{currency.lower()}",
            })
    return out


PRICE_OBJECTS: dict[str, Obj] = {p["id"]: p for p in prices()}


def customer(cid: str, *, created: int, email: str, name: str, phone: str | None, address: Obj,
             currency: str, default_pm: str | None, invoice_prefix: str) -> Obj:
    # Stripe gives each customer its own invoice prefix, so invoice numbers never repeat across
    # customers; ``next_invoice_sequence`` is set when the story ends (demo/simulate.py).
    return {"id": cid, "object": "customer", "created": created, "email": email, "name": name, "phone": phone,
            "invoice_prefix": invoice_prefix,
            "address": address, "currency": currency.lower(), "livemode": False, "metadata": {},
            "invoice_settings": {"default_payment_method": default_pm, "custom_fields": None, "footer": None},
            "delinquent": False, "balance": 0, "description": None}


def payment_method(pmid: str, *, customer_id: str, created: int, name: str, email: str, country: str,
                   postal_code: str, brand: str, last4: str, exp_month: int, exp_year: int, card_country: str,
                   funding: str, wallet: str | None) -> Obj:
    return {
        "id": pmid, "object": "payment_method", "type": "card", "customer": customer_id, "created": created,
        "livemode": False, "metadata": {},
        "billing_details": {"name": name, "email": email, "phone": None,
                            "address": {"country": country, "postal_code": postal_code, "city": None,
                                        "line1": None, "line2": None, "state": None}},
        "card": {"brand": brand, "display_brand": brand, "last4": last4, "exp_month": exp_month,
                 "exp_year": exp_year, "country": card_country, "funding": funding,
                 "wallet": {"type": wallet} if wallet else None,
                 "checks": {"cvc_check": "pass", "address_postal_code_check": "pass", "address_line1_check": None}},
    }


def sub_items(sid: str, item_id: str, price: Obj, quantity: int, start: int, end: int, created: int) -> Obj:
    return {"object": "list", "has_more": False, "total_count": 1, "url": f"/v1/subscription_items?subscription={sid}",
            "data": [{"id": item_id, "object": "subscription_item", "price": price, "quantity": quantity,
                      "current_period_start": start, "current_period_end": end, "subscription": sid,
                      "created": created, "metadata": {}, "discounts": []}]}


NO_CANCELLATION: Obj = {"reason": None, "feedback": None, "comment": None}


def subscription(sid: str, *, customer_id: str, created: int, status: str, items: Obj, currency: str,
                 default_pm: str | None, trial_start: int | None, trial_end: int | None, anchor: int,
                 discounts: list[Obj]) -> Obj:
    return {
        "id": sid, "object": "subscription", "customer": customer_id, "status": status,
        "currency": currency.lower(), "created": created, "start_date": created, "billing_cycle_anchor": anchor,
        "cancel_at_period_end": False, "cancel_at": None, "canceled_at": None, "ended_at": None,
        "trial_start": trial_start, "trial_end": trial_end, "cancellation_details": NO_CANCELLATION,
        "pause_collection": None, "default_payment_method": default_pm, "discounts": discounts,
        "collection_method": "charge_automatically", "latest_invoice": None, "livemode": False,
        "metadata": {}, "items": items,
    }


def discount(did: str, *, sid: str, customer_id: str, start: int, percent_off: int) -> Obj:
    coupon = {"id": f"DEMO{percent_off}", "object": "coupon", "percent_off": float(percent_off), "amount_off": None,
              "currency": None, "duration": "forever", "duration_in_months": None, "name": f"{percent_off}% off",
              "valid": True, "created": CATALOGUE_CREATED}
    return {"id": did, "object": "discount", "source": {"type": "coupon", "coupon": coupon}, "start": start,
            "end": None, "subscription": sid, "customer": customer_id, "invoice": None, "invoice_item": None,
            "promotion_code": None}


def invoice(inv_id: str, *, customer_id: str, sid: str, number: str, created: int, billing_reason: str,
            currency: str, subtotal: int, total: int, line_id: str, price: Obj, item_id: str, quantity: int,
            period_start: int, period_end: int, description: str) -> Obj:
    cur = currency.lower()
    return {
        "id": inv_id, "object": "invoice", "customer": customer_id, "number": number, "created": created,
        "status": "draft", "billing_reason": billing_reason, "currency": cur, "collection_method": "charge_automatically",
        "subtotal": subtotal, "total": total, "total_taxes": [], "amount_due": total, "amount_paid": 0,
        "amount_remaining": total, "period_start": period_start, "period_end": period_end, "attempt_count": 0,
        "attempted": False, "next_payment_attempt": None, "due_date": None, "hosted_invoice_url": None,
        "livemode": False, "metadata": {},
        "status_transitions": {"finalized_at": None, "paid_at": None, "voided_at": None,
                               "marked_uncollectible_at": None},
        "parent": {"type": "subscription_details", "quote_details": None,
                   "subscription_details": {"subscription": sid, "metadata": {}}},
        "payments": {"object": "list", "data": [], "has_more": False, "url": f"/v1/invoice_payments?invoice={inv_id}"},
        "lines": {"object": "list", "has_more": False, "total_count": 1, "url": f"/v1/invoices/{inv_id}/lines",
                  "data": [{"id": line_id, "object": "line_item", "invoice": inv_id, "amount": subtotal,
                            "currency": cur, "quantity": quantity, "description": description,
                            "period": {"start": period_start, "end": period_end}, "subtotal": subtotal,
                            "pricing": {"type": "price_details", "unit_amount_decimal": str(price["unit_amount"]),
                                        "price_details": {"price": price["id"], "product": price["product"]}},
                            "parent": {"type": "subscription_item_details",
                                       "subscription_item_details": {"subscription_item": item_id,
                                                                     "subscription": sid, "proration": False,
                                                                     "invoice_item": None}},
                            "discounts": [], "metadata": {}, "livemode": False}]},
    }


def payment_intent(pi_id: str, *, customer_id: str, amount: int, currency: str, created: int, pm: str) -> Obj:
    return {"id": pi_id, "object": "payment_intent", "amount": amount, "amount_received": 0,
            "currency": currency.lower(), "customer": customer_id, "created": created, "status": "processing",
            "payment_method": pm, "latest_charge": None, "last_payment_error": None, "livemode": False,
            "metadata": {}, "capture_method": "automatic", "confirmation_method": "automatic",
            "payment_method_types": ["card"], "description": "Subscription update"}


def charge(ch_id: str, *, pi: Obj, created: int, pm: Obj, status: str, code: str | None,
           failure_code: str | None, message: str | None, fee: int | None) -> Obj:
    card = pm["card"]
    ok = status == "succeeded"
    return {
        "id": ch_id, "object": "charge", "amount": pi["amount"], "amount_captured": pi["amount"] if ok else 0,
        "amount_refunded": 0, "currency": pi["currency"], "customer": pi["customer"], "created": created,
        "payment_intent": pi["id"], "payment_method": pm["id"], "status": status, "paid": ok, "captured": ok,
        "refunded": False, "disputed": False, "failure_code": failure_code, "failure_message": message,
        "outcome": {"type": "authorized" if ok else "issuer_declined", "reason": code,
                    "network_status": "approved_by_network" if ok else "declined_by_network",
                    "risk_level": "normal", "seller_message": "Payment complete." if ok else "The bank declined."},
        "payment_method_details": {"type": "card", "card": {
            "brand": card["brand"], "country": card["country"], "last4": card["last4"],
            "exp_month": card["exp_month"], "exp_year": card["exp_year"], "funding": card["funding"],
            "wallet": card["wallet"]}},
        "balance_transaction": ({"id": "txn_" + ch_id[3:], "object": "balance_transaction", "amount": pi["amount"],
                                 "fee": fee, "net": pi["amount"] - fee, "currency": pi["currency"]}
                                if ok and fee is not None else None),
        "livemode": False, "metadata": {}, "description": "Subscription update", "receipt_email": None,
        "billing_details": pm["billing_details"],
    }


def refund(re_id: str, *, ch: Obj, amount: int, created: int, reason: str) -> Obj:
    return {"id": re_id, "object": "refund", "amount": amount, "charge": ch["id"], "currency": ch["currency"],
            "created": created, "payment_intent": ch["payment_intent"], "reason": reason, "status": "succeeded",
            "metadata": {}, "balance_transaction": None}


def dispute(dp_id: str, *, ch: Obj, created: int, reason: str, status: str, closed: int | None = None) -> Obj:
    """A dispute with Stripe's balance transactions: the withdrawal when it opened and, once won, the
    reinstatement dated its close (the only close time Stripe's dispute object carries)."""
    base = {"id": dp_id, "amount": ch["amount"], "currency": ch["currency"], "charge": ch["id"]}
    txns = [dispute_withdrawal("txn_" + dp_id[3:] + "w", base, created)]
    if status == "won" and closed is not None:
        txns.append(dispute_reinstatement("txn_" + dp_id[3:] + "r", base, closed))
    return {"id": dp_id, "object": "dispute", "amount": ch["amount"], "charge": ch["id"], "currency": ch["currency"],
            "balance_transactions": txns,
            "created": created, "payment_intent": ch["payment_intent"], "reason": reason, "status": status,
            "is_charge_refundable": False, "livemode": False, "metadata": {},
            "evidence_details": {"due_by": created + 14 * 86400, "has_evidence": status != "needs_response",
                                 "past_due": False, "submission_count": 0 if status == "needs_response" else 1}}
