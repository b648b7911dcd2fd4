"""Backfill: every object type we mirror, listed from Stripe, parents first, resumable.

A backfill is one *generation* (``sync_state`` row ``backfill``: started, completed). Per object
type, ``sync_state.backfill_cursor`` holds the last id whose page was committed; a crash or an
outage mid-way leaves the generation open, and the next run resumes it at that cursor instead of
starting over. Objects are applied with ``state_at`` = the time their page was fetched, so an event
older than the listed state is refused by the store, and a newer one still applies.

Objects created while a backfill walks a list land at the head of Stripe's newest-first list,
behind the cursor: they are picked up by the events fetched from the generation's start time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Session

from core.models.members import Member
from core.models.stripe_sync import SyncState
from core.stripe_gateway import GatewayError, reads
from core.stripe_mapping import with_close_time
from core.sync.apply import Applier
from core.sync.failures import failure_text
from core.timeutil import utc_now

log = logging.getLogger(__name__)

GENERATION = "backfill"
EVENTS = "events"
CUSTOMERS_PER_BATCH = 50
# Requests in flight at once for the per-customer card lists: enough to hide the round trips; at
# Stripe's usual few hundred ms per request that is about 10-20 reads a second, inside test mode's 25.
CARD_FETCHES = 4

Progress = Callable[[str], None]


@dataclass
class BackfillResult:
    objects: int = 0
    errors: list[str] = field(default_factory=list)
    resumed_from: datetime | None = None
    by_type: dict[str, int] = field(default_factory=dict)


def state(session: Session, object_type: str) -> SyncState:
    row = session.get(SyncState, object_type)
    if row is None:
        row = SyncState(object_type=object_type)
        session.add(row)
        session.flush()
    return row


def in_progress(engine: Engine) -> datetime | None:
    """Start time of an unfinished backfill generation, or None."""
    with Session(engine) as s:
        row = s.get(SyncState, GENERATION)
        if row is not None and row.backfill_started_at and not row.backfill_completed_at:
            return row.backfill_started_at
    return None


def start_or_resume(engine: Engine, *, now: datetime) -> tuple[datetime, bool]:
    """(generation start, resumed?)."""
    with Session(engine, expire_on_commit=False) as s:
        gen = state(s, GENERATION)
        if gen.backfill_started_at and not gen.backfill_completed_at:
            return gen.backfill_started_at, True
        gen.backfill_started_at = now
        gen.backfill_completed_at = None
        for object_type in reads.BACKFILL_ORDER:
            row = state(s, object_type)
            row.backfill_cursor = None
            row.backfill_started_at = now
            row.backfill_completed_at = None
        s.commit()
        return now, False


def run_backfill(
    engine: Engine,
    applier: Applier,
    *,
    now: datetime,
    progress: Progress,
    heartbeat: Callable[[], None],
) -> BackfillResult:
    """Walk every type from its cursor; raises ``GatewayError`` on an outage (cursor kept)."""
    started, resumed = start_or_resume(engine, now=now)
    result = BackfillResult(resumed_from=started if resumed else None)
    if resumed:
        progress(f"Resuming the backfill started {started:%Y-%m-%d %H:%M} UTC.")
    for object_type in reads.BACKFILL_ORDER:
        with Session(engine) as s:
            row = state(s, object_type)
            done = row.backfill_completed_at is not None and row.backfill_completed_at >= started
            cursor = row.backfill_cursor
            s.commit()
        if done:
            continue
        walk = _walk_payment_methods if object_type == "payment_method" else _walk_list
        if object_type == "dispute":
            # A lost dispute's close time is only in its closed event: read them before the list.
            applier.dispute_close_times = reads.dispute_close_times(applier.client)
        result.by_type[object_type] = walk(_Walk(engine, applier, object_type, result, progress, heartbeat), cursor)
        with Session(engine) as s:
            row = state(s, object_type)
            row.backfill_cursor = None
            row.backfill_completed_at = utc_now()
            row.last_synced_at = row.last_synced_at or row.backfill_completed_at
            s.commit()
    with Session(engine) as s:
        gen = state(s, GENERATION)
        gen.backfill_completed_at = utc_now()
        gen.last_synced_at = gen.backfill_completed_at
        events = state(s, EVENTS)
        # Events from the generation's start on cover whatever changed while we listed.
        if events.last_synced_at is None or events.last_synced_at < started:
            events.last_synced_at = started
        s.commit()
    return result


def _without_flow_marks(session: Session) -> None:
    """On PostgreSQL, this page's writes leave no metrics flow marks (migration 0023): a full
    backfill's sync ends with a full rollup build, which counts every row; the marks cost 2-3% of
    the backfill's speed and would make a refresh meanwhile redo every day from the earliest one.
    ``SET LOCAL`` ends with the page's transaction."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sql_text("SET LOCAL memberdesk.bulk_write = 'on'"))


