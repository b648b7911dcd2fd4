"""Payment intents, charges, refunds and disputes, and the one place a card is charged.

``charge_card`` decides the outcome from the payment method's test card and writes the payment
intent, the charge (with ``outcome.reason`` = the decline code) and, for the dispute card, a
dispute; it emits the events Stripe emits for them.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from stripe_sandbox.api import Api, KeepAndFail, new_id
from stripe_sandbox.balance import dispute_reinstatement, dispute_withdrawal, fee_of, full_shape
from stripe_sandbox.cards import DECLINES, Decline, outcome_of_imported
from stripe_sandbox.errors import StripeError, invalid, missing_param
from stripe_sandbox.forms import metadata_update, to_bool, to_int

NO_PAYMENT_METHOD = Decline("payment_method_missing", "", "The customer has no default payment method.")


@dataclass
class Attempt:
    intent: dict[str, Any]
    charge: dict[str, Any] | None
    decline: Decline | None

    @property
    def ok(self) -> bool:
        return self.decline is None


def register(api: Api) -> None:
    pay = Payments(api)
    api.route("POST", "/v1/payment_intents", pay.create_intent)
    api.route("GET", "/v1/payment_intents", lambda p: api.list("payment_intent", p, "/v1/payment_intents", _cus(p)))
    api.route("GET", "/v1/payment_intents/{id}", lambda p, id: api.load(id, "payment_intent"))
    api.route("POST", "/v1/payment_intents/{id}", pay.update_intent)
    api.route("POST", "/v1/payment_intents/{id}/confirm", pay.confirm_intent)
    api.route("POST", "/v1/payment_intents/{id}/cancel", pay.cancel_intent)
    api.route("GET", "/v1/charges", lambda p: api.list("charge", p, "/v1/charges", _cus(p, ref="payment_intent")))
    api.route("GET", "/v1/charges/{id}", lambda p, id: api.load(id, "charge"))
    api.route("POST", "/v1/charges/{id}", pay.update_charge)
    api.route("POST", "/v1/refunds", pay.create_refund)
    api.route("GET", "/v1/refunds", pay.list_refunds)
    api.route("GET", "/v1/refunds/{id}", lambda p, id: api.load(id, "refund"))
    api.route("GET", "/v1/balance_transactions", pay.list_balance_transactions)
    api.route("GET", "/v1/balance_transactions/{id}", lambda p, id: api.load(id, "balance_transaction"))
    api.route("GET", "/v1/disputes", pay.list_disputes)
    api.route("GET", "/v1/disputes/{id}", lambda p, id: api.load(id, "dispute"))
    api.route("POST", "/v1/disputes/{id}", pay.update_dispute)
    api.route("POST", "/v1/disputes/{id}/close", pay.close_dispute)


def balance_transaction(api: Api, *, source: str, amount: int, currency: str, created: int, kind: str,
                        description: str | None) -> dict[str, Any]:
    """Store the balance transaction of a succeeded charge (Stripe's fee taken) or of a refund."""
    fee = fee_of(amount, currency) if kind == "charge" else 0
    txn = full_shape({"id": new_id("txn"), "amount": amount, "fee": fee, "currency": currency,
                      "description": description}, source=source, created=created, kind=kind)
    return api.save(txn)


def _cus(p: dict[str, Any], ref: str | None = None) -> list[tuple[str, list[Any]]]:
    where: list[tuple[str, list[Any]]] = []
    if p.get("customer"):
        where.append(("customer = ?", [p["customer"]]))
    if ref and p.get(ref):
        where.append(("ref = ?", [p[ref]]))
    return where


def new_intent(api: Api, *, amount: int, currency: str, customer: str | None, pm: str | None,
               description: str | None = None, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    pi_id = new_id("pi")
    intent = {
        "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0,
        "amount_details": {"tip": {}}, "amount_received": 0, "application": None, "application_fee_amount": None,
        "automatic_payment_methods": None, "canceled_at": None, "cancellation_reason": None,
        "capture_method": "automatic_async", "client_secret": f"{pi_id}_secret_{secrets.token_hex(8)}",
        "confirmation_method": "automatic", "created": api.now(customer), "currency": currency,
        "customer": customer, "description": description, "last_payment_error": None, "latest_charge": None,
        "livemode": False, "metadata": metadata or {}, "next_action": None, "on_behalf_of": None,
        "payment_method": pm, "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"], "processing": None, "receipt_email": None, "review": None,
        "setup_future_usage": None, "shipping": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method" if not pm else "requires_confirmation",
        "transfer_data": None, "transfer_group": None,
    }
    api.save(intent)
    api.emit("payment_intent.created", intent)
    return intent


def charge_card(api: Api, intent: dict[str, Any], pm_id: str | None) -> Attempt:
    """Confirm ``intent`` with the payment method: one charge, its events, maybe a dispute."""
    customer = intent.get("customer")
    pm = api.get(pm_id) if pm_id else None
    if pm is None:
        intent.update(status="requires_payment_method", payment_method=None)
        intent["last_payment_error"] = {"type": "invalid_request_error", "code": "payment_method_missing",
                                        "message": NO_PAYMENT_METHOD.message}
        api.save(intent)
        api.emit("payment_intent.payment_failed", intent)
        return Attempt(intent, None, NO_PAYMENT_METHOD)
    outcome = (pm.get("_sandbox") or {}).get("outcome") or outcome_of_imported(pm.get("card") or {})
    decline = DECLINES.get(outcome)
    now = api.now(customer)
    ch_id = new_id("ch")
    card = pm["card"]
    charge = {
        "id": ch_id, "object": "charge", "amount": intent["amount"], "amount_captured": 0 if decline else intent["amount"],
        "amount_refunded": 0, "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": None if decline else balance_transaction(
            api, source=ch_id, amount=intent["amount"], currency=intent["currency"], created=now,
            kind="charge", description=intent.get("description"))["id"],
        "billing_details": pm["billing_details"], "calculated_statement_descriptor": "MEMBERDESK",
        "captured": decline is None, "created": now, "currency": intent["currency"], "customer": customer,
        "description": intent.get("description"), "disputed": False,
        "failure_balance_transaction": None, "failure_code": decline.code if decline else None,
        "failure_message": decline.message if decline else None, "fraud_details": {}, "livemode": False,
        "metadata": intent.get("metadata") or {}, "on_behalf_of": None,
        "outcome": _outcome(decline), "paid": decline is None, "payment_intent": intent["id"],
        "payment_method": pm["id"],
        "payment_method_details": {"type": "card", "card": {
            "amount_authorized": None if decline else intent["amount"], "brand": card["brand"],
            "checks": card["checks"], "country": card["country"], "exp_month": card["exp_month"],
            "exp_year": card["exp_year"], "fingerprint": card["fingerprint"], "funding": card["funding"],
            "last4": card["last4"], "network": card["brand"], "three_d_secure": None, "wallet": None}},
        "receipt_email": None, "receipt_number": None, "receipt_url": None, "refunded": False,
        "review": None, "shipping": None, "source_transfer": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "failed" if decline else "succeeded", "transfer_data": None,
        "transfer_group": None,
    }
    api.save(charge)
    intent["latest_charge"] = ch_id
    intent["payment_method"] = pm["id"]
    if decline:
        intent["status"] = "requires_payment_method"
        intent["last_payment_error"] = {
            "type": "card_error", "charge": ch_id, "code": decline.code, "decline_code": decline.decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{decline.code.replace('_', '-')}",
            "message": decline.message, "payment_method": _public_pm(pm)}
        api.save(intent)
        api.emit("charge.failed", charge)
        api.emit("payment_intent.payment_failed", intent)
        return Attempt(intent, charge, decline)
    intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None)
    api.save(intent)
    api.emit("charge.succeeded", charge)
    api.emit("payment_intent.succeeded", intent)
    if outcome == "dispute":
        _open_dispute(api, charge)
    return Attempt(intent, charge, None)


