"""Checking that a webhook delivery really comes from Stripe (or the local sandbox).

Stripe signs each delivery: ``Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "t.body">`` with
the endpoint's ``whsec_...`` secret. ``stripe.Webhook.construct_event`` checks the HMAC and that
``t`` is at most ``TOLERANCE`` seconds old (Stripe's own default, which also bounds replays).
"""

from __future__ import annotations

import json
from typing import Any

import stripe

TOLERANCE = 300  # seconds: Stripe's default; an older signature is a replay or a stuck queue


class WebhookRejected(ValueError):
    """The delivery is not a signed, recent Stripe event; ``str(error)`` is the sentence to answer."""


def verify_event(payload: bytes, signature_header: str | None, secret: str, *, tolerance: int = TOLERANCE) -> dict[str, Any]:
    """The event as a plain dict when the signature is valid and recent; else ``WebhookRejected``."""
    if not secret:
        raise WebhookRejected("No webhook signing secret is configured (STRIPE_WEBHOOK_SECRET).")
    try:
        stripe.Webhook.construct_event(payload, signature_header, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise WebhookRejected(_sentence(str(exc), signature_header, tolerance)) from None
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        # The signature held (it is checked first) but the body is not a JSON object the library
        # can build an event from (invalid JSON, a list, a number...).
        raise WebhookRejected("The body is not a JSON Stripe event.") from None
    event = json.loads(payload)
    if not isinstance(event, dict) or event.get("object") != "event":
        raise WebhookRejected("The body is not a Stripe event.")
    return event


def _sentence(stripe_message: str, header: str | None, tolerance: int) -> str:
    """Stripe's message names the failed check in words meant for developers; say it plainly."""
    if not header:
        return "No Stripe-Signature header: this delivery is not signed."
    if "tolerance" in stripe_message:
        return f"The signature is older than {tolerance // 60} minutes: a replayed or delayed delivery."
    if "matching" in stripe_message:
        return "The signature does not match: signed with another secret, or the body was changed."
    return "The Stripe-Signature header is malformed."
