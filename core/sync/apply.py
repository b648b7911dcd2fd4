"""Applying one Stripe object to our tables, fetching missing parents on the way.

The rows themselves are written by ``core.stripe_store.apply`` (upsert keyed by Stripe id, refusing
a state older than the one stored); this module adds what only the sync can do: when the store
raises ``MissingParent`` (a subscription whose customer we have not seen yet, say), fetch that
parent from Stripe with the pinned client, apply it, and retry. The store runs each attempt in a
savepoint, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from core.stripe_gateway import StripeClient, reads
from core.sync.failures import failure_text
from core.timeutil import utc_now

log = logging.getLogger(__name__)

MAX_PARENT_DEPTH = 5


def _store() -> Any:
    # Imported late: the store lives in the mapping layer's area and imports the models.
    from core import stripe_store

    return stripe_store


def missing_parent_class() -> type[BaseException]:
    from core.stripe_store import MissingParent  # imported late, as in _store()

    return MissingParent


@dataclass
class Applier:
    """Applies objects for one run; counts what it wrote and which parents it had to fetch."""

    client: StripeClient
    now: datetime | None = None
    applied: int = 0
    parents_fetched: int = 0
    by_type: dict[str, int] = field(default_factory=dict)
    refreshed: set[str] = field(default_factory=set)  # objects re-read from Stripe in this run
    # (object id, created) pairs with more than one event in the ledger; None: not precomputed.
    twin_candidates: set[tuple[str, datetime]] | None = None
    # What event payloads lack, read once per run: invoice id -> its payments list (None: gone),
    # balance transaction id -> the balance transaction (None: gone).
    invoice_payments: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    balance_transactions: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    dispute_close_times: dict[str, int] = field(default_factory=dict)  # a backfill's closed-event times

    def apply(
        self,
        session: Session,
        obj: dict[str, Any],
        *,
        state_at: datetime,
        event_id: str | None = None,
        depth: int = 0,
    ) -> Any:
        store = _store()
        missing = store.MissingParent
        seen: set[str] = set()
        while True:
            try:
                # The store runs each apply in its own savepoint and raises MissingParent before
                # writing anything, so a retry starts from a clean slate.
                result = store.apply(session, obj, state_at=state_at, event_id=event_id)
                self.applied += 1
                kind = str(obj.get("object") or "object")
                self.by_type[kind] = self.by_type.get(kind, 0) + 1
                return result
            except missing as exc:
                object_type, parent_id = parent_of(exc)
                if depth >= MAX_PARENT_DEPTH or parent_id in seen:
                    raise
                seen.add(parent_id)
                log.info("fetching missing parent %s %s for %s", object_type, parent_id, obj.get("id"))
                parent = reads.retrieve(self.client, object_type, parent_id)
                self.parents_fetched += 1
                self.apply(session, parent, state_at=self.now or utc_now(), depth=depth + 1)


    def apply_many(self, session: Session, objects: list[dict[str, Any]], *, state_at: datetime,
                   text: str | None = None) -> bool:
        """Apply a page at once through ``stripe_store.apply_many`` (``text``: the page's JSON, if at
        hand); False (nothing written) when some object needs the one-by-one path (a missing parent,
        a failure), which the caller runs."""
        store = _store()
        try:
            store.apply_many(session, objects, state_at=state_at, text=text)
        except Exception as exc:  # the page's savepoint is rolled back: nothing of it remains
            log.info("page of %d objects goes one by one (%s)", len(objects), failure_text(exc))
            return False
        self.applied += len(objects)
        for obj in objects:
            kind = str(obj.get("object") or "object")
            self.by_type[kind] = self.by_type.get(kind, 0) + 1
        return True


_ID_IN_TEXT = re.compile(r"\b((?:prod|price|cus|pm|card|sub|in|ch|py|re|pyr|dp|du|pi)_[A-Za-z0-9]+)")


def parent_of(exc: BaseException) -> tuple[str, str]:
    """(object type, Stripe id) of the parent a ``MissingParent`` names."""
    parent_id = None
    for attr in ("stripe_id", "parent_id", "object_id", "id"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            parent_id = value
            break
    if parent_id is None:
        match = _ID_IN_TEXT.search(str(exc))
        if not match:
            raise exc
        parent_id = match.group(1)
    object_type = None
    for attr in ("object_type", "parent_type", "kind"):
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            object_type = value
            break
    object_type = _normalise_type(object_type) or reads.type_of_id(parent_id)
    if object_type is None:
        raise exc
    return object_type, parent_id


def _normalise_type(value: str | None) -> str | None:
    if not value:
        return None
    value = value.lower().strip()
    aliases = {"tier": "product", "member": "customer", "payment": "charge", "subscriptions": "subscription"}
    value = aliases.get(value, value)
    return value if value in reads.BACKFILL_ORDER or value == "payment_intent" else None
