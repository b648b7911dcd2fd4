"""Sync actions started by staff from the dashboard, each recorded in the audit log, plus the plain
tables the admin page shows (lists of dicts: no ORM objects leave this module).

The page only calls these; it holds no SQL and talks to Stripe through nothing but the gateway.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from core import audit
from core.db import session_scope
from core.permissions import Actor, Permission, guarded
from core.stripe_gateway import StripeClient
from core.sync import ledger
from core.sync.reconcile import MemberDiff, ReconRow, reconcile_member, reconcile_totals, resync_member
from core.sync.run import RunResult, run_sync
from core.sync.status import SyncStatus


def _audit(engine: Engine, actor: Actor, action: str, result: RunResult, member_id: int | None = None) -> None:
    with session_scope(engine) as s:
        audit.record(
            s, actor=actor.username, action=action, member_id=member_id, target_type="sync_run",
            target_id=result.run_id, comment=result.message[:500],
            outcome="ok" if result.ok else result.status,
        )


@guarded(Permission.RUN_SYNC)
def sync_now(engine: Engine, client: StripeClient, *, actor: Actor, full: bool = False,
             progress: Callable[[str], None] | None = None) -> RunResult:
    """"Sync now" from the admin page: the same run as the cron command, audited."""
    result = run_sync(engine, client, actor=actor, full=full, progress=progress, holder=f"dashboard:{actor.username}")
    _audit(engine, actor, "stripe.sync_full" if full else "stripe.sync", result)
    return result


@guarded(Permission.RUN_SYNC)
def resync_member_now(engine: Engine, client: StripeClient, *, actor: Actor, member_id: int) -> RunResult:
    result = resync_member(engine, client, member_id, actor=actor, holder=f"dashboard:{actor.username}")
    _audit(engine, actor, "stripe.resync_member", result, member_id=member_id)
    return result


def runs_table(snapshot: SyncStatus) -> list[dict[str, Any]]:
    return [
        {
            "run": r.id,
            "kind": r.kind,
            "status": r.status,
            "started": r.started_at,
            "finished": r.finished_at,
            "seconds": round((r.finished_at - r.started_at).total_seconds(), 1) if r.finished_at else None,
            "new events": r.counts.get("events_new"),
            "handled": r.counts.get("events_handled"),
            "backfilled": r.counts.get("backfilled"),
            "by": r.holder,
            "error": r.error or "",
        }
        for r in snapshot.recent_runs
    ]


def freshness_table(snapshot: SyncStatus) -> list[dict[str, Any]]:
    return [
        {"object type": t.object_type, "last synced": t.last_synced_at,
         "backfill": "in progress" if t.backfill_in_progress else "done"}
        for t in snapshot.types
    ]


def failing_events_table(engine: Engine) -> list[dict[str, Any]]:
    return ledger.failing_events(engine)


def reconciliation_table(rows: list[ReconRow]) -> list[dict[str, Any]]:
    return [
        {
            "object type": r.object_type, "month": r.month, "currency": r.currency,
            "in Stripe": r.stripe_count, "ours": r.our_count,
            "Stripe sum (minor)": r.stripe_sum, "our sum (minor)": r.our_sum,
            "missing here": ", ".join(r.missing[:3]) + (" ..." if len(r.missing) > 3 else ""),
            "not in Stripe": ", ".join(r.extra[:3]) + (" ..." if len(r.extra) > 3 else ""),
            "agrees": r.matches,
        }
        for r in rows
    ]


def reconcile_table(engine: Engine, client: StripeClient, *, month: str | None) -> list[dict[str, Any]]:
    return reconciliation_table(reconcile_totals(engine, client, month=month))


def member_diff_table(engine: Engine, client: StripeClient, member_id: int) -> list[dict[str, Any]]:
    diffs: list[MemberDiff] = reconcile_member(engine, client, member_id)
    return [{"object type": d.object_type, "Stripe id": d.stripe_id, "problem": d.problem,
             "ours": d.ours, "Stripe": d.theirs} for d in diffs]


def data_through_sentence(snapshot: SyncStatus, now: datetime) -> str:
    """One line for the Overview and the admin page: how fresh the Stripe data is."""
    if snapshot.data_through is None:
        if snapshot.newest_event_at is not None:
            # A world loaded directly (the demo) with its webhooks live read "not synced yet" alone,
            # as if nothing from Stripe were here.
            return (f"No sync from Stripe has run yet; its webhooks have delivered changes up to "
                    f"{snapshot.newest_event_at:%Y-%m-%d %H:%M} UTC. Sync now reads everything once.")
        return "Stripe data has not been synced yet."
    age = now - snapshot.data_through
    minutes = int(age.total_seconds() // 60)
    ago = f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago" if minutes < 2880 else f"{minutes // 1440} days ago"
    line = f"Stripe data through {snapshot.data_through:%Y-%m-%d %H:%M} UTC ({ago})."
    if snapshot.last_run and snapshot.last_run.status == "failed":
        line += " The last sync failed."
    return line
