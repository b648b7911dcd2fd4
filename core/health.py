"""What ``GET /healthz`` answers: is the database reachable, how fresh is the Stripe mirror, when
did the last webhook arrive. For monitoring: cheap (a few indexed lookups), no secrets (no URL,
no host, no error text that could hold either), and 503 only when the database is unreachable
or does not hold our tables.

Freshness is reported as ages rather than judged here: how stale is too stale depends on how
often the deployment runs the sync (docs/deploy.md suggests thresholds for alerting).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from core.models.stripe_sync import StripeEvent, SyncRun
from core.timeutil import ensure_aware, utc_now

log = logging.getLogger(__name__)


def _moment(value: datetime | None, now: datetime) -> dict[str, Any]:
    if value is None:
        return {"at": None, "age_seconds": None}
    value = ensure_aware(value)
    return {"at": value.isoformat(), "age_seconds": round((now - value).total_seconds(), 1)}


def check(engine: Engine, *, now: datetime | None = None) -> tuple[bool, dict[str, Any]]:
    """(healthy, report). Healthy means the database answered and holds our schema; the report
    says the rest."""
    now = now or utc_now()
    report: dict[str, Any] = {"status": "ok", "checked_at": now.isoformat(), "database": {"reachable": True}}
    try:
        with Session(engine) as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to connect is "unreachable" for a monitor; the log has the detail
        log.warning("healthz: database unreachable: %s", type(exc).__name__)
        report["status"] = "unavailable"
        report["database"] = {"reachable": False, "error": type(exc).__name__}
        return False, report
    try:
        with Session(engine) as s:
            success = s.execute(
                select(SyncRun.finished_at, SyncRun.counts)
                .where(SyncRun.status == "succeeded").order_by(SyncRun.id.desc()).limit(1)
            ).first()
            last = s.execute(select(SyncRun.status, SyncRun.finished_at).order_by(SyncRun.id.desc()).limit(1)).first()
            pending = s.scalar(select(func.count()).where(StripeEvent.processed_at.is_(None))) or 0
            failing = s.scalar(
                select(func.count()).where(StripeEvent.processed_at.is_(None), StripeEvent.last_error.is_not(None))
            ) or 0
            webhook_at = s.scalar(select(func.max(StripeEvent.received_at)).where(StripeEvent.source == "webhook"))
    except Exception as exc:  # reachable, but not our schema (not migrated?): the app cannot work either
        log.warning("healthz: database answered but could not be read: %s", type(exc).__name__)
        report["status"] = "unavailable"
        report["database"] = {"reachable": True, "readable": False, "error": type(exc).__name__}
        return False, report
    through = None
    if success is not None and (success.counts or {}).get("data_through"):
        through = datetime.fromisoformat(str(success.counts["data_through"]))
    report["sync"] = {
        "data_through": _moment(through, now),
        "last_success": _moment(success.finished_at if success else None, now),
        "last_run_status": last.status if last else None,
        "events_pending": pending,
        "events_failing": failing,
    }
    report["webhooks"] = {"last_received": _moment(webhook_at, now)}
    return True, report