def card_error(attempt: Attempt) -> StripeError:
    d = attempt.decline
    assert d is not None
    if d is NO_PAYMENT_METHOD:
        return invalid("This customer has no attached payment source or default payment method.",
                       code="resource_missing", param="payment_method")
    extra: dict[str, Any] = {"payment_intent": attempt.intent}
    if attempt.charge:
        extra["charge"] = attempt.charge["id"]
    return StripeError(402, "card_error", d.message, code=d.code, decline_code=d.decline_code, extra=extra)


def _public_pm(pm: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pm.items() if k != "_sandbox"}


def _outcome(decline: Decline | None) -> dict[str, Any]:
    if decline is None:
        return {"advice_code": None, "network_advice_code": None, "network_decline_code": None,
                "network_status": "approved_by_network", "reason": None, "risk_level": "normal", "risk_score": 20,
                "seller_message": "Payment complete.", "type": "authorized"}
    return {"advice_code": "do_not_try_again" if decline.hard else "try_again_later", "network_advice_code": None,
            "network_decline_code": None, "network_status": "declined_by_network", "reason": decline.decline_code,
            "risk_level": "normal", "risk_score": 30,
            "seller_message": f"The bank returned the decline code `{decline.decline_code}`.",
            "type": "issuer_declined"}


def _reinstate(api: Api, dispute: dict[str, Any]) -> None:
    """A won dispute gets its amount back: a second balance transaction, dated the close."""
    txn = dispute_reinstatement(new_id("txn"), dispute, api.now(dispute.get("_sandbox", {}).get("customer")))
    api.save(txn)
    dispute["balance_transactions"] = [*dispute.get("balance_transactions", []), txn]


