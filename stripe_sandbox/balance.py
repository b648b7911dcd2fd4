"""Balance transactions: what a charge or a refund did to the account's balance, with Stripe's fee.

Stripe answers a charge's ``balance_transaction`` as an id (expandable); the fee lives only on the
balance transaction. The sandbox stores one per succeeded charge and per refund, in Stripe's full
shape, and the demo world's charges (which embed theirs) are split the same way on import.
"""

from __future__ import annotations

from typing import Any

# Stripe's standard card pricing as the sandbox's account has it: 2.9 % + 30 minor units; yen has
# no minor unit, so 3.6 % there. Refunds return no fee.
ZERO_DECIMAL = frozenset({"jpy", "krw", "vnd", "clp", "isk", "ugx", "xaf", "xof"})
SETTLE_DAYS = 2


def fee_of(amount: int, currency: str) -> int:
    if amount <= 0:
        return 0
    if currency.lower() in ZERO_DECIMAL:
        return round(amount * 0.036)
    return round(amount * 0.029) + 30


def full_shape(txn: dict[str, Any], *, source: str, created: int, kind: str = "charge") -> dict[str, Any]:
    """``txn`` (possibly partial: id, amount, fee, net, currency) with every field Stripe answers."""
    amount = int(txn.get("amount") or 0)
    fee = int(txn.get("fee") or 0)
    currency = str(txn.get("currency") or "usd").lower()
    out = {
        "id": txn["id"], "object": "balance_transaction", "amount": amount,
        "available_on": int(txn.get("available_on") or created + SETTLE_DAYS * 86400),
        "balance_type": txn.get("balance_type", "payments"), "created": int(txn.get("created") or created),
        "currency": currency, "description": txn.get("description"), "exchange_rate": txn.get("exchange_rate"),
        "fee": fee,
        "fee_details": txn.get("fee_details", [
            {"amount": fee, "application": None, "currency": currency, "description": "Stripe processing fees",
             "type": "stripe_fee"}] if fee else []),
        "net": int(txn["net"]) if txn.get("net") is not None else amount - fee,
        "reporting_category": txn.get("reporting_category", kind), "source": txn.get("source", source),
        "status": txn.get("status", "available"), "type": txn.get("type", kind),
    }
    return out


DISPUTE_FEE = 1500  # Stripe's dispute fee in the account's currency (minor units), kept on a won dispute too


def dispute_withdrawal(txn_id: str, dispute: dict[str, Any], at: int) -> dict[str, Any]:
    """The balance transaction taking a disputed amount (and the dispute fee) out of the balance."""
    return full_shape({"id": txn_id, "amount": -int(dispute["amount"]), "fee": DISPUTE_FEE,
                       "currency": dispute["currency"], "description": f"Chargeback withdrawal for {dispute['charge']}",
                       "fee_details": [{"amount": DISPUTE_FEE, "application": None, "currency": dispute["currency"],
                                        "description": "Dispute fee", "type": "stripe_fee"}],
                       "type": "adjustment", "reporting_category": "dispute"},
                      source=dispute["id"], created=at)


def dispute_reinstatement(txn_id: str, dispute: dict[str, Any], at: int) -> dict[str, Any]:
    """The balance transaction giving a won dispute's amount back: created when the dispute closes."""
    return full_shape({"id": txn_id, "amount": int(dispute["amount"]), "fee": 0, "fee_details": [],
                       "currency": dispute["currency"], "description": f"Chargeback reversal for {dispute['charge']}",
                       "type": "adjustment", "reporting_category": "dispute_reversal"},
                      source=dispute["id"], created=at)