def _apply_page(
    engine: Engine,
    applier: Applier,
    object_type: str,
    objects: list[dict[str, Any]],
    cursor: str | None,
    fetched_at: datetime,
    result: BackfillResult,
    text: str | None = None,
) -> None:
    if object_type == "dispute":
        objects = [with_close_time(o, applier.dispute_close_times) for o in objects]
    with Session(engine) as s:
        _without_flow_marks(s)
        # The whole page at once; if any object needs more (a parent to fetch, an error to record),
        # nothing of the page was written and it goes object by object as before.
        done = bool(objects) and applier.apply_many(s, objects, state_at=fetched_at, text=text)
        if done:
            result.objects += len(objects)
        for obj in [] if done else objects:
            try:
                applier.apply(s, obj, state_at=fetched_at)
                result.objects += 1
            except GatewayError as exc:
                if exc.retryable:
                    s.commit()  # keep what this page already wrote; the cursor stays before it
                    raise
                result.errors.append(f"{obj.get('id')}: {exc.sentence}")
            except Exception as exc:  # one bad object must not stop the others
                log.warning("backfill of %s %s failed: %s", object_type, obj.get("id"), failure_text(exc))
                result.errors.append(f"{obj.get('id')}: {failure_text(exc)}"[:500])
        row = state(s, object_type)
        row.backfill_cursor = cursor
        row.last_synced_at = fetched_at
        s.commit()


@dataclass
class _Walk:
    """One object type's walk: where its pages are written and who hears about them."""

    engine: Engine
    applier: Applier
    object_type: str
    result: BackfillResult
    progress: Progress
    heartbeat: Callable[[], None]
    count: int = 0

    def write(self, objects: list[dict[str, Any]], last_id: str | None, fetched_at: datetime, noun: str, *,
              text: str | None = None) -> None:
        """Apply one page (committing the cursor at ``last_id``) and report the running count."""
        _apply_page(self.engine, self.applier, self.object_type, objects, last_id, fetched_at, self.result, text=text)
        self.count += len(objects)
        self.heartbeat()
        self.progress(f"Backfill: {self.count} {noun} ...")


def _walk_list(w: _Walk, cursor: str | None) -> int:
    """Page through one type; the next page is fetched while this one is written (the cursor of the
    next request is known as soon as a page arrives), so waiting on Stripe and on the database overlap."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-fetch") as pool:

        def fetch(after: str | None) -> Future[tuple[datetime, reads.Page]]:
            return pool.submit(lambda: (utc_now(), reads.list_page(w.applier.client, w.object_type,
                                                                   starting_after=after)))

        pending: Future[tuple[datetime, reads.Page]] | None = fetch(cursor)
        while True:
            assert pending is not None  # the loop returns once nothing is pending
            fetched_at, page = pending.result()
            pending = None if not page.has_more or not page.objects else fetch(page.last_id)
            try:
                if page.objects:
                    w.write(page.objects, page.last_id, fetched_at, f"{w.object_type}s", text=page.body)
            except BaseException:
                if pending is not None:
                    pending.cancel()
                raise
            if pending is None:
                return w.count


def _customer_batch(engine: Engine, after: str | None) -> list[str]:
    with Session(engine) as s:
        stmt = select(Member.stripe_customer_id).where(Member.stripe_customer_id.is_not(None))
        if after:
            stmt = stmt.where(Member.stripe_customer_id > after)
        return [c for c in s.scalars(stmt.order_by(Member.stripe_customer_id).limit(CUSTOMERS_PER_BATCH)) if c]


def _fetch_payment_methods(pool: ThreadPoolExecutor, applier: Applier, customers: list[str],
                           errors: list[str]) -> list[dict[str, Any]]:
    """The cards of a batch of customers, a few requests at a time (one customer per request),
    in customer order; an outage raises, a customer Stripe refuses is recorded."""

    def one(customer_id: str) -> tuple[list[dict[str, Any]], str | None]:
        try:
            return reads.customer_payment_methods(applier.client, customer_id), None
        except GatewayError as exc:
            if exc.retryable:
                raise
            return [], f"{customer_id}: {exc.sentence}"

    objects: list[dict[str, Any]] = []
    for found, error in pool.map(one, customers):
        objects.extend(found)
        if error:
            errors.append(error)
    return objects


def _walk_payment_methods(w: _Walk, cursor: str | None) -> int:
    """Stripe lists card payment methods per customer; walk our customers in id order (the next
    batch of customers is fetched while this one is written, a few customers at a time)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backfill-fetch") as pool, \
            ThreadPoolExecutor(max_workers=CARD_FETCHES, thread_name_prefix="backfill-cards") as requests:

        def fetch(batch: list[str]) -> Future[tuple[datetime, list[dict[str, Any]]]]:
            return pool.submit(lambda: (utc_now(), _fetch_payment_methods(requests, w.applier, batch,
                                                                          w.result.errors)))

        customers = _customer_batch(w.engine, cursor)
        pending = fetch(customers)
        while customers:
            fetched_at, objects = pending.result()
            following = _customer_batch(w.engine, customers[-1])
            if following:
                pending = fetch(following)
            try:
                w.write(objects, customers[-1], fetched_at, "payment methods")
            except BaseException:
                pending.cancel()
                raise
            customers = following
    return w.count
