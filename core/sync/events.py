"""Incremental sync: fetch events since the stored cursor into the ledger.

The cursor (``sync_state`` row ``events``, ``last_synced_at``) is the wall-clock start of the last
*complete* fetch. Each fetch asks for events created at or after the cursor minus an overlap and
lets the ledger drop what it already holds, so an event delivered late (Stripe's clock, a slow
write) is not skipped. The cursor moves only after every page was stored: an outage mid-fetch
leaves it where it was and the next run fetches the same window again, losing nothing.

Events from a Stripe test clock carry the clock's simulated time, possibly in the future; the
cursor is wall-clock time, never an event's time, so such an event cannot push it past real
events still to come. ``newest_event_at`` records the newest event seen, for freshness displays.

Stripe keeps events for 30 days: a cursor older than that cannot be trusted, and the run falls back
to a backfill (``cursor_too_old``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from core.models.stripe_sync import SyncState
from core.stripe_gateway import reads
from core.sync import ledger
from core.sync.apply import Applier
from core.sync.backfill import EVENTS, Progress, state
from core.timeutil import from_epoch, to_epoch, utc_now

EVENT_RETENTION = timedelta(days=30)
# Leave an hour of margin: the cursor must still be inside Stripe's window when the fetch arrives.
RETENTION_MARGIN = timedelta(hours=1)
OVERLAP = timedelta(minutes=5)


@dataclass
class FetchResult:
    fetched: int = 0
    new: int = 0
    since: datetime | None = None


def cursor(engine: Engine) -> datetime | None:
    with Session(engine) as s:
        row = s.get(SyncState, EVENTS)
        return row.last_synced_at if row else None


def cursor_too_old(value: datetime | None, now: datetime) -> bool:
    return value is not None and value < now - EVENT_RETENTION + RETENTION_MARGIN


def fetch_events(
    engine: Engine,
    applier: Applier,
    *,
    progress: Progress,
    heartbeat: Callable[[], None],
) -> FetchResult:
    """Store every event since the cursor in the ledger; move the cursor when all pages are in."""
    started = utc_now()
    with Session(engine) as s:
        row = state(s, EVENTS)
        since = (row.last_synced_at or started) - OVERLAP
        s.commit()
    result = FetchResult(since=since)
    after: str | None = None
    newest: tuple[int, str] | None = None
    while True:
        page = reads.events_page(applier.client, created_gte=to_epoch(since), starting_after=after)
        if page.objects:
            with Session(engine) as s:
                result.new += ledger.record(s, page.objects)
                s.commit()
            result.fetched += len(page.objects)
            for e in page.objects:
                key = (int(e["created"]), str(e["id"]))
                newest = key if newest is None or key > newest else newest
            heartbeat()
            progress(f"Events: {result.fetched} fetched, {result.new} new ...")
        if not page.has_more or not page.objects:
            break
        after = page.last_id
    with Session(engine) as s:
        row = state(s, EVENTS)
        row.last_synced_at = started
        if newest is not None:
            newest_at = from_epoch(newest[0])
            if row.newest_event_at is None or (newest_at and newest_at >= row.newest_event_at):
                row.newest_event_at = newest_at
                row.newest_event_id = newest[1]
        s.commit()
    return result
