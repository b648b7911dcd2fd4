"""One sync run: lock, record, backfill or fetch events, process the ledger, record the outcome.

Outcomes (``sync_runs.status``):
- ``succeeded``: everything fetched was stored and every event handled (or deliberately ignored);
- ``failed``: an outage or rate limit stopped the run, or some objects/events failed; the sentence
  is in ``error``. Cursors only move past committed work, so the next run resumes without loss.
  A rate-limited run is never recorded as successful;
- ``skipped``: another run held the lock; this one wrote nothing but this row.

A run left ``running`` by a killed process is marked failed ("interrupted") by the next run that
gets the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from core.db.maintenance import analyze
from core.models.stripe_sync import SyncRun, SyncState
from core.permissions import Actor, Permission, guarded
from core.stripe_gateway import GatewayError, StripeClient, reads
from core.sync import backfill, events, locks
from core.sync.apply import Applier
from core.sync.failures import failure_text
from core.sync.process import process_pending
from core.timeutil import utc_now

log = logging.getLogger(__name__)

LOCK_NAME = "stripe_sync"


@dataclass
class RunResult:
    run_id: int | None
    kind: str
    status: str  # succeeded, failed, skipped
    message: str
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"


def _record_start(engine: Engine, kind: str, holder: str, status: str = "running", error: str | None = None) -> int:
    with Session(engine) as s:
        run = SyncRun(kind=kind, started_at=utc_now(), status=status, holder=holder, error=error, counts={})
        if status != "running":
            run.finished_at = run.started_at
        s.add(run)
        s.commit()
        return run.id


def _record_end(
    engine: Engine, run_id: int, status: str, error: str | None, counts: dict[str, Any], kind: str | None = None
) -> None:
    with Session(engine) as s:
        run = s.get(SyncRun, run_id)
        assert run is not None
        if kind:
            run.kind = kind
        run.status = status
        run.error = error
        run.counts = counts
        run.finished_at = utc_now()
        s.commit()


def _mark_interrupted(engine: Engine, current: int) -> None:
    with Session(engine) as s:
        s.execute(
            update(SyncRun)
            .where(SyncRun.status == "running", SyncRun.id != current)
            .values(status="failed", finished_at=utc_now(), error="Interrupted: the process ended before the run finished.")
        )
        s.commit()


def _touch_types(engine: Engine, at: datetime) -> None:
    """After a complete event sync, every mirrored type is current up to the fetch start."""
    with Session(engine) as s:
        for object_type in reads.BACKFILL_ORDER:
            row = backfill.state(s, object_type)
            if row.last_synced_at is None or row.last_synced_at < at:
                row.last_synced_at = at
        s.commit()


@guarded(Permission.RUN_SYNC)
def run_sync(
    engine: Engine,
    client: StripeClient,
    *,
    actor: Actor,
    full: bool = False,
    progress: Callable[[str], None] | None = None,
    holder: str | None = None,
    now: datetime | None = None,
) -> RunResult:
    """Run one sync; never raises for Stripe trouble (the outcome is in the result and ``sync_runs``)."""
    say = progress or (lambda _msg: None)
    holder = holder or locks.default_holder()
    kind = "full" if full else "incremental"
    try:
        lock = locks.acquire(engine, LOCK_NAME, holder=holder)
    except locks.LockBusy as busy:
        run_id = _record_start(engine, kind, holder, status="skipped", error=str(busy))
        return RunResult(run_id, kind, "skipped", str(busy))

    run_id = _record_start(engine, kind, holder)
    counts: dict[str, Any] = {}
    try:
        _mark_interrupted(engine, run_id)
        now = now or utc_now()
        applier = Applier(client, now=now)
        errors: list[str] = []
        cursor = events.cursor(engine)
        resuming = backfill.in_progress(engine)
        notice = None
        if events.cursor_too_old(cursor, now):
            notice = (
                f"The event cursor ({cursor:%Y-%m-%d %H:%M} UTC) is older than the 30 days Stripe keeps "
                "events: running a full backfill instead."
            )
            counts["why_full"] = "the last sync was longer ago than the 30 days Stripe keeps events"
        elif cursor is None and not full:
            notice = "No sync has completed yet: running a full backfill first."
            counts["why_full"] = "no sync had completed before"
        if notice:
            say(notice)
            counts["notice"] = notice
        if full or notice or resuming:
            if resuming and not full:
                counts["resumed_backfill"] = True
            kind = "full"
            bf = backfill.run_backfill(engine, applier, now=now, progress=say, heartbeat=lock.heartbeat)
            counts["backfilled"] = bf.objects
            counts["backfilled_by_type"] = bf.by_type
            errors.extend(bf.errors)
            # A bulk write: the planner's statistics are of the tables before it.
            analyze(engine, why="a full Stripe backfill")
        fetch_started = utc_now()
        fr = events.fetch_events(engine, applier, progress=say, heartbeat=lock.heartbeat)
        counts["events_fetched"] = fr.fetched
        counts["events_new"] = fr.new

        def on_batch(done: int, total: int) -> None:
            lock.heartbeat()
            say(f"Processing events: {done}/{total}")

        pr = process_pending(engine, applier, on_batch=on_batch)
        counts.update(events_handled=pr.handled, events_ignored=pr.ignored, events_failed=pr.failed,
                      parents_fetched=applier.parents_fetched, applied=applier.applied)
        errors.extend(pr.errors)
        _touch_types(engine, fetch_started)
        counts["data_through"] = fetch_started.isoformat()
        if errors:
            message = f"{len(errors)} object(s) or event(s) failed; first: {errors[0]}"
            counts["errors"] = errors[:20]
            _record_end(engine, run_id, "failed", message, counts, kind)
            return RunResult(run_id, kind, "failed", message, counts)
        message = _summary(counts)
        _record_end(engine, run_id, "succeeded", None, counts, kind)
        refresh_rollups(engine, since=fr.since if kind == "incremental" else None)
        return RunResult(run_id, kind, "succeeded", message, counts)
    except GatewayError as exc:
        message = f"Sync stopped: {exc.sentence} The next run resumes where this one stopped."
        _record_end(engine, run_id, "failed", message, counts, kind)
        return RunResult(run_id, kind, "failed", message, counts)
    except Exception as exc:
        log.exception("sync run %s failed", run_id)
        message = f"Sync failed unexpectedly: {failure_text(exc)}"[:1000]
        _record_end(engine, run_id, "failed", message, counts, kind)
        return RunResult(run_id, kind, "failed", message, counts)
    finally:
        lock.release()


def _summary(counts: dict[str, Any]) -> str:
    parts = []
    if "backfilled" in counts:
        parts.append(f"{counts['backfilled']} objects backfilled")
    parts.append(f"{counts.get('events_new', 0)} new events")
    parts.append(f"{counts.get('events_handled', 0)} handled")
    message = "Sync succeeded: " + ", ".join(parts) + "."
    # Said after the run, in the past: "No sync has completed yet: running a full backfill first.
    # Sync succeeded: ..." read as if both held at once.
    return f"{message} It was a full backfill, because {counts['why_full']}." if counts.get("why_full") else message


def refresh_rollups(engine: Engine, *, since: datetime | None) -> None:
    """Refresh the metrics rollups after a run, when the metrics package provides it.

    The one call site for ``core.metrics.rollups.refresh(engine, since=...)``; a failure there is
    logged and does not turn a successful sync into a failed one.
    """
    try:
        from core.metrics import rollups
    except ImportError:
        return
    refresh = getattr(rollups, "refresh", None)
    if refresh is None:
        return
    try:
        refresh(engine, since=since)
    except Exception:
        log.exception("metrics rollup refresh after sync failed")


def last_state(engine: Engine) -> dict[str, SyncState]:
    with Session(engine) as s:
        return {r.object_type: r for r in s.scalars(select(SyncState))}
