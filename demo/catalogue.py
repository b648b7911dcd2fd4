"""The demo business: tiers, prices and the distributions the generator draws from.

Everything here is data. The ranges the generator must land in (failure rate, churn, currency
mix) are documented in docs/demo-data.md and checked by tests/test_demo_plausibility.py.
"""

from __future__ import annotations

TIERS = (
    # code, name, rank, Stripe product id (None: free, Stripe never sees it)
    ("free", "Free", 0, None),
    ("premium", "Premium", 1, "prod_demo_premium"),
    ("platinum", "Platinum", 2, "prod_demo_platinum"),
)

# (tier, interval) -> {currency: unit_amount in minor units}. JPY is zero-decimal: whole yen.
PRICES: dict[tuple[str, str], dict[str, int]] = {
    ("premium", "month"): {"USD": 999, "EUR": 899, "GBP": 799, "JPY": 1200},
    ("premium", "year"): {"USD": 9999, "EUR": 8999, "GBP": 7999, "JPY": 12000},
    ("platinum", "month"): {"USD": 1999, "EUR": 1799, "GBP": 1599, "JPY": 2400},
    ("platinum", "year"): {"USD": 19999, "EUR": 17999, "GBP": 15999, "JPY": 24000},
}
CATALOGUE_CREATED = 1_600_000_000  # 2020-09-13: the catalogue predates every demo world


def price_id(tier: str, interval: str, currency: str) -> str:
    return f"price_demo_{tier}_{interval}ly_{currency.lower()}"


CURRENCY_MIX = (("USD", 0.45), ("EUR", 0.25), ("GBP", 0.15), ("JPY", 0.15))
COUNTRIES = {
    "USD": (("US", 0.86), ("CA", 0.06), ("MX", 0.04), ("AU", 0.04)),
    "EUR": (("DE", 0.32), ("FR", 0.25), ("ES", 0.14), ("IT", 0.12), ("NL", 0.10), ("IE", 0.07)),
    "GBP": (("GB", 1.0),),
    "JPY": (("JP", 1.0),),
}
CITIES = {"US": "Austin", "CA": "Toronto", "MX": "Monterrey", "AU": "Sydney", "DE": "Berlin", "FR": "Lyon",
          "ES": "Valencia", "IT": "Milan", "NL": "Utrecht", "IE": "Cork", "GB": "Leeds", "JP": "Osaka"}
# ITU country calling codes of the demo's countries (E.164), so a US member's phone starts with +1.
CALLING_CODES = {"US": 1, "CA": 1, "MX": 52, "AU": 61, "DE": 49, "FR": 33, "ES": 34, "IT": 39, "NL": 31, "IE": 353,
                 "GB": 44, "JP": 81}
FIRST_NAMES = ("Ava", "Ben", "Chloe", "Daniel", "Elena", "Felix", "Grace", "Hugo", "Isla", "Jonas", "Kenji", "Lea",
               "Mateo", "Nora", "Oscar", "Priya", "Quinn", "Rosa", "Sota", "Tara", "Umar", "Vera", "Will", "Yuki",
               "Zoe", "Aiko", "Bruno", "Clara", "Diego", "Emma", "Finn", "Hana", "Liam", "Mia", "Noah", "Sofia")
LAST_NAMES = ("Smith", "Garcia", "Müller", "Martin", "Rossi", "Tanaka", "Jones", "Dubois", "Fernández", "Sato",
              "Brown", "Schmidt", "Bianchi", "Suzuki", "Wilson", "Moreau", "López", "Kowalski", "Murphy", "Visser",
              "Taylor", "Weber", "Ricci", "Ito", "Evans", "Laurent", "Nakamura", "Walsh", "de Vries", "Clarke")

BRANDS = {"default": (("visa", 0.56), ("mastercard", 0.31), ("amex", 0.10), ("discover", 0.03)),
          "JP": (("visa", 0.45), ("mastercard", 0.22), ("jcb", 0.28), ("amex", 0.05))}
FUNDING = (("credit", 0.60), ("debit", 0.38), ("prepaid", 0.02))
WALLETS = ((None, 0.77), ("apple_pay", 0.15), ("google_pay", 0.08))

# Renewal decline codes (first attempts that fail for a reason other than an expired card).
DECLINES = (
    ("insufficient_funds", 0.38), ("generic_decline", 0.20), ("do_not_honor", 0.10),
    ("authentication_required", 0.06), ("processing_error", 0.05), ("card_velocity_exceeded", 0.05),
    ("transaction_not_allowed", 0.04), ("try_again_later", 0.04), ("lost_card", 0.03),
    ("stolen_card", 0.01), ("incorrect_cvc", 0.02), ("fraudulent", 0.02),
)
# Stripe does not retry these automatically: only a new card helps.
HARD_DECLINES = frozenset({"lost_card", "stolen_card", "expired_card", "fraudulent", "pickup_card", "incorrect_cvc"})
# Codes that are their own failure_code; the rest come as card_declined with outcome.reason.
OWN_FAILURE_CODES = frozenset({"expired_card", "processing_error", "incorrect_cvc"})
DECLINE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}
RETRY_DAYS = (3, 7, 14)  # Smart-Retries-like: up to 4 tries over about two weeks

CANCEL_FEEDBACK = (("too_expensive", 0.30), ("unused", 0.25), ("switched_service", 0.12),
                   ("missing_features", 0.10), ("low_quality", 0.06), ("customer_service", 0.04),
                   ("too_complex", 0.03), ("other", 0.10))
COMMENTS = {"too_expensive": "Not worth it for me right now.", "unused": "I don't use the app enough.",
            "switched_service": "Moved to another app.", "missing_features": "Wanted offline mode.",
            "other": "Taking a break."}
REFUND_REASONS = (("requested_by_customer", 0.75), ("duplicate", 0.15), ("fraudulent", 0.10))
DISPUTE_REASONS = (("fraudulent", 0.40), ("subscription_canceled", 0.25), ("unrecognized", 0.20),
                   ("product_not_received", 0.15))
