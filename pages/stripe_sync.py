"""Stripe sync (admins): freshness, recent runs, "Sync now" with progress, failing events,
reconciliation per month or per member, and resyncing one member (``dashboard.sync_view``)."""

from __future__ import annotations

from core.permissions import Permission
from dashboard import sync_view
from dashboard.auth import guard

ctx = guard(Permission.RUN_SYNC)
sync_view.render(ctx)
