"""Stripe failures as sentences a support agent understands.

Hierarchy: every Stripe exception raised inside ``translate_errors()`` leaves it as one
``GatewayError`` carrying

- ``sentence``: what to show staff (never a traceback, never card details);
- ``kind``: ``card_declined``, ``rate_limited``, ``unreachable``, ``not_found``,
  ``invalid_request``, ``authentication``, ``permission``, ``idempotency``, ``stripe_error``;
- ``code`` / ``decline_code``: Stripe's machine codes, for logs and for storing on a payment;
- ``retryable``: True when trying the same request later may succeed (rate limits, outages,
  timeouts, soft declines such as ``processing_error``), False when it will not (hard declines,
  bad requests, wrong key);
- ``http_status`` and ``request_id`` when Stripe answered.

The original stripe exception stays reachable as ``__cause__``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import stripe

P = ParamSpec("P")
R = TypeVar("R")

# Why a card was declined, per Stripe's published decline codes
# (https://docs.stripe.com/declines/codes). The sentence is what staff read to the member.
DECLINE_SENTENCES: dict[str, str] = {
    "generic_decline": "The card was declined by the bank without a reason; the member should call their bank or use another card.",
    "insufficient_funds": "The card was declined for insufficient funds.",
    "lost_card": "The card was declined because it was reported lost; the member must use another card.",
    "stolen_card": "The card was declined because it was reported stolen; the member must use another card.",
    "expired_card": "The card was declined because it has expired; the member must update their card.",
    "incorrect_cvc": "The card was declined because the security code (CVC) is incorrect.",
    "incorrect_number": "The card was declined because the card number is incorrect.",
    "processing_error": "The card could not be charged because of a processing error at the bank; trying again later may work.",
    "authentication_required": "The card needs the member to confirm the payment (3-D Secure); it cannot be charged without them.",
    "do_not_honor": "The card was declined by the bank (do not honor); the member should call their bank.",
    "card_velocity_exceeded": "The card was declined because it reached its spending limit.",
    "fraudulent": "The card was declined because the bank suspects fraud.",
    "card_not_supported": "The card does not support this kind of purchase.",
    "currency_not_supported": "The card does not support this currency.",
    "try_again_later": "The card was declined for now; trying again later may work.",
    "withdrawal_count_limit_exceeded": "The card was declined because it reached its withdrawal limit.",
    "pickup_card": "The card was declined and must not be used again (pick-up card).",
    "restricted_card": "The card was declined because it is restricted.",
}

# Declines where a later retry of the same card can succeed (Stripe's "soft declines").
SOFT_DECLINES = frozenset(
    {"processing_error", "try_again_later", "insufficient_funds", "generic_decline", "do_not_honor",
     "card_velocity_exceeded", "withdrawal_count_limit_exceeded"}
)


class GatewayError(Exception):
    """A Stripe call failed; ``str(error)`` is the sentence for staff."""

    def __init__(
        self,
        sentence: str,
        *,
        kind: str = "stripe_error",
        code: str | None = None,
        decline_code: str | None = None,
        retryable: bool = False,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.kind = kind
        self.code = code
        self.decline_code = decline_code
        self.retryable = retryable
        self.http_status = http_status
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"GatewayError(kind={self.kind!r}, code={self.code!r}, decline_code={self.decline_code!r})"


def decline_sentence(decline_code: str | None, code: str | None = None) -> str:
    """Sentence for a decline code (falls back to the error code, then to a generic one)."""
    for key in (decline_code, code):
        if key and key in DECLINE_SENTENCES:
            return DECLINE_SENTENCES[key]
    return "The card was declined" + (f" ({decline_code or code})." if (decline_code or code) else ".")


def _request_id(exc: stripe.StripeError) -> str | None:
    return getattr(exc, "request_id", None)


def from_stripe_error(exc: stripe.StripeError) -> GatewayError:
    """Translate one stripe exception into a ``GatewayError`` (pure; no I/O)."""
    status = getattr(exc, "http_status", None)
    code = getattr(exc, "code", None)
    common: dict[str, Any] = {"http_status": status, "request_id": _request_id(exc), "code": code}
    if isinstance(exc, stripe.CardError):
        decline = None
        err = getattr(exc, "error", None)
        if err is not None:
            decline = getattr(err, "decline_code", None)
        decline = decline or getattr(exc, "decline_code", None)
        if decline is None and isinstance(exc.json_body, dict):
            decline = (exc.json_body.get("error") or {}).get("decline_code")
        key = decline or code
        return GatewayError(
            decline_sentence(decline, code),
            kind="card_declined",
            decline_code=decline,
            retryable=key in SOFT_DECLINES,
            **common,
        )
    if isinstance(exc, stripe.RateLimitError):
        return GatewayError(
            "Stripe is limiting how fast we may call it (rate limited); nothing was lost, try again in a minute.",
            kind="rate_limited", retryable=True, **common,
        )
    if isinstance(exc, stripe.APIConnectionError):
        return GatewayError(
            "Stripe could not be reached (network error or timeout); nothing was changed on our side, try again shortly.",
            kind="unreachable", retryable=True, **common,
        )
    if isinstance(exc, stripe.AuthenticationError):
        return GatewayError(
            "Stripe refused our API key; an administrator must check STRIPE_API_KEY.",
            kind="authentication", **common,
        )
    if isinstance(exc, stripe.PermissionError):
        return GatewayError(
            "Our Stripe API key is not allowed to do this; an administrator must check its permissions.",
            kind="permission", **common,
        )
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayError(
            "Stripe saw this action before with different details; reload the page and start the action again.",
            kind="idempotency", **common,
        )
    if isinstance(exc, stripe.InvalidRequestError):
        if code == "resource_missing" or status == 404:
            what = _missing_object(exc)
            return GatewayError(
                f"Stripe has no {what}; it may have been deleted or belong to another account.",
                kind="not_found", **common,
            )
        message = _safe_message(exc)
        return GatewayError(
            f"Stripe refused the request: {message}", kind="invalid_request", **common,
        )
    if isinstance(exc, stripe.APIError) and _not_json(exc):
        return GatewayError(_not_stripe_sentence(exc), kind="unreachable",
                            retryable=status is None or status >= 500 or status == 429, **common)
    if isinstance(exc, stripe.APIError) or (status is not None and status >= 500):
        return GatewayError(
            "Stripe had an internal error; nothing was confirmed, try again shortly.",
            kind="unreachable", retryable=True, **common,
        )
    return GatewayError(
        f"Stripe returned an error: {_safe_message(exc)}", kind="stripe_error", **common,
    )


_CARD_NUMBER = re.compile(r"\b\d{12,19}\b")


def _safe_message(exc: stripe.StripeError) -> str:
    """Stripe's own message, trimmed, without anything that looks like a card number."""
    msg = (getattr(exc, "user_message", None) or str(getattr(exc, "_message", "") or "") or "unknown error").strip()
    msg = _CARD_NUMBER.sub("[number removed]", msg)
    if not msg.endswith("."):
        msg += "."
    return msg[:300]