def _open_dispute(api: Api, charge: dict[str, Any]) -> None:
    now = api.now(charge.get("customer"))
    card = charge["payment_method_details"]["card"]
    dispute = {
        "id": new_id("dp"), "object": "dispute", "amount": charge["amount"], "balance_transactions": [],
        "charge": charge["id"], "created": now, "currency": charge["currency"], "enhanced_eligibility_types": [],
        "evidence": {"customer_email_address": None, "customer_name": None, "product_description": None,
                     "uncategorized_text": None},
        "evidence_details": {"due_by": now + 8 * 86400, "enhanced_eligibility": {}, "has_evidence": False,
                             "past_due": False, "submission_count": 0},
        "is_charge_refundable": False, "livemode": False, "metadata": {}, "payment_intent": charge["payment_intent"],
        "payment_method_details": {"type": "card", "card": {"brand": card["brand"], "case_type": "chargeback",
                                                            "network_reason_code": "10.4"}},
        "reason": "fraudulent", "status": "needs_response",
        "_sandbox": {"customer": charge.get("customer")},
    }
    withdrawal = dispute_withdrawal(new_id("txn"), dispute, now)
    api.save(withdrawal)
    dispute["balance_transactions"] = [withdrawal]
    api.save(dispute)
    charge["disputed"] = True
    api.save(charge)
    api.emit("charge.dispute.created", dispute)


