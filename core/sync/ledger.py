"""The event ledger: every Stripe event id once, handled at most once successfully.

Guarantees:
- ``record()`` inserts each event id once; a second insert of the same id does nothing (the
  first payload is kept), whether it came from the Events API, a webhook or a replay;
- an event is *processed* only when its handler committed: ``processed_at`` is set in the same
  transaction (savepoint) as the rows the handler wrote;
- a failing handler leaves ``processed_at`` empty, stores ``last_error`` and bumps ``attempts``;
  ``pending_ids()`` returns it again on the next run, oldest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent
from core.timeutil import from_epoch, utc_now


def _object_id(event: dict[str, Any]) -> str | None:
    obj = (event.get("data") or {}).get("object") or {}
    value = obj.get("id") if isinstance(obj, dict) else None
    return str(value)[:64] if value else None


def row_for(event: dict[str, Any], *, source: str = "pull") -> dict[str, Any]:
    """The ledger row for one event dict (as the Events API or a webhook delivers it)."""
    if not event.get("id") or not event.get("type") or event.get("created") is None:
        raise ValueError("A Stripe event needs an id, a type and a created time.")
    return {
        "id": str(event["id"]),
        "type": str(event["type"])[:64],
        "created_at": from_epoch(event["created"]),
        "api_version": (str(event["api_version"])[:40] if event.get("api_version") else None),
        "object_id": _object_id(event),
        "payload": event,
        "source": source,
        "received_at": utc_now(),
        "attempts": 0,
    }


def record(session: Session, events: Iterable[dict[str, Any]], *, source: str = "pull") -> int:
    """Insert events not seen before; returns how many were new. The caller commits."""
    rows = [row_for(e, source=source) for e in events]
    if not rows:
        return 0
    # One id can appear twice in a batch (a page boundary moved); keep the first.
    unique = list({r["id"]: r for r in reversed(rows)}.values())
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = StripeEvent.__table__
    new = 0
    for start in range(0, len(unique), 500):
        chunk = unique[start : start + 500]
        stmt = insert(table).values(chunk).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        new += len(session.execute(stmt).all())
    return new


# Within one second Stripe's event order is lost (``created`` has one-second resolution and ids
# carry no order). Handle parents first, and an invoice after the charges of that second: the
# invoice names its payments (``invoice.payments``), so applying it last links them.
_TYPE_RANK: tuple[tuple[str, int], ...] = (
    ("product.", 0), ("price.", 1), ("customer.subscription.", 4), ("customer.", 2), ("payment_method.", 3),
    ("charge.dispute.", 7), ("charge.refund.", 6), ("refund.", 6), ("charge.", 5), ("payment_intent.", 5),
    ("invoice.", 8),
)


def type_rank(event_type: str) -> int:
    for prefix, rank in _TYPE_RANK:
        if event_type.startswith(prefix):
            return rank
    return 9


def pending_ids(session: Session, *, limit: int | None = None) -> list[str]:
    """Unprocessed event ids, oldest first (by the event's own time, then type rank, then id)."""
    stmt = select(StripeEvent.id, StripeEvent.created_at, StripeEvent.type).where(StripeEvent.processed_at.is_(None))
    rows = sorted(session.execute(stmt), key=lambda r: (r.created_at, type_rank(r.type), r.id))
    ids = [r.id for r in rows]
    return ids[:limit] if limit else ids


def load(session: Session, ids: Sequence[str]) -> list[StripeEvent]:
    rows = {e.id: e for e in session.scalars(select(StripeEvent).where(StripeEvent.id.in_(ids)))}
    return [rows[i] for i in ids if i in rows]


def counts(engine: Engine) -> dict[str, int]:
    """Total, processed, pending and failing (pending with an error) event counts."""
    with Session(engine) as s:
        total = s.scalar(select(func.count()).select_from(StripeEvent)) or 0
        pending = s.scalar(select(func.count()).where(StripeEvent.processed_at.is_(None))) or 0
        failing = (
            s.scalar(
                select(func.count()).where(StripeEvent.processed_at.is_(None), StripeEvent.last_error.is_not(None))
            )
            or 0
        )
    return {"total": total, "processed": total - pending, "pending": pending, "failing": failing}


def failing_events(engine: Engine, *, limit: int = 20) -> list[dict[str, Any]]:
    """The unprocessed events that failed, oldest first: id, type, object, attempts, error."""
    with Session(engine) as s:
        rows = s.execute(
            select(StripeEvent.id, StripeEvent.type, StripeEvent.object_id, StripeEvent.created_at,
                   StripeEvent.attempts, StripeEvent.last_error)
            .where(StripeEvent.processed_at.is_(None), StripeEvent.last_error.is_not(None))
            .order_by(StripeEvent.created_at)
            .limit(limit)
        ).all()
    return [dict(r._mapping) for r in rows]
