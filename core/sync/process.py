"""Processing the ledger: each unprocessed event through its handler, oldest first.

- Each event runs in its own savepoint: a failing handler leaves none of its rows behind.
- Events are handled in batches; a batch's rows and its ledger updates (``processed_at`` for the
  events handled, ``last_error`` for the others, ``attempts`` for all) commit in one transaction,
  so an event is marked processed exactly when its rows are committed.
- A retryable gateway failure (rate limit, outage, timeout while fetching a missing parent) stops
  processing: what was done is committed, the failing event keeps its error, and the exception
  goes up so the run is recorded as failed. The next run starts again with that event.
- Any other failure is the event's own: it is recorded and processing continues with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, select, update
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent
from core.stripe_gateway import GatewayError
from core.sync import ledger
from core.sync.apply import Applier
from core.sync.failures import failure_text
from core.sync.handlers import IGNORED, fetch_balance_transaction, fetch_invoice_payments, handler_for, reads_wanted
from core.timeutil import utc_now

log = logging.getLogger(__name__)

BATCH = 500


@dataclass
class ProcessResult:
    handled: int = 0
    ignored: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _load(session: Session, ids: list[str]) -> list[Any]:
    rows = session.execute(
        select(StripeEvent.id, StripeEvent.type, StripeEvent.payload, StripeEvent.attempts,
               StripeEvent.object_id, StripeEvent.created_at)
        .where(StripeEvent.id.in_(ids), StripeEvent.processed_at.is_(None))
    ).all()
    by_id = {r.id: r for r in rows}
    return [by_id[i] for i in ids if i in by_id]


def _twins(session: Session, rows: list[Any]) -> set[tuple[str, datetime]]:
    """(object id, created) pairs of this batch that have more than one event in the ledger."""
    object_ids = sorted({r.object_id for r in rows if r.object_id})
    found: set[tuple[str, datetime]] = set()
    for start in range(0, len(object_ids), 500):
        chunk = object_ids[start : start + 500]
        stmt = (
            select(StripeEvent.object_id, StripeEvent.created_at)
            .where(StripeEvent.object_id.in_(chunk))
            .group_by(StripeEvent.object_id, StripeEvent.created_at)
            .having(func.count() > 1)
        )
        found.update((str(o), c) for o, c in session.execute(stmt))
    return found


def _write_outcomes(session: Session, outcomes: list[dict[str, Any]]) -> None:
    if not outcomes:
        return
    stmt = (
        update(StripeEvent.__table__)
        .where(StripeEvent.__table__.c.id == bindparam("event_id"))
        .values(processed_at=bindparam("done_at"), attempts=bindparam("tries"), last_error=bindparam("error"))
    )
    session.connection().execute(stmt, outcomes)


PREFETCHES = 4  # reads in flight at once, as the backfill's card reads


def _prefetch(applier: Applier, rows: list[Any]) -> None:
    """Read ahead, a few at a time, what this batch's handlers would each read one by one (an
    invoice's payments, a charge's balance transaction), so the round trips overlap. A failure here
    is left to the handler, which reads again and records it."""
    wanted = {w for w in (reads_wanted(r.payload or {}) for r in rows) if w is not None}
    todo = [w for w in wanted if w[1] not in (applier.invoice_payments if w[0] == "invoice_payments"
                                              else applier.balance_transactions)]
    if len(todo) < 2:
        return

    def one(want: tuple[str, str]) -> None:
        try:
            (fetch_invoice_payments if want[0] == "invoice_payments" else fetch_balance_transaction)(applier, want[1])
        except Exception as exc:  # noqa: BLE001 - the handler meets it again and records it
            log.info("read-ahead of %s %s failed: %s", want[0], want[1], exc)

    with ThreadPoolExecutor(max_workers=PREFETCHES, thread_name_prefix="event-reads") as pool:
        list(pool.map(one, sorted(todo)))


def process_pending(
    engine: Engine,
    applier: Applier,
    *,
    on_batch: Callable[[int, int], None] | None = None,
) -> ProcessResult:
    """Run every unprocessed event once; ``on_batch(done, total)`` after each committed batch."""
    result = ProcessResult()
    with Session(engine) as s:
        ids = ledger.pending_ids(s)
    total = len(ids)
    for start in range(0, total, BATCH):
        chunk = ids[start : start + BATCH]
        abort: GatewayError | None = None
        with Session(engine, expire_on_commit=False) as s:
            rows = _load(s, chunk)
            applier.twin_candidates = _twins(s, rows)
            _prefetch(applier, rows)
            outcomes: list[dict[str, Any]] = []
            for row in rows:
                tries = (row.attempts or 0) + 1
                try:
                    with s.begin_nested():
                        outcome = handler_for(row.type)(applier, s, row.payload)
                except GatewayError as exc:
                    outcomes.append({"event_id": row.id, "done_at": None, "tries": tries, "error": failure_text(exc)})
                    result.failed += 1
                    if exc.retryable:
                        abort = exc
                        break
                    result.errors.append(f"{row.id}: {exc.sentence}")
                    continue
                except Exception as exc:  # the event's own failure: record it, go on
                    log.warning("event %s (%s) failed: %s", row.id, row.type, failure_text(exc))
                    outcomes.append({"event_id": row.id, "done_at": None, "tries": tries, "error": failure_text(exc)})
                    result.failed += 1
                    result.errors.append(f"{row.id}: {failure_text(exc)}")
                    continue
                outcomes.append({"event_id": row.id, "done_at": utc_now(), "tries": tries, "error": None})
                if outcome == IGNORED:
                    result.ignored += 1
                else:
                    result.handled += 1
            _write_outcomes(s, outcomes)
            s.commit()
        applier.twin_candidates = None
        if abort is not None:
            raise abort
        if on_batch:
            on_batch(min(start + BATCH, total), total)
    return result
