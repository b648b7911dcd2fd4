"""Human labels for every code we store: the one mapping pages, charts and alert hints use.

Codes stay as they are in the database, the CSV exports of the command line and the API
(Stripe's strings, our reason codes); people read the label. An unknown code (Stripe adds
values) is shown with its underscores turned into words rather than raw.
"""

from __future__ import annotations

from core.changes.reasons import LABELS as CHANGE_REASONS

# Stripe's subscription.cancellation_details.reason and .feedback
CANCELLATION = {
    "cancellation_requested": "Member asked to cancel",
    "payment_failed": "Payment failed",
    "payment_disputed": "Payment disputed",
    "customer_service": "Unhappy with customer service",
    "low_quality": "Quality too low",
    "missing_features": "Missing features",
    "switched_service": "Switched to another service",
    "too_complex": "Too complex",
    "too_expensive": "Too expensive",
    "unused": "Not using it",
}
# Stripe's refund.reason
REFUND = {
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent charge",
    "requested_by_customer": "Customer asked for a refund",
    "expired_uncaptured_charge": "Uncaptured charge expired",
}
# Stripe's decline codes and charge failure codes (https://docs.stripe.com/declines/codes)
DECLINE = {
    "authentication_required": "Needs 3-D Secure confirmation",
    "card_declined": "Card declined",
    "card_not_supported": "Card not supported",
    "card_velocity_exceeded": "Spending limit reached",
    "currency_not_supported": "Currency not supported",
    "do_not_honor": "Bank declined (do not honor)",
    "expired_card": "Card expired",
    "fraudulent": "Suspected fraud",
    "generic_decline": "Declined without a reason",
    "incorrect_cvc": "Wrong security code (CVC)",
    "incorrect_number": "Wrong card number",
    "insufficient_funds": "Insufficient funds",
    "lost_card": "Card reported lost",
    "pickup_card": "Pick-up card",
    "processing_error": "Processing error",
    "restricted_card": "Restricted card",
    "stolen_card": "Card reported stolen",
    "try_again_later": "Try again later",
    "withdrawal_count_limit_exceeded": "Withdrawal limit reached",
    "unknown": "Unknown",
}
# Stripe's dispute.reason
DISPUTE = {
    "credit_not_processed": "Credit not processed",
    "duplicate": "Duplicate charge",
    "fraudulent": "Fraudulent",
    "general": "General",
    "product_not_received": "Not received",
    "product_unacceptable": "Unacceptable",
    "subscription_canceled": "Subscription canceled",
    "unrecognized": "Unrecognised charge",
}
# Stripe's card brands (payment_method.card.brand / charge payment_method_details.card.brand)
CARD_BRAND = {"amex": "American Express", "cartes_bancaires": "Cartes Bancaires", "diners": "Diners Club",
              "discover": "Discover", "eftpos_au": "eftpos Australia", "interac": "Interac", "jcb": "JCB",
              "link": "Link", "mastercard": "Mastercard", "unionpay": "UnionPay", "visa": "Visa"}
CHURN_KIND = {"voluntary": "Voluntary", "involuntary": "Involuntary (payment)"}

# Which mapping a column's codes come from; looked up first, then every mapping in this order.
BY_COLUMN = {
    "decline_code": DECLINE, "failure_code": DECLINE, "code": DECLINE,
    "card_brand": CARD_BRAND, "brand": CARD_BRAND,
    "cancellation_reason": CANCELLATION, "cancellation_feedback": CANCELLATION, "churn_kind": CHURN_KIND,
}
_ALL = (CHANGE_REASONS, CANCELLATION, REFUND, DECLINE, DISPUTE, CHURN_KIND)
CODE_COLUMNS = frozenset(BY_COLUMN) | {"reason"}


def code_label(code: object, column: str | None = None) -> str:
    """The words for a stored code; ``column`` picks the mapping when a code means two things."""
    if code is None or code == "":
        return ""
    text = str(code)
    first = BY_COLUMN.get(column or "")
    if first and text in first:
        return first[text]
    for mapping in _ALL:
        if text in mapping:
            return mapping[text]
    if text.islower() and " " not in text:
        return text.replace("_", " ").capitalize()
    return text


SCOPE_WORDS = {"decline_code": "Decline code", "card_brand": "Card brand", "card_country": "Card country",
               "currency": "Currency", "churn": "Churn", "refund": "Refund"}


def scope_label(scope: str | None) -> str:
    """An alert's scope in words: ``decline_code=insufficient_funds`` -> ``Decline code: Insufficient funds``."""
    if not scope or scope == "all":
        return "All"
    dim, sep, value = scope.partition("=")
    if not sep:
        return code_label(scope)
    words = SCOPE_WORDS.get(dim, dim.replace("_", " ").capitalize())
    if dim in ("currency", "card_country", "refund"):
        return f"{words}: {value}"
    return f"{words}: {code_label(value, 'churn_kind' if dim == 'churn' else dim)}"
