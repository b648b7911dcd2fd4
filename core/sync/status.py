"""Freshness of the Stripe mirror, for the Overview's "data through" line and the admin page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent, SyncRun, SyncState
from core.sync import ledger
from core.sync.locks import current_holder


@dataclass(frozen=True)
class RunSummary:
    id: int
    kind: str
    status: str
    started_at: datetime
    finished_at: datetime | None
    error: str | None
    counts: dict[str, Any]
    holder: str | None


@dataclass(frozen=True)
class TypeFreshness:
    object_type: str
    last_synced_at: datetime | None
    backfill_in_progress: bool
    backfill_cursor: str | None


@dataclass(frozen=True)
class SyncStatus:
    data_through: datetime | None  # everything in Stripe before this moment is in our database
    last_run: RunSummary | None
    last_success: RunSummary | None
    recent_runs: list[RunSummary]
    types: list[TypeFreshness]
    newest_event_at: datetime | None
    newest_event_id: str | None
    events: dict[str, int] = field(default_factory=dict)  # total, processed, pending, failing
    running_holder: str | None = None
    running_since: datetime | None = None
    backfill_in_progress: bool = False

    def is_stale(self, now: datetime, max_age: timedelta) -> bool:
        return self.data_through is None or now - self.data_through > max_age


def _summary(run: SyncRun) -> RunSummary:
    return RunSummary(run.id, run.kind, run.status, run.started_at, run.finished_at, run.error,
                      dict(run.counts or {}), run.holder)


def status(engine: Engine, *, recent: int = 10, now: datetime | None = None) -> SyncStatus:
    """Read-only snapshot; cheap enough for every page load."""
    with Session(engine) as s:
        runs = list(s.scalars(select(SyncRun).order_by(SyncRun.id.desc()).limit(recent)))
        success = s.scalars(
            select(SyncRun).where(SyncRun.status == "succeeded").order_by(SyncRun.id.desc()).limit(1)
        ).first()
        states = {r.object_type: r for r in s.scalars(select(SyncState))}
        # Events delivered to the webhook count too: with webhooks and no sync run yet, the page
        # said "Newest event: None yet" beside events already applied.
        received = s.scalar(select(func.max(StripeEvent.created_at)))
        summaries = [_summary(r) for r in runs]
        success_summary = _summary(success) if success else None
    ev = states.get("events")
    gen = states.get("backfill")
    backfilling = bool(gen and gen.backfill_started_at and not gen.backfill_completed_at)
    types = [
        TypeFreshness(t, r.last_synced_at, bool(r.backfill_started_at and not r.backfill_completed_at), r.backfill_cursor)
        for t, r in sorted(states.items())
        if t not in ("events", "backfill")
    ]
    # Data is complete up to the start of the last event fetch that belongs to a successful run.
    data_through = None
    if success_summary is not None and success_summary.counts.get("data_through"):
        data_through = datetime.fromisoformat(str(success_summary.counts["data_through"]))
    holder, since, expires = current_holder(engine, "stripe_sync")
    if holder and now and expires and expires < now:
        holder = since = None
    return SyncStatus(
        data_through=data_through,
        last_run=summaries[0] if summaries else None,
        last_success=success_summary,
        recent_runs=summaries,
        types=types,
        newest_event_at=max((t for t in (ev.newest_event_at if ev else None, received) if t is not None), default=None),
        newest_event_id=ev.newest_event_id if ev else None,
        events=ledger.counts(engine),
        running_holder=holder,
        running_since=since,
        backfill_in_progress=backfilling,
    )
