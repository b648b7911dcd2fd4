"""Stripe's published test cards: what a number (or a ``pm_card_*`` / ``tok_*`` shortcut) does when charged.

Only the outcome, brand, country, funding and last four digits are kept; the full number is used
to decide them and then dropped (never stored, never logged).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Decline:
    code: str  # the error's / charge's failure_code
    decline_code: str  # outcome.reason and the error's decline_code
    message: str
    hard: bool = False  # Stripe does not retry these


DECLINES: dict[str, Decline] = {
    "generic_decline": Decline("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": Decline("card_declined", "insufficient_funds", "Your card has insufficient funds."),
    "lost_card": Decline("card_declined", "lost_card", "Your card was declined.", hard=True),
    "stolen_card": Decline("card_declined", "stolen_card", "Your card was declined.", hard=True),
    "expired_card": Decline("expired_card", "expired_card", "Your card has expired."),
    "incorrect_cvc": Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "processing_error": Decline("processing_error", "processing_error",
                                "An error occurred while processing your card. Try again in a little bit."),
    "authentication_required": Decline("authentication_required", "authentication_required",
                                       "Your card was declined. This transaction requires authentication."),
}

# number -> (outcome, country, funding); outcome "succeeded", "dispute" or a DECLINES key
_CARDS: dict[str, tuple[str, str, str]] = {
    "4242424242424242": ("succeeded", "US", "credit"),
    "4000056655665556": ("succeeded", "US", "debit"),
    "5555555555554444": ("succeeded", "US", "credit"),
    "2223003122003222": ("succeeded", "US", "credit"),
    "5200828282828210": ("succeeded", "US", "debit"),
    "5105105105105100": ("succeeded", "US", "prepaid"),
    "378282246310005": ("succeeded", "US", "credit"),
    "371449635398431": ("succeeded", "US", "credit"),
    "6011111111111117": ("succeeded", "US", "credit"),
    "3056930009020004": ("succeeded", "US", "credit"),
    "3566002020360505": ("succeeded", "JP", "credit"),
    "6200000000000005": ("succeeded", "CN", "credit"),
    "4000008260000000": ("succeeded", "GB", "credit"),
    "4000002760000016": ("succeeded", "DE", "credit"),
    "4000002500000003": ("succeeded", "FR", "credit"),
    "4000003920000003": ("succeeded", "JP", "credit"),
    "4000001240000000": ("succeeded", "CA", "credit"),
    "4000000000000341": ("generic_decline", "US", "credit"),
    "4000000000000002": ("generic_decline", "US", "credit"),
    "4000000000009995": ("insufficient_funds", "US", "credit"),
    "4000000000009987": ("lost_card", "US", "credit"),
    "4000000000009979": ("stolen_card", "US", "credit"),
    "4000000000000069": ("expired_card", "US", "credit"),
    "4000000000000127": ("incorrect_cvc", "US", "credit"),
    "4000000000000119": ("processing_error", "US", "credit"),
    "4000000000003220": ("authentication_required", "US", "credit"),
    "4000002760003184": ("authentication_required", "DE", "credit"),
    "4000000000000259": ("dispute", "US", "credit"),
}

SHORTCUTS: dict[str, str] = {
    "visa": "4242424242424242",
    "visa_debit": "4000056655665556",
    "mastercard": "5555555555554444",
    "mastercard_debit": "5200828282828210",
    "mastercard_prepaid": "5105105105105100",
    "amex": "378282246310005",
    "discover": "6011111111111117",
    "diners": "3056930009020004",
    "jcb": "3566002020360505",
    "unionpay": "6200000000000005",
    "gb": "4000008260000000",
    "de": "4000002760000016",
    "fr": "4000002500000003",
    "jp": "4000003920000003",
    "chargeDeclined": "4000000000000002",
    "chargeCustomerFail": "4000000000000341",
    "chargeDeclinedInsufficientFunds": "4000000000009995",
    "chargeDeclinedLostCard": "4000000000009987",
    "chargeDeclinedStolenCard": "4000000000009979",
    "chargeDeclinedExpiredCard": "4000000000000069",
    "chargeDeclinedIncorrectCvc": "4000000000000127",
    "chargeDeclinedProcessingError": "4000000000000119",
    "createDispute": "4000000000000259",
    "authenticationRequired": "4000002760003184",
    "threeDSecure2Required": "4000000000003220",
}


@dataclass(frozen=True)
class CardFacts:
    outcome: str
    brand: str
    country: str
    funding: str
    last4: str


def shortcut_number(token: str) -> str | None:
    """The card number behind ``pm_card_visa`` / ``tok_visa``, or None."""
    for prefix in ("pm_card_", "tok_"):
        if token.startswith(prefix):
            return SHORTCUTS.get(token[len(prefix):])
    return None


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in number]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def brand_of(number: str) -> str:
    if number.startswith(("34", "37")):
        return "amex"
    if number.startswith(("51", "52", "53", "54", "55", "22", "23", "24", "25", "26", "27")):
        return "mastercard"
    if number.startswith(("6011", "65", "644", "645", "646", "647", "648", "649")):
        return "discover"
    if number.startswith(("300", "301", "302", "303", "304", "305", "36", "38")):
        return "diners"
    if number.startswith("35"):
        return "jcb"
    if number.startswith("62"):
        return "unionpay"
    if number.startswith("4"):
        return "visa"
    return "unknown"


def facts(number: str) -> CardFacts | None:
    """What the card does, or None when the number is not a valid card number."""
    number = "".join(c for c in number if c.isdigit())
    if not 12 <= len(number) <= 19 or not luhn_ok(number):
        return None
    outcome, country, funding = _CARDS.get(number, ("succeeded", "US", "credit"))
    return CardFacts(outcome, brand_of(number), country, funding, number[-4:])


def outcome_of_imported(card: dict[str, object]) -> str:
    """The outcome of a payment method imported without one: Stripe's test card with the same last
    four digits decides (test mode knows only test cards), else it succeeds."""
    last4 = str(card.get("last4") or "")
    for number, (outcome, _country, _funding) in _CARDS.items():
        if number.endswith(last4) and outcome != "succeeded" and len(last4) == 4:
            return outcome
    return "succeeded"
