"""Memberdesk's one door to Stripe.

Only this package (and the local sandbox server) imports ``stripe``; everything else calls these
names. ``writes.py`` (membership changes) builds on the same client, errors and idempotency keys.
"""

from core.stripe_gateway.client import API_VERSION, ClientOptions, StripeClient, build_client, make_client
from core.stripe_gateway.errors import (
    DECLINE_SENTENCES,
    GatewayError,
    decline_sentence,
    from_stripe_error,
    idempotency_key,
    translate_errors,
    translated,
)

__all__ = [
    "API_VERSION",
    "DECLINE_SENTENCES",
    "ClientOptions",
    "GatewayError",
    "StripeClient",
    "build_client",
    "decline_sentence",
    "from_stripe_error",
    "idempotency_key",
    "make_client",
    "translate_errors",
    "translated",
]
