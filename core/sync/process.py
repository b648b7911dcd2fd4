"""Processing the ledger: each unprocessed event through its handler, oldest first.

- Each event runs in its own savepoint: it either writes its rows *and* sets ``processed_at``,
  or writes nothing and records ``last_error`` (``attempts`` counts every try).
- A retryable gateway failure (rate limit, outage, timeout while fetching a missing parent) stops
  processing: what was done is committed, the failing event keeps its error, and the exception
  goes up so the run is recorded as failed. The next run starts again with that event.
- Any other failure is the event's own: it is recorded and processing continues with the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.stripe_gateway import GatewayError
from core.sync import ledger
from core.sync.apply import Applier
from core.sync.handlers import IGNORED, handler_for
from core.timeutil import utc_now

log = logging.getLogger(__name__)

BATCH = 200


@dataclass
class ProcessResult:
    handled: int = 0
    ignored: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, GatewayError):
        return exc.sentence
    return f"{type(exc).__name__}: {exc}"[:2000]


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
        with Session(engine, expire_on_commit=False) as s:
            abort: GatewayError | None = None
            for event in ledger.load(s, chunk):
                if event.processed_at is not None:  # another path handled it meanwhile
                    continue
                event.attempts = (event.attempts or 0) + 1
                try:
                    with s.begin_nested():
                        outcome = handler_for(event.type)(applier, s, event.payload)
                except GatewayError as exc:
                    event.last_error = _error_text(exc)
                    result.failed += 1
                    if exc.retryable:
                        abort = exc
                        break
                    result.errors.append(f"{event.id}: {event.last_error}")
                    continue
                except Exception as exc:  # the event's own failure: record it, go on
                    log.warning("event %s (%s) failed: %s", event.id, event.type, _error_text(exc))
                    event.last_error = _error_text(exc)
                    result.failed += 1
                    result.errors.append(f"{event.id}: {event.last_error}")
                    continue
                event.processed_at = utc_now()
                event.last_error = None
                if outcome == IGNORED:
                    result.ignored += 1
                else:
                    result.handled += 1
            s.commit()
        if abort is not None:
            raise abort
        if on_batch:
            on_batch(min(start + BATCH, total), total)
    return result