def _not_json(exc: stripe.StripeError) -> bool:
    """The answer was not JSON: stripe-python then raises ``APIError("Invalid response body ...")``
    with the raw body; whatever answered (a proxy, a web server at a wrong STRIPE_API_BASE) is not
    Stripe's API, whose every answer, errors included, is JSON."""
    return str(getattr(exc, "_message", "") or "").startswith("Invalid response body from API")


_TAGS = re.compile(r"<[^>]*>")


def _not_stripe_sentence(exc: stripe.StripeError) -> str:
    """What answered instead of Stripe: status, content type, server and the start of the body."""
    status = getattr(exc, "http_status", None)
    headers = getattr(exc, "headers", None) or {}
    if not headers and hasattr(getattr(exc, "json_body", None), "items"):
        # stripe-python passes the response headers in the json_body slot for an unparsable body.
        headers = exc.json_body
    lower = {str(k).lower(): str(v) for k, v in dict(headers).items()}
    body = getattr(exc, "http_body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    text = " ".join(_TAGS.sub(" ", str(body or "")).split())
    text = _CARD_NUMBER.sub("[number removed]", text)
    text = (text[:120] + "...") if len(text) > 120 else text
    what = [f"HTTP {status}" if status else "an answer"]
    if lower.get("content-type"):
        what.append(lower["content-type"].split(";")[0])
    if lower.get("server"):
        what.append(f"server {lower['server']}")
    quoted = f': "{text}"' if text else " with an empty body"
    return (f"The Stripe address answered with something that is not Stripe's API ({', '.join(what)}){quoted}. "
            "Check STRIPE_API_BASE (or the proxy in between); nothing was changed on our side.")


def _missing_object(exc: stripe.StripeError) -> str:
    msg = str(getattr(exc, "_message", "") or "")
    match = re.search(r"No such (\w+): '?([\w-]+)'?", msg)
    if match:
        return f"{match.group(1)} {match.group(2)}"
    param = getattr(exc, "param", None)
    return f"object for {param}" if param else "such object"


@contextmanager
def translate_errors() -> Iterator[None]:
    """``with translate_errors(): client.v1...`` raises ``GatewayError`` instead of stripe's errors."""
    try:
        yield
    except stripe.StripeError as exc:
        raise from_stripe_error(exc) from exc


def translated(func: Callable[P, R]) -> Callable[P, R]:
    """Decorator form of ``translate_errors()``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translate_errors():
            return func(*args, **kwargs)

    return wrapper


def idempotency_key(action_id: str, *, step: str = "") -> str:
    """Stable Stripe idempotency key derived from our own action id (and an optional step).

    The same action id always gives the same key, so a retried write (double click, network
    retry, re-run after a crash) is answered by Stripe with the first result instead of acting
    twice. Keys stay under Stripe's 255-character limit and reveal nothing about the action.
    """
    if not action_id or not str(action_id).strip():
        raise ValueError("An idempotency key needs a non-empty action id.")
    raw = f"{action_id}:{step}" if step else str(action_id)
    return "md-" + hashlib.sha256(raw.encode("utf-8")).hexdigest()[:48]
