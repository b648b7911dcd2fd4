"""Receiving one webhook delivery: verify, then record in the event ledger. Nothing else.

Answering fast matters: Stripe waits at most a few seconds for a 2xx and retries otherwise, so
the event is only recorded here and handled later by ``apply_loop``. A delivery that fails the
signature check writes nothing at all.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.stripe_gateway.webhooks import WebhookRejected, verify_event
from core.sync import ledger

log = logging.getLogger(__name__)

MAX_BODY = 1_000_000  # bytes; Stripe's events are far smaller, so more is not Stripe

__all__ = ["MAX_BODY", "Received", "WebhookRejected", "receive"]


@dataclass(frozen=True)
class Received:
    event_id: str
    event_type: str
    new: bool  # False: this event id was already in the ledger (a retry, or the pull sync had it)


def receive(engine: Engine, payload: bytes, signature_header: str | None, secret: str) -> Received:
    """Verify and record one delivery; ``WebhookRejected`` (nothing written) when it is not genuine."""
    if len(payload) > MAX_BODY:
        raise WebhookRejected("The body is larger than any Stripe event.")
    event = verify_event(payload, signature_header, secret)
    try:
        row = ledger.row_for(event, source="webhook")
    except ValueError as exc:
        raise WebhookRejected(str(exc)) from None
    with Session(engine) as s:
        new = ledger.record(s, [event], source="webhook") == 1
        s.commit()
    log.info("webhook %s %s %s", row["id"], row["type"], "recorded" if new else "already recorded")
    return Received(row["id"], row["type"], new)