class Payments:
    def __init__(self, api: Api) -> None:
        self.api = api

    def create_intent(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        for req in ("amount", "currency"):
            if p.get(req) in (None, ""):
                raise missing_param(req)
        amount = to_int(p["amount"], "amount")
        if amount < 1:
            raise invalid("Amount must be at least 1.", param="amount", code="amount_too_small")
        customer = p.get("customer") or None
        if customer:
            api.load(customer, "customer", "customer")
        pm_id = None
        if p.get("payment_method"):
            from stripe_sandbox.resources.catalog import Catalog
            pm_id = Catalog(api).resolve_pm(p["payment_method"], param="payment_method")["id"]
        intent = new_intent(api, amount=amount, currency=str(p["currency"]).lower(), customer=customer, pm=pm_id,
                            description=p.get("description") or None,
                            metadata=metadata_update({}, p.get("metadata") or {}))
        if to_bool(p.get("confirm", False), "confirm"):
            attempt = charge_card(api, intent, pm_id)
            if not attempt.ok:
                raise KeepAndFail(card_error(attempt))  # Stripe keeps the failed charge
        return intent

    def update_intent(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        intent = self.api.load(id, "payment_intent")
        if "metadata" in p:
            intent["metadata"] = metadata_update(intent.get("metadata"), p["metadata"])
        if "description" in p:
            intent["description"] = p["description"] or None
        self.api.save(intent)
        return intent

    def confirm_intent(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        intent = api.load(id, "payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            raise invalid(f"This PaymentIntent's status is {intent['status']}, so it cannot be confirmed.",
                          code="payment_intent_unexpected_state")
        pm_id = intent.get("payment_method")
        if p.get("payment_method"):
            from stripe_sandbox.resources.catalog import Catalog
            pm_id = Catalog(api).resolve_pm(p["payment_method"], param="payment_method")["id"]
        attempt = charge_card(api, intent, pm_id)
        if not attempt.ok:
            raise KeepAndFail(card_error(attempt))
        return intent

    def cancel_intent(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        intent = self.api.load(id, "payment_intent")
        if intent["status"] in ("succeeded", "canceled"):
            raise invalid(f"You cannot cancel this PaymentIntent because it has a status of {intent['status']}.",
                          code="payment_intent_unexpected_state")
        intent.update(status="canceled", canceled_at=self.api.now(intent.get("customer")),
                      cancellation_reason=p.get("cancellation_reason") or None)
        self.api.save(intent)
        self.api.emit("payment_intent.canceled", intent)
        return intent

    def update_charge(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        charge = self.api.load(id, "charge")
        before = {"metadata": charge.get("metadata"), "description": charge.get("description")}
        if "metadata" in p:
            charge["metadata"] = metadata_update(charge.get("metadata"), p["metadata"])
        if "description" in p:
            charge["description"] = p["description"] or None
        self.api.save(charge)
        self.api.emit("charge.updated", charge, before)
        return charge

    # -- refunds ------------------------------------------------------------------------------
    def create_refund(self, p: dict[str, Any]) -> dict[str, Any]:
        api = self.api
        if p.get("charge"):
            charge = api.load(p["charge"], "charge", "charge")
        elif p.get("payment_intent"):
            intent = api.load(p["payment_intent"], "payment_intent", "payment_intent")
            if not intent.get("latest_charge"):
                raise invalid(f"This PaymentIntent ({intent['id']}) does not have a successful charge to refund.",
                              param="payment_intent")
            charge = api.load(intent["latest_charge"], "charge", "payment_intent")
        else:
            raise invalid("One of the following params should be provided for this request: charge or payment_intent.")
        if charge["status"] != "succeeded":
            raise invalid(f"Charge {charge['id']} has not succeeded and cannot be refunded.", param="charge")
        if charge.get("disputed"):
            raise invalid(f"Charge {charge['id']} has been charged back; cannot issue a refund.",
                          code="charge_disputed", param="charge")
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining <= 0:
            raise invalid(f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded",
                          param="charge")
        amount = to_int(p["amount"], "amount") if p.get("amount") not in (None, "") else remaining
        if amount < 1:
            raise invalid("Refund amount must be at least 1.", param="amount", code="amount_too_small")
        if amount > remaining:
            raise invalid(f"Refund amount ({_fmt(amount, charge['currency'])}) is greater than unrefunded amount "
                          f"on charge ({_fmt(remaining, charge['currency'])})", param="amount",
                          code="amount_too_large")
        reason = p.get("reason") or None
        if reason not in (None, "duplicate", "fraudulent", "requested_by_customer"):
            raise invalid("Invalid reason: must be one of duplicate, fraudulent, or requested_by_customer",
                          param="reason")
        customer = charge.get("customer")
        refund = {
            "id": (re_id := new_id("re")), "object": "refund", "amount": amount,
            "balance_transaction": balance_transaction(api, source=re_id, amount=-amount, currency=charge["currency"],
                                                       created=api.now(charge.get("customer")), kind="refund",
                                                       description="REFUND FOR CHARGE")["id"],
            "charge": charge["id"], "created": api.now(customer), "currency": charge["currency"],
            "destination_details": {"type": "card", "card": {"reference_status": "available", "type": "refund"}},
            "metadata": metadata_update({}, p.get("metadata") or {}), "payment_intent": charge["payment_intent"],
            "reason": reason, "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded",
            "transfer_reversal": None, "customer": customer, "customer_account": None,
            "payment_method": charge.get("payment_method"),
        }
        api.save(refund)
        previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        api.save(charge)
        api.emit("refund.created", refund)
        api.emit("charge.refunded", charge, previous)
        return refund

    def list_refunds(self, p: dict[str, Any]) -> dict[str, Any]:
        where = _cus(p, ref="charge")
        if p.get("payment_intent"):
            where.append(("json_extract(data, '$.payment_intent') = ?", [p["payment_intent"]]))
        return self.api.list("refund", p, "/v1/refunds", where)

    def list_balance_transactions(self, p: dict[str, Any]) -> dict[str, Any]:
        where: list[tuple[str, list[Any]]] = []
        if p.get("source"):
            where.append(("ref = ?", [p["source"]]))
        if p.get("type"):
            where.append(("json_extract(data, '$.type') = ?", [p["type"]]))
        return self.api.list("balance_transaction", p, "/v1/balance_transactions", where)

    # -- disputes -----------------------------------------------------------------------------
    def list_disputes(self, p: dict[str, Any]) -> dict[str, Any]:
        where = _cus(p, ref="charge")
        if p.get("payment_intent"):
            where.append(("json_extract(data, '$.payment_intent') = ?", [p["payment_intent"]]))
        return self.api.list("dispute", p, "/v1/disputes", where)

    def update_dispute(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        api = self.api
        dispute = api.load(id, "dispute")
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"This dispute is already closed ({dispute['status']}).")
        previous = {"status": dispute["status"], "evidence": dict(dispute["evidence"])}
        if isinstance(p.get("evidence"), dict):
            dispute["evidence"].update(p["evidence"])
            dispute["evidence_details"]["has_evidence"] = True
        if "metadata" in p:
            dispute["metadata"] = metadata_update(dispute.get("metadata"), p["metadata"])
        if to_bool(p.get("submit", False), "submit"):
            dispute["evidence_details"]["submission_count"] += 1
            text = dispute["evidence"].get("uncategorized_text") or ""
            # Stripe's test evidence strings decide the result at once.
            dispute["status"] = ("won" if text == "winning_evidence" else
                                 "lost" if text == "losing_evidence" else "under_review")
        if dispute["status"] == "won":
            _reinstate(api, dispute)
        api.save(dispute)
        api.emit("charge.dispute.updated", dispute, previous)
        if dispute["status"] in ("won", "lost"):
            api.emit("charge.dispute.closed", dispute)
        return dispute

    def close_dispute(self, p: dict[str, Any], id: str) -> dict[str, Any]:
        dispute = self.api.load(id, "dispute")
        if dispute["status"] in ("won", "lost"):
            raise invalid(f"This dispute is already closed ({dispute['status']}).")
        previous = {"status": dispute["status"]}
        dispute["status"] = "lost"
        self.api.save(dispute)
        self.api.emit("charge.dispute.closed", dispute, previous)
        return dispute


def _fmt(amount: int, currency: str) -> str:
    if currency.lower() in ("jpy", "krw", "vnd", "clp"):
        return f"{amount} {currency.upper()}"
    return f"{amount / 100:.2f} {currency.upper()}"

